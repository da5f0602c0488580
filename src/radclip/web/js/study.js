// Opening a study (upload, drag-and-drop, corpus pick), its context, triage + screening in one request.

import { ApiError, getJson, h, postImage, request, showError } from "./api.js";

const $ = (id) => document.getElementById(id);

export function studyPath(id) {
  return id.split("/").map(encodeURIComponent).join("/");
}

async function fetchPixels(blob, name) {
  const r = await postImage("/api/v1/pixels?max_side=1024", blob, name);
  const hdr = (k) => r.headers.get(k);
  return {
    width: Number(hdr("X-Image-Width")), height: Number(hdr("X-Image-Height")), format: hdr("X-Source-Format"),
    original: [Number(hdr("X-Original-Width")), Number(hdr("X-Original-Height"))],
    data: new Uint16Array(await r.arrayBuffer()),
  };
}

function formatAge(age) {
  return age === null || age === undefined ? null : `${Math.round(age)} y`;
}

/** Sex, age, view, study date (from /screen's study.context or /triage's image facts), format, size. */
export function renderContext(ctx, pixels, indexed = {}) {
  const dl = $("study-context");
  dl.replaceChildren();
  const items = [
    ["Sex", ctx.sex], ["Age", formatAge(ctx.age_years)], ["View", ctx.view ?? indexed.view],
    ["Date", ctx.study_date ?? indexed.study_date], ["Modality", ctx.modality], ["Format", pixels ? pixels.format : null],
    ["Size", pixels ? `${pixels.original[0]}×${pixels.original[1]}` : null],
  ];
  if (indexed.findings) items.push(["Recorded", indexed.findings]);
  for (const [k, v] of items) dl.append(h("div", {}, h("dt", {}, k), h("dd", { title: v ?? "unknown" }, v ?? "—")));
}

/** Run /screen (triage + screening + context); fall back to /triage when the image-text model is down. */
export async function analyse(app) {
  const { blob, name } = app.study;
  try {
    const screen = await (await postImage("/api/v1/screen?top_k=1000", blob, name)).json();
    return { triage: screen.triage, screen, context: screen.study.context };
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 503) throw err;
    const t = await (await postImage("/api/v1/triage", blob, name)).json();
    const im = t.image;
    const context = { sex: im.patient_sex, age_years: im.patient_age_years, view: im.view_position, modality: im.modality };
    return { triage: t.findings, screen: null, screenError: err, context };
  }
}

/** ``indexed``: the case index's metadata (view, date, recorded findings) when the study comes from it. */
export async function openStudy(app, blob, name, indexed = {}) {
  const busy = $("stage-busy");
  busy.hidden = false;
  showError($("study-error"), null);
  app.study = { blob, name };
  $("study-name").textContent = name;
  $("study-name").title = name;
  const started = performance.now();
  const [pix, res] = await Promise.allSettled([fetchPixels(blob, name), analyse(app)]);
  busy.hidden = true;
  if (pix.status === "rejected") {
    app.study = null;
    $("study-name").textContent = "No study open";
    showError($("study-error"), pix.reason);
    return;
  }
  $("drop-hint").hidden = true;
  app.viewer.setPixels(pix.value.data, pix.value.width, pix.value.height);
  app.pixels = pix.value;
  for (const id of ["similar-button", "wl-reset", "overlay-toggle", "opacity"]) $(id).disabled = false;
  if (res.status === "rejected") {
    showError($("triage-error"), res.reason);
    renderContext({}, pix.value, indexed);
    return;
  }
  renderContext(res.value.context || {}, pix.value, indexed);
  app.onAnalysis(res.value);
  performance.mark("radclip:study-ready");
  app.lastStudyMs = performance.now() - started;
}

export async function openCorpusStudy(app, studyId, indexed) {
  try {
    const r = await request(`/api/v1/studies/${studyPath(studyId)}/file`);
    await openStudy(app, await r.blob(), studyId, indexed || app.corpus?.get(studyId) || {});
  } catch (err) {
    showError($("study-error"), err);
  }
}

export async function loadCorpusList(app) {
  const list = await getJson("/api/v1/studies?limit=500");
  app.corpus = new Map(list.items.map((s) => [s.study_id, s]));
  const dl = $("corpus-list");
  dl.replaceChildren(...list.items.map((s) => h("option", { value: s.study_id }, [s.view, s.findings].filter(Boolean).join(" · "))));
  $("corpus-input").placeholder = `or pick one of ${list.total} corpus studies…`;
}

export function bindStudyInputs(app) {
  const stage = $("stage");
  $("file-input").addEventListener("change", (e) => {
    const f = e.target.files[0];
    if (f) openStudy(app, f, f.name);
    e.target.value = "";
  });
  stage.addEventListener("dragover", (e) => {
    e.preventDefault();
    stage.classList.add("dragover");
  });
  stage.addEventListener("dragleave", () => stage.classList.remove("dragover"));
  stage.addEventListener("drop", (e) => {
    e.preventDefault();
    stage.classList.remove("dragover");
    const f = e.dataTransfer.files[0];
    if (f) openStudy(app, f, f.name);
  });
  const openPicked = () => {
    const id = $("corpus-input").value.trim();
    if (!id) {
      showError($("study-error"), { title: "No study picked", detail: "type or choose a study id", fix: "start typing to see the corpus studies" });
      return;
    }
    openCorpusStudy(app, id);
  };
  $("corpus-open").addEventListener("click", openPicked);
  $("corpus-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter") openPicked();
  });
}
