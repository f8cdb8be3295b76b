// memwatch's Node.js workload for fault stacks: builds rows of objects in buildRows, called by
// handleExport on a timer, keeping every batch, until something stops it. Run with
// --perf-basic-prof so V8 writes /tmp/perf-<pid>.map, which names its JIT-compiled functions.
const keep = [];
function buildRows(n) {
  const rows = [];
  for (let i = 0; i < n; i++) rows.push({ id: i, name: "user" + i, note: "x".repeat(16) + i });
  return rows;
}
function handleExport() {
  keep.push(buildRows(20000));
}
console.log("ready");
setInterval(handleExport, 20);
