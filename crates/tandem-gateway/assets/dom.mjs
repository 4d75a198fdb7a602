// dom.mjs (dashboard): small DOM and formatting helpers shared by the
// dashboard's modules. Everything is built with DOM calls and textContent,
// never innerHTML, so no value from the network is ever parsed as markup.

/** h("div", { class: "x", onclick: f }, "text", child, [more]) → element. */
export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (v === true) e.setAttribute(k, "");
    else e.setAttribute(k, String(v));
  }
  append(e, children);
  return e;
}

function append(e, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(e, c);
    else e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Wall-clock time with milliseconds, e.g. 14:03:07.215. */
export function clock(ms) {
  if (ms === undefined || ms === null) return "—";
  const d = new Date(ms);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/** The first and last few hex digits of a long id. */
export function short(hex, n = 8) {
  if (typeof hex !== "string") return "—";
  return hex.length > 2 * n + 1 ? `${hex.slice(0, n)}…${hex.slice(-4)}` : hex;
}

/** fetch JSON; throws an Error carrying the gateway's {code, message} on a non-2xx answer. */
export async function api(path, init) {
  const r = await fetch(path, { cache: "no-store", ...init, headers: { "content-type": "application/json", ...(init && init.headers) } });
  const text = await r.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { code: "not_json", message: text.slice(0, 200) };
  }
  if (!r.ok) {
    const err = new Error(body && body.message ? `${body.code}: ${body.message}` : `HTTP ${r.status}`);
    err.status = r.status;
    err.code = body && body.code;
    throw err;
  }
  return body;
}
