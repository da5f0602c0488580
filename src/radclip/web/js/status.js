// Service status from /readyz: model versions, index state (polled fast while warming), text-cache hit rate.

import { getJson, h, pct, showError } from "./api.js";

const $ = (id) => document.getElementById(id);

function pill(ready) {
  const el = $("status-pill");
  const idx = ready.index;
  let text = ready.status === "ready" ? "models ready" : "degraded";
  let cls = ready.status === "ready" ? "pill-ready" : "pill-bad";
  if (idx.state === "warming") {
    text += ` · index warming ${idx.done}/${idx.total}`;
    cls = "pill-warming";
  } else if (idx.state === "ready") text += ` · index ${idx.total || idx.done} studies`;
  else text += ` · index ${idx.state}`;
  el.textContent = text;
  el.className = `status-pill ${cls}`;
}

function model(m) {
  return m ? `${m.name} @ ${m.version} (${m.backend || "?"}) · sha ${String(m.sha256 || "").slice(0, 12)}` : "not loaded";
}

function renderStatus(ready) {
  const dl = $("status-list");
  const idx = ready.index;
  const cache = ready.text_cache;
  const rows = [
    ["Status", ready.status],
    ["Triage model", model(ready.models.triage)],
    ["Image–text model", model(ready.models.clip)],
    ["Condition registry", ready.models.registry ? `state ${ready.models.registry.version}` : "not loaded"],
    ["Case index", `${idx.state} · ${idx.done}/${idx.total} (${pct(idx.progress)}) · ${idx.seconds}s${idx.detail ? ` · ${idx.detail === "loaded" ? "loaded from disk" : `built (${idx.detail})`}` : ""}`],
    ["Text cache hit rate", cache ? `${pct(cache.hit_rate)} of ${cache.lookups} lookups (LRU ${cache.lru_hits}, redis ${cache.redis_hits}, misses ${cache.misses})` : "—"],
    ["Redis", cache ? (cache.redis_configured ? (cache.redis_up ? "up" : "down") : "not configured (in-process cache)") : "—"],
  ];
  for (const [part, why] of Object.entries(ready.load_errors || {})) rows.push([`Load error: ${part}`, why]);
  dl.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", { dataset: { key: k } }, v)]));
}

/** Poll /readyz: every 1 s while the index warms, every 10 s otherwise. Calls onIndex(index) each time. */
export function startStatusPolling(app, onIndex) {
  const tick = async () => {
    let delay = 10000;
    try {
      const ready = await getJson("/readyz");
      showError($("status-error"), null);
      app.ready = ready;
      pill(ready);
      renderStatus(ready);
      onIndex(ready.index);
      if (ready.index.state === "warming") delay = 1000;
    } catch (err) {
      showError($("status-error"), err);
      $("status-pill").textContent = "service unreachable";
      $("status-pill").className = "status-pill pill-bad";
      delay = 3000;
    }
    app.statusTimer = setTimeout(tick, delay);
  };
  tick();
}
