// Triage list (14 calibrated findings with bands), heatmap per finding, and the screening table.

import { h, pct, postImage, showError } from "./api.js";

const $ = (id) => document.getElementById(id);
export const URGENT_LABELS = new Set(["Pneumothorax", "Effusion", "Edema", "Pneumonia", "Mass", "Consolidation"]);
export const URGENT_THRESHOLD = 0.5;

const pretty = (label) => label.replaceAll("_", " ");

function bar(p, lo, hi, threshold) {
  const el = h("span", { className: "bar", "aria-hidden": "true" },
    h("span", { className: "band", style: { left: pct(lo), width: pct(Math.max(0.005, hi - lo)) } }),
    h("span", { className: "fill", style: { width: pct(p) } }),
    h("span", { className: "tick", style: { left: `calc(${pct(p)} - 1px)` } }));
  if (threshold !== undefined) el.append(h("span", { className: "thr", style: { left: pct(threshold) } }));
  return el;
}

export function isUrgent(f) {
  return URGENT_LABELS.has(f.label) && f.probability >= URGENT_THRESHOLD;
}

export function renderTriage(app, findings) {
  app.findings = findings;
  const list = $("triage-list");
  list.replaceChildren();
  findings.forEach((f, i) => {
    const [lo, hi] = f.band;
    const urgent = isUrgent(f);
    const label = `${pretty(f.label)}: ${pct(f.probability)}, band ${pct(lo)} to ${pct(hi)}${urgent ? ", urgent" : ""}`;
    const btn = h("button", { className: `finding${urgent ? " urgent" : ""}`, "aria-label": label, dataset: { label: f.label, index: i } },
      h("span", { className: "name" }, pretty(f.label), urgent ? [" ", h("span", { className: "tag urgent" }, "URGENT")] : []),
      bar(f.probability, lo, hi, URGENT_LABELS.has(f.label) ? URGENT_THRESHOLD : undefined),
      h("span", { className: "range" }, `${pct(lo)}–${pct(hi)}`),
      h("span", { className: "pct" }, pct(f.probability)));
    btn.addEventListener("click", () => selectFinding(app, i));
    list.append(h("li", {}, btn));
  });
  $("triage-empty").hidden = findings.length > 0;
  const select = $("explain-select");
  select.replaceChildren(...findings.map((f, i) => h("option", { value: String(i) }, `${pretty(f.label)} (${pct(f.probability)})`)));
  select.disabled = findings.length === 0;
  const urgent = findings.filter(isUrgent).length;
  $("triage-meta").textContent = `${findings.length} findings · ${urgent} urgent · calibrated probabilities; bands are the model's confidence interval`;
}

/** Select finding ``i`` (list highlight, dropdown) and draw its heatmap. */
export async function selectFinding(app, i) {
  if (!app.findings || !app.findings.length || !app.study) return;
  i = Math.max(0, Math.min(app.findings.length - 1, i));
  app.selected = i;
  for (const b of document.querySelectorAll("#triage-list .finding")) {
    b.setAttribute("aria-current", String(Number(b.dataset.index) === i));
  }
  const current = document.querySelector(`#triage-list .finding[data-index="${i}"]`);
  if (current) current.scrollIntoView({ block: "nearest" });
  $("explain-select").value = String(i);
  const f = app.findings[i];
  const token = (app.camToken = (app.camToken || 0) + 1);
  showError($("explain-error"), null);
  $("explain-caption").textContent = `Heatmap: ${pretty(f.label)} … computing`;
  try {
    const body = await (await postImage(`/api/v1/cam?label=${encodeURIComponent(f.label)}`, app.study.blob, app.study.name)).json();
    if (token !== app.camToken) return; // a newer selection won
    const bytes = Uint8Array.from(atob(body.cam_png_base64), (c) => c.charCodeAt(0));
    const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
    if (token !== app.camToken) return;
    app.viewer.setCam(bitmap);
    $("explain-caption").textContent =
      `Heatmap: ${pretty(body.label)} ${pct(body.probability)} — class activation map (where the model's evidence lies; not a segmentation). Warm = more evidence.`;
    document.body.dataset.camLabel = body.label;
  } catch (err) {
    if (token !== app.camToken) return;
    $("explain-caption").textContent = "";
    showError($("explain-error"), err);
  }
}

export function renderScreening(app, screen, err) {
  app.screen = screen;
  showError($("screen-error"), err || null);
  const filter = $("category-filter");
  const chosen = filter.value;
  const cats = screen ? [...new Set(screen.findings.map((f) => f.category))].sort() : [];
  filter.replaceChildren(h("option", { value: "" }, "all"), ...cats.map((c) => h("option", { value: c }, c)));
  filter.value = cats.includes(chosen) ? chosen : "";
  drawScreenRows(app);
  const notes = $("rule-notes");
  notes.replaceChildren();
  for (const n of screen ? screen.rules : []) {
    const change = n.before !== null && n.after !== null && n.before !== undefined ? ` (${pct(n.before)} → ${pct(n.after)})` : "";
    notes.append(h("li", {}, h("span", { className: "tag rule" }, n.rule), " ", n.condition ? `${n.condition}: ` : "", `${n.action} — ${n.reason}${change}`));
  }
  if (screen && !screen.rules.length) notes.append(h("li", { className: "muted" }, "none applied to this study"));
  $("caveats").replaceChildren(...(screen ? screen.caveats : []).map((c) => h("li", {}, c)));
}

export function drawScreenRows(app) {
  const tbody = document.querySelector("#screen-table tbody");
  tbody.replaceChildren();
  const screen = app.screen;
  $("screen-empty").hidden = Boolean(screen);
  $("screen-meta").textContent = "";
  if (!screen) return;
  const cat = $("category-filter").value;
  const rows = screen.findings.filter((f) => !cat || f.category === cat);
  for (const f of rows) {
    const tags = f.notes.map((n) => h("span", { className: "tag rule", title: "clinical rule applied" }, n));
    if (f.suppressed) tags.push(h("span", { className: "tag uncal" }, "suppressed"));
    const star = f.calibrated ? "" : h("span", { className: "star", title: "not calibrated yet: default cosine mapping" }, "*");
    tbody.append(h("tr", { className: f.suppressed ? "suppressed" : "", dataset: { name: f.pathology } },
      h("td", { className: "num" }, String(f.rank)),
      h("td", {}, pretty(f.pathology)),
      h("td", { className: "muted" }, f.category),
      h("td", { className: "conf-cell" }, h("span", { className: "conf" }, h("span", { className: "num" }, pct(f.confidence), star), bar(f.confidence, f.confidence, f.confidence))),
      h("td", {}, tags.length ? tags : "—")));
  }
  const uncal = rows.filter((f) => !f.calibrated).length;
  const touched = rows.filter((f) => f.notes.length).length;
  $("screen-meta").textContent = `${rows.length} conditions${cat ? ` in ${cat}` : ""}, highest confidence first · ${touched} adjusted by clinical rules` +
    (uncal ? ` · * ${uncal} not yet calibrated (default cosine mapping)` : "");
  $("screen-empty").hidden = rows.length > 0;
  if (!rows.length) $("screen-empty").textContent = "No condition in this category.";
}
