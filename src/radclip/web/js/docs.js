// The offline API reference: one row per operation of /openapi.json, with its x-radclip-role.

import { getJson, h, showError } from "./api.js";

async function main() {
  let doc;
  try {
    doc = await getJson("/openapi.json");
  } catch (err) {
    showError(document.getElementById("docs-error"), err);
    return;
  }
  document.getElementById("docs-version").textContent = `v${doc.info.version}`;
  const rows = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      rows.push(h("tr", { dataset: { role: op["x-radclip-role"] } },
        h("td", {}, method.toUpperCase()), h("td", {}, h("code", {}, path)), h("td", {}, op["x-radclip-role"] || "admin"),
        h("td", {}, op["x-radclip-audit"] || "-"), h("td", {}, op.summary || "")));
    }
  }
  document.querySelector("#docs-table tbody").replaceChildren(...rows);
  document.body.dataset.ready = "1";
}

main();
