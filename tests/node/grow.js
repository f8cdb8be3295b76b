// memwatch's Node.js workload: keeps 512 KiB strings on V8's heap (large objects, so the heap
// grows fast rather than the process thrashing at its limit) until something stops it; with
// `report`, prints V8's heap limit as V8 set it and exits.
if (process.argv[2] === "report") {
  console.log(require("v8").getHeapStatistics().heap_size_limit);
  process.exit(0);
}
const kept = [];
console.log("ready");
function step() {
  for (let i = 0; i < 4; i++) kept.push(("x" + kept.length).repeat(1 << 19));
  setImmediate(step);
}
step();
