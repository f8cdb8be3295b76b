// memwatch's web view: filters the node's rows as typed, and fetches a page's live part
// (#live, rendered and escaped by the daemon) again every few seconds while the tab is shown.
(function () {
  'use strict';
  const live = document.getElementById('live');
  const filter = document.getElementById('filter');
  const updated = document.getElementById('updated');
  const say = (t) => { if (updated) updated.textContent = t; };

  function applyFilter() {
    if (!filter || !live) return;
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const tr of live.querySelectorAll('tbody tr[id]')) {
      const name = (tr.cells[0].textContent + ' ' + (tr.dataset.cgroup || '')).toLowerCase();
      tr.hidden = !words.every((w) => name.includes(w));
      if (!tr.hidden) shown++;
    }
    live.dataset.shown = String(shown);
  }

  if (filter) {
    filter.addEventListener('input', () => {
      applyFilter();
      const u = new URL(location.href);
      if (filter.value) u.searchParams.set('q', filter.value); else u.searchParams.delete('q');
      history.replaceState(null, '', u);
    });
    applyFilter();
  }
  if (!live || !live.dataset.live) return;

  async function refresh() {
    if (document.hidden) return;
    try {
      const r = await fetch(live.dataset.live, { credentials: 'same-origin', cache: 'no-store' });
      if (!r.ok) { say('update failed: HTTP ' + r.status); return; }
      const open = Array.from(live.querySelectorAll('details'), (d) => d.open);
      live.innerHTML = await r.text();
      live.querySelectorAll('details').forEach((d, k) => { if (k < open.length) d.open = open[k]; });
      applyFilter();
      say('updated ' + new Date().toLocaleTimeString());
    } catch (e) {
      say('update failed: ' + e.message);
    }
  }
  setInterval(refresh, 5000);
})();
