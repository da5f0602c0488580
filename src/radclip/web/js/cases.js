// Case search: free text (/retrieve) or the open image (/similar); shows index warm-up progress, not an error.

import { ApiError, h, postImage, postJson, request, showError } from "./api.js";
import { openCorpusStudy, studyPath } from "./study.js";

const $ = (id) => document.getElementById(id);

export function showWarming(index) {
  const box = $("warming");
  if (!index || index.state !== "warming") {
    box.hidden = true;
    return;
  }
  box.hidden = false;
  $("warming-text").textContent = `Building the case index: ${index.done} of ${index.total} studies embedded — search will run when it is ready`;
  const bar = $("warming-progress");
  bar.max = Math.max(1, index.total);
  bar.value = index.done;
}

async function thumbnail(img, studyId) {
  try {
    const r = await request(`/api/v1/studies/${studyPath(studyId)}/thumbnail?size=160`);
    img.src = URL.createObjectURL(await r.blob());
  } catch {
    img.alt = `${studyId} (thumbnail unavailable)`;
  }
}

function renderCases(app, body, what) {
  const grid = $("case-grid");
  grid.replaceChildren();
  for (const hit of body.results) {
    const m = hit.metadata || {};
    const img = h("img", { alt: `Radiograph of study ${hit.study_id}`, width: 150, height: 150 });
    const btn = h("button", { className: "case", title: `Open ${hit.study_id} in the study view`, dataset: { studyId: hit.study_id } },
      img,
      h("span", { className: "sim" }, `#${hit.rank} · sim ${hit.similarity.toFixed(3)}`),
      h("span", { className: "id" }, hit.study_id),
      h("span", { className: "id" }, [m.view, m.source, m.patient_id, m.study_date].filter(Boolean).join(" · ") || "—"),
      h("span", { className: "fx" }, m.findings || "no findings recorded"));
    btn.addEventListener("click", async () => {
      await openCorpusStudy(app, hit.study_id, { ...m, study_id: hit.study_id });
      app.showTab("tab-triage");
    });
    grid.append(h("li", {}, btn));
    thumbnail(img, hit.study_id);
  }
  $("search-meta").textContent = `${body.results.length} similar cases for ${what} · ${Math.round(body.latency_ms)} ms`;
}

async function run(app, kind) {
  showError($("search-error"), null);
  const k = Number($("search-k").value);
  app.pendingSearch = null;
  try {
    let body;
    if (kind === "text") {
      const query = $("search-input").value.trim();
      if (!query) {
        showError($("search-error"), { title: "Empty query", detail: "describe what to look for", fix: "e.g. 'left pleural effusion in elderly patient'" });
        return;
      }
      $("search-meta").textContent = "Searching…";
      body = await postJson("/api/v1/retrieve", { query, top_k: k });
      renderCases(app, body, `“${query}”`);
    } else {
      if (!app.study) return;
      $("search-meta").textContent = "Searching by image…";
      body = await (await postImage(`/api/v1/similar?top_k=${k}`, app.study.blob, app.study.name)).json();
      renderCases(app, body, `the open study (${app.study.name})`);
    }
    showWarming(null);
  } catch (err) {
    if (err instanceof ApiError && err.status === 503 && err.body.index && err.body.index.state === "warming") {
      app.pendingSearch = kind; // rerun when /readyz reports the index ready
      $("search-meta").textContent = "";
      showWarming(err.body.index);
      return;
    }
    $("search-meta").textContent = "";
    showError($("search-error"), err);
  }
}

export function searchText(app) {
  return run(app, "text");
}

export function findSimilar(app) {
  app.showTab("tab-cases");
  return run(app, "image");
}

export function onIndexState(app, index) {
  if (index.state === "warming") {
    if (app.pendingSearch) showWarming(index);
  } else {
    showWarming(null);
    if (index.state === "ready" && app.pendingSearch) run(app, app.pendingSearch);
  }
}

export function bindCases(app) {
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    searchText(app);
  });
  $("similar-button").addEventListener("click", () => findSimilar(app));
}
