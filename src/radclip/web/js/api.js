// HTTP helpers: problem+json errors become ApiError with the server's detail and fix.

const KEY_STORE = "radclip.apiKey";

export class ApiError extends Error {
  constructor(status, title, detail, fix, body) {
    super(detail || title || `HTTP ${status}`);
    this.status = status;
    this.title = title;
    this.detail = detail;
    this.fix = fix;
    this.body = body || {};
  }
}

export const apiKey = {
  get: () => sessionStorage.getItem(KEY_STORE) || "",
  set: (value) => (value ? sessionStorage.setItem(KEY_STORE, value) : sessionStorage.removeItem(KEY_STORE)),
};

/** Fetch ``path``; returns the Response on 2xx, throws ApiError otherwise. */
export async function request(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = apiKey.get();
  if (key) headers.set("X-API-Key", key);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (err) {
    throw new ApiError(0, "Service unreachable", `cannot reach the radclip service (${err.message})`,
      "check that `radclip serve` is running, then retry");
  }
  if (response.ok) return response;
  let body = {};
  try {
    body = await response.json();
  } catch {
    /* not JSON: keep the status text */
  }
  if (response.status === 401) document.dispatchEvent(new CustomEvent("radclip:unauthorized"));
  throw new ApiError(response.status, body.title || response.statusText, body.detail || `HTTP ${response.status}`, body.fix, body);
}

export async function getJson(path) {
  return (await request(path)).json();
}

export async function postJson(path, payload) {
  const r = await request(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
  return r.json();
}

/** POST an image (Blob/File) as multipart field ``file``. */
export async function postImage(path, blob, filename) {
  const form = new FormData();
  form.append("file", blob, filename || blob.name || "image");
  return request(path, { method: "POST", body: form });
}

/** Show an error next to the control that caused it (element with role=alert). */
export function showError(el, err) {
  if (!el) return;
  if (!err) {
    el.hidden = true;
    el.textContent = "";
    return;
  }
  el.hidden = false;
  el.textContent = "";
  const what = document.createElement("strong");
  what.textContent = err.title ? `${err.title}: ` : "Error: ";
  el.append(what, document.createTextNode(err.detail || err.message || String(err)));
  if (err.fix) {
    const fix = document.createElement("span");
    fix.className = "fix";
    fix.textContent = `Fix: ${err.fix}`;
    el.append(fix);
  }
}

/** Tiny element builder: h("td", {className: "num"}, "12"). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style") Object.assign(el.style, v);
    else if (k in el && !k.includes("-")) el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

export const pct = (p) => `${Math.round(p * 100)}%`;
