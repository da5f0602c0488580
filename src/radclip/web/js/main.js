// Wiring: shared app state, tabs, keyboard shortcuts, API key prompt.

import { applyRole } from "./access.js";
import { apiKey, postImage, showError } from "./api.js";
import { bindCases, findSimilar, onIndexState } from "./cases.js";
import { bindConditions, loadConditions } from "./conditions.js";
import { drawScreenRows, renderScreening, renderTriage, selectFinding } from "./findings.js";
import { startStatusPolling } from "./status.js";
import { bindStudyInputs, loadCorpusList } from "./study.js";
import { Viewer } from "./viewer.js";

const $ = (id) => document.getElementById(id);
const TABS = ["tab-triage", "tab-screen", "tab-cases", "tab-conditions", "tab-status"];

const app = {
  study: null, findings: [], selected: 0, screen: null, pendingSearch: null, corpusLoaded: false,
  viewer: new Viewer({ stage: $("stage"), image: $("image-canvas"), cam: $("cam-canvas"), readout: $("wl-readout") }),
};
window.radclip = app; // for debugging and the UI tests

app.showTab = (id) => {
  for (const t of TABS) {
    const tab = $(t);
    const on = t === id;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $(tab.getAttribute("aria-controls")).hidden = !on;
  }
  if (id === "tab-conditions") loadConditions(app);
};

app.onAnalysis = ({ triage, screen, screenError }) => {
  showError($("triage-error"), null);
  renderTriage(app, triage);
  renderScreening(app, screen, screenError);
  selectFinding(app, 0);
};

/** Re-run screening for the open study (after a condition is registered or retired). */
app.rescreen = async () => {
  if (!app.study) return;
  try {
    const screen = await (await postImage("/api/v1/screen?top_k=1000", app.study.blob, app.study.name)).json();
    renderScreening(app, screen);
  } catch (err) {
    showError($("screen-error"), err);
  }
};

function bindTabs() {
  const list = document.querySelector("[role=tablist]");
  for (const t of TABS) $(t).addEventListener("click", () => app.showTab(t));
  list.addEventListener("keydown", (e) => {
    const i = TABS.indexOf(document.activeElement.id);
    if (i < 0 || !["ArrowLeft", "ArrowRight"].includes(e.key)) return;
    const next = TABS[(i + (e.key === "ArrowRight" ? 1 : TABS.length - 1)) % TABS.length];
    app.showTab(next);
    $(next).focus();
  });
}

function bindControls() {
  const opacity = $("opacity");
  const setOpacity = (v) => {
    opacity.value = String(v);
    opacity.setAttribute("aria-valuetext", `${v} percent`);
    $("opacity-value").textContent = `${v}%`;
    app.viewer.setOpacity(v / 100);
  };
  app.setOpacity = setOpacity;
  opacity.addEventListener("input", () => setOpacity(Number(opacity.value)));
  $("overlay-toggle").addEventListener("change", (e) => app.viewer.setCamVisible(e.target.checked));
  $("wl-reset").addEventListener("click", () => app.viewer.resetWindow());
  $("explain-select").addEventListener("change", (e) => selectFinding(app, Number(e.target.value)));
  $("category-filter").addEventListener("change", () => drawScreenRows(app));
  $("help-button").addEventListener("click", () => $("help").showModal());
  document.addEventListener("radclip:unauthorized", () => ($("key-button").hidden = false));
  $("key-button").addEventListener("click", () => $("key-dialog").showModal());
  $("key-form").addEventListener("submit", () => {
    apiKey.set($("key-input").value.trim());
    location.reload();
  });
}

const TEXT_INPUTS = new Set(["text", "search", "password", "number", "email", "url", "tel", "file"]);
const typing = (el) =>
  el && (["TEXTAREA", "SELECT"].includes(el.tagName) || el.isContentEditable || (el.tagName === "INPUT" && TEXT_INPUTS.has(el.type)));

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey || typing(document.activeElement)) return;
  if (document.querySelector("dialog[open]") && e.key !== "?") return;
  const actions = {
    j: () => selectFinding(app, app.selected + 1),
    ArrowDown: () => selectFinding(app, app.selected + 1),
    k: () => selectFinding(app, app.selected - 1),
    ArrowUp: () => selectFinding(app, app.selected - 1),
    o: () => $("overlay-toggle").click(),
    "[": () => app.setOpacity(Math.max(0, Number($("opacity").value) - 10)),
    "]": () => app.setOpacity(Math.min(100, Number($("opacity").value) + 10)),
    r: () => app.viewer.resetWindow(),
    u: () => $("file-input").click(),
    f: () => app.study && findSimilar(app),
    "/": () => {
      app.showTab("tab-cases");
      $("search-input").focus();
    },
    "?": () => ($("help").open ? $("help").close() : $("help").showModal()),
  };
  TABS.forEach((t, i) => (actions[String(i + 1)] = () => app.showTab(t)));
  const act = actions[e.key];
  if (!act) return;
  // Arrow keys scroll panels unless the triage list is what is being read.
  const focus = document.activeElement;
  if (e.key.startsWith("Arrow") && focus !== document.body && !focus.closest("#findings-panel, #stage")) return;
  e.preventDefault();
  act();
}

bindTabs();
bindControls();
bindStudyInputs(app);
bindCases(app);
bindConditions(app);
document.addEventListener("keydown", onKey);
startStatusPolling(app, (index) => {
  onIndexState(app, index);
  if (index.state === "ready" && !app.corpusLoaded) {
    app.corpusLoaded = true;
    loadCorpusList(app).catch((err) => showError($("study-error"), err));
  }
});
applyRole();
document.body.dataset.ready = "1";
