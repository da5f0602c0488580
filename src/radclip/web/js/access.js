// The calling key's role: hide what it may not do (the server enforces it regardless).

import { getJson } from "./api.js";

/** Ask the service who we are; on 401 the key prompt appears (api.js dispatches radclip:unauthorized). */
export async function applyRole() {
  let who;
  try {
    who = await getJson("/api/v1/whoami");
  } catch {
    return;
  }
  const can = new Set(who.operations);
  document.body.dataset.role = who.role;
  for (const el of document.querySelectorAll("[data-requires]")) el.hidden = !can.has(el.dataset.requires);
  if (can.has("DELETE /api/v1/conditions/{name}")) delete document.body.dataset.noRetire;
  else document.body.dataset.noRetire = "1";
  const button = document.getElementById("key-button");
  if (who.name !== "local") {
    button.hidden = false;
    button.textContent = `Key: ${who.name} (${who.role})`;
  }
}
