// Conditions: list, register (or new version), retire, history. Changes re-run screening at once.

import { getJson, h, postJson, request, showError } from "./api.js";

const $ = (id) => document.getElementById(id);
const enc = encodeURIComponent;

async function toggleHistory(row, name, button) {
  const next = row.nextElementSibling;
  if (next && next.classList.contains("history-row")) {
    next.remove();
    button.setAttribute("aria-expanded", "false");
    return;
  }
  const cell = h("td", { colSpan: 5 });
  row.after(h("tr", { className: "history-row" }, cell));
  button.setAttribute("aria-expanded", "true");
  try {
    const versions = await getJson(`/api/v1/conditions/${enc(name)}/history`);
    cell.append(h("ol", { className: "history", "aria-label": `Versions of ${name}` },
      ...versions.map((v) => h("li", { value: v.version },
        h("b", {}, `v${v.version} · ${v.status}`),
        ` · ${v.category} · by ${v.registered_by} · ${v.registered_at.replace("T", " ").slice(0, 16)} — `,
        v.prompts.map((p) => `“${p}”`).join(", ")))));
    cell.scrollIntoView({ block: "nearest" });
  } catch (err) {
    const p = h("p", { className: "error", role: "alert" });
    showError(p, err);
    cell.append(p);
  }
}

async function retire(app, name, button) {
  if (button.dataset.confirm !== "1") {
    button.dataset.confirm = "1";
    button.textContent = "Confirm";
    button.setAttribute("aria-label", `Confirm retiring ${name}`);
    setTimeout(() => {
      button.dataset.confirm = "";
      button.textContent = "Retire";
      button.setAttribute("aria-label", `Retire ${name}`);
    }, 4000);
    return;
  }
  try {
    await request(`/api/v1/conditions/${enc(name)}`, { method: "DELETE" });
    await loadConditions(app);
    await app.rescreen();
    $("register-ok").textContent = `Retired ${name} (kept for audit).`;
  } catch (err) {
    showError($("conditions-error"), err);
  }
}

export async function loadConditions(app) {
  showError($("conditions-error"), null);
  let items;
  try {
    items = await getJson(`/api/v1/conditions?include_retired=${$("show-retired").checked}`);
  } catch (err) {
    showError($("conditions-error"), err);
    return;
  }
  const tbody = document.querySelector("#conditions-table tbody");
  tbody.replaceChildren();
  for (const c of items) {
    const hist = h("button", { className: "btn small", "aria-expanded": "false", "aria-label": `History of ${c.name}` }, "History");
    const actions = h("td", { className: "actions" }, hist);
    const fresh = app.freshCondition === c.name;
    const row = h("tr", { className: [c.status === "retired" ? "retired" : "", fresh ? "fresh" : ""].join(" ").trim(), dataset: { name: c.name } },
      h("td", { title: c.synonyms.join(", ") }, c.name, c.status === "retired" ? " (retired)" : "",
        h("span", { className: "sub" }, c.synonyms.join(", ") || "no synonyms")),
      h("td", { className: "muted" }, c.category),
      h("td", { className: "num" }, `v${c.version}`),
      h("td", { className: "num", title: c.prompts.join("\n") }, String(c.prompts.length)),
      actions);
    hist.addEventListener("click", () => toggleHistory(row, c.name, hist));
    if (c.status !== "retired") {
      const ret = h("button", { className: "btn small retire", "aria-label": `Retire ${c.name}` }, "Retire");
      ret.addEventListener("click", () => retire(app, c.name, ret));
      actions.append(" ", ret);
    }
    tbody.append(row);
    if (fresh) row.scrollIntoView({ block: "center" });
  }
  const active = items.filter((c) => c.status !== "retired").length;
  $("conditions-count").textContent = `Registered conditions · ${active} active${items.length > active ? `, ${items.length - active} retired` : ""}`;
  const cats = [...new Set(items.map((c) => c.category))].sort();
  $("category-list").replaceChildren(...cats.map((c) => h("option", { value: c })));
}

const splitList = (text, sep) => text.split(sep).map((s) => s.trim()).filter(Boolean);

export function bindConditions(app) {
  $("show-retired").addEventListener("change", () => loadConditions(app));
  $("register-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    const field = (n) => form.elements.namedItem(n).value; // not form.name: that is the form's own name
    showError($("register-error"), null);
    $("register-ok").textContent = "";
    const payload = {
      name: field("name").trim(), category: field("category").trim() || "other",
      synonyms: splitList(field("synonyms"), ","), prompts: splitList(field("prompts"), /\n/), registered_by: "web-ui",
    };
    try {
      const r = await postJson("/api/v1/register-condition", payload);
      form.reset();
      app.freshCondition = r.name;
      await loadConditions(app);
      await app.rescreen();
      $("register-ok").textContent = `${r.name}: ${r.status}, version ${r.version} — now included in screening.`;
    } catch (err) {
      showError($("register-error"), err);
    }
  });
}
