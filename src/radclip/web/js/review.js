// The discordance review page: GET /api/v1/review/discordant, one row per discordant finding; a verdict is feedback.
// Each row shows production's and the candidate's heat maps of the finding side by side
// (GET /api/v1/review/discordant/{study_id}/heatmap), fetched with the API key when the row scrolls into view.

import { apiKey, getJson, h, postJson, request, showError } from "./api.js";

const $ = (id) => document.getElementById(id);
const fmt = (p) => p.toFixed(3);

/** The /api/v1/feedback study field for a study key: "sha256:<hex>" or "uid:<StudyInstanceUID>". */
export function studyField(key) {
  if (key.startsWith("sha256:")) return { upload_sha256: key.slice(7) };
  if (key.startsWith("uid:")) return { study_instance_uid: key.slice(4) };
  return null;
}

function callCell(calls) {
  if (!calls.length) return h("td", {}, "—");
  return h("td", {}, ...calls.map((c) => h("div", {},
    h("span", { className: c.called ? "call-yes" : "call-no" }, `${c.called ? "present" : "absent"} ${fmt(c.probability)}`),
    h("span", { className: "ref" }, `${c.ref} · ${c.role}`))));
}

let objectUrls = []; // revoked on each refresh: the maps are PHI-adjacent and must not pile up in memory

export function heatmapPath(studyKey, ref, finding) {
  const q = new URLSearchParams({ version: ref, finding });
  return `/api/v1/review/discordant/${encodeURIComponent(studyKey)}/heatmap?${q}`;
}

async function loadHeatmap(img) {
  const { study, ref, finding } = img.dataset;
  try {
    const r = await request(heatmapPath(study, ref, finding));
    const url = URL.createObjectURL(await r.blob());
    objectUrls.push(url);
    img.src = url;
  } catch (e) {
    img.replaceWith(h("span", { className: "heat-missing muted", title: e.detail || e.message }, "no heat map kept"));
  }
}

const lazy = new IntersectionObserver((entries) => {
  for (const entry of entries) {
    if (!entry.isIntersecting) continue;
    lazy.unobserve(entry.target);
    loadHeatmap(entry.target);
  }
}, { rootMargin: "300px" });

function heatmapCell(study, finding) {
  const prod = finding.calls.find((c) => c.role === "production");
  const other = finding.calls.find((c) => c.role !== "production");
  if (!prod || !other) return h("td", { className: "heatmaps muted" }, "one version scored this study");
  const figure = (call) => {
    const img = h("img", { className: "heatmap", width: 128, height: 128, dataset: { study: study.study_key, ref: call.ref, finding: finding.finding, role: call.role },
      alt: `${call.role} heat map of ${finding.finding} (${call.ref})` });
    lazy.observe(img);
    return h("figure", {}, img, h("figcaption", {}, call.role));
  };
  return h("td", { className: "heatmaps" }, figure(prod), figure(other));
}

function verdictCell(study, finding) {
  const field = studyField(study.study_key);
  if (!field) return h("td", { className: "verdict muted" }, "unknown study key");
  const note = h("span", { className: "recorded", role: "status" });
  const err = h("p", { className: "error", role: "alert", hidden: true });
  const send = async (present) => {
    showError(err, null);
    try {
      const r = await postJson("/api/v1/feedback", { ...field, findings: { [finding.finding]: present } });
      note.textContent = `${present ? "present" : "absent"} · ${r.status}`;
    } catch (e) {
      showError(err, e);
    }
  };
  return h("td", { className: "verdict" },
    h("button", { className: "btn small", dataset: { verdict: "present" }, onclick: () => send(true) }, "Present"), " ",
    h("button", { className: "btn small", dataset: { verdict: "absent" }, onclick: () => send(false) }, "Absent"), note, err);
}

function rows(study) {
  return study.findings.map((f, i) => {
    const prod = f.calls.filter((c) => c.role === "production");
    const other = f.calls.filter((c) => c.role !== "production");
    const feedback = f.feedback === null ? "—" : f.feedback ? "present" : "absent";
    return h("tr", { className: i === 0 ? "first" : "", dataset: { study: study.study_key, finding: f.finding } },
      h("td", { className: "study", title: study.study_key }, i === 0 ? study.study_key.slice(0, 19) + "…" : ""),
      h("td", {}, f.finding), h("td", { className: "num" }, fmt(f.threshold)),
      callCell(prod), callCell(other), heatmapCell(study, f), h("td", {}, feedback),
      h("td", { className: "kinds" }, ...f.kinds.map((k) => h("span", {}, k === "model" ? "versions disagree" : "feedback disagrees"))),
      verdictCell(study, f));
  });
}

export async function load() {
  showError($("review-error"), null);
  const body = $("review-table").tBodies[0];
  try {
    const data = await getJson("/api/v1/review/discordant");
    lazy.disconnect();
    objectUrls.forEach((u) => URL.revokeObjectURL(u));
    objectUrls = [];
    body.replaceChildren(...data.discordant.flatMap(rows));
    $("review-empty").hidden = data.discordant.length > 0;
    $("review-summary").textContent =
      `${data.discordant.length} discordant of ${data.studies_scanned} recent studies · production ${data.production}`;
  } catch (e) {
    $("review-summary").textContent = "";
    showError($("review-error"), e);
    if (e.status === 401) $("review-key-dialog").showModal();
  }
}

$("review-refresh").addEventListener("click", load);
$("review-key").addEventListener("click", () => $("review-key-dialog").showModal());
$("review-key-form").addEventListener("submit", () => {
  apiKey.set($("review-key-input").value.trim());
  load();
});
load();
