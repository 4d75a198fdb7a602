// app.mjs (dashboard): the page's entry point. Follows the gateway's events
// (/v1/events, SSE) and keeps the packages board, the sessions list, the
// latency chart and the network table current; routes #/package/<id>,
// #/session/<id> and #/selftest to their pages; runs the protocol self-test.

import { h, api, clock, short } from "./dom.mjs";
import { Console } from "./console.mjs";
import { LatencyChart, formatMs } from "./chart.mjs";
import { runSelfTest } from "./selftest.mjs";
import { STAGES } from "./tandem-protocol.mjs";

const $ = (id) => document.getElementById(id);
const KEEP_SESSIONS = 30;
const KEEP_PACKAGES = 300;

const state = {
  status: null,
  packages: new Map(), // id → { id, stage, final, height, updated }
  sessions: new Map(), // id → { id, owner, status, view, packages: Set, seen }
  selftest: null,
};

// ---------------------------------------------------------------- remembered ids

function remember(kind, id) {
  try {
    const key = `tandem.${kind}`;
    const list = JSON.parse(localStorage.getItem(key) || "[]").filter((x) => x !== id);
    list.push(id);
    localStorage.setItem(key, JSON.stringify(list.slice(-(kind === "sessions" ? KEEP_SESSIONS : KEEP_PACKAGES))));
  } catch {
    // Storage may be unavailable (private mode); the page works without it.
  }
}

function forget(kind, id) {
  try {
    const key = `tandem.${kind}`;
    localStorage.setItem(key, JSON.stringify(JSON.parse(localStorage.getItem(key) || "[]").filter((x) => x !== id)));
  } catch {
    // as above
  }
}

function remembered(kind) {
  try {
    return JSON.parse(localStorage.getItem(`tandem.${kind}`) || "[]");
  } catch {
    return [];
  }
}

// ---------------------------------------------------------------- console and chart

const chart = new LatencyChart($("chart"), $("chart-legend"));
const consoleUi = new Console($("console"), {
  status: () => state.status,
  onOpened: ({ session, owner }) => touchSession(session, { owner }),
  onAnswered: ({ session, seq, package_id, ms, at, package: pkg }) => {
    chart.add("l2", at, ms, `${session}:${seq}`);
    touchSession(session).packages.add(package_id);
    if (pkg) setPackage(package_id, { stage: pkg.stage, final: false });
    refreshSession(session);
  },
  onCommit: ({ session }) => {
    touchSession(session);
    refreshSession(session);
  },
  onPackage: (id) => refreshPackage(id),
});

const nameOf = (pub) => consoleUi.nameOf(pub) || short(pub);

// ---------------------------------------------------------------- packages

function setPackage(id, fields) {
  const prev = state.packages.get(id) || { id };
  const next = { ...prev, ...fields, updated: Date.now() };
  state.packages.set(id, next);
  remember("packages", id);
  scheduleRender();
}

async function refreshPackage(id) {
  try {
    const view = await api(`/v1/packages/${encodeURIComponent(id)}`);
    const p = view.tentative || view.final;
    const last = view.history[view.history.length - 1];
    const final = Boolean(last && last.state === "final");
    setPackage(id, { stage: p.stage, final, height: final ? last.l1_height : null, view });
    if (currentRoute().kind === "package" && currentRoute().id === id) renderPackagePage(view);
  } catch (e) {
    if (e.status === 404) {
      state.packages.delete(id);
      forget("packages", id);
    }
  }
}

function renderBoard() {
  const board = $("board");
  const byStage = new Map(STAGES.map((s) => [s, []]));
  for (const p of state.packages.values()) if (byStage.has(p.stage)) byStage.get(p.stage).push(p);
  board.replaceChildren(
    ...STAGES.map((stage) => {
      const list = byStage.get(stage).sort((a, b) => b.updated - a.updated);
      return h("div", { class: `stage-col stage-${stage}`, dataset: { stage } },
        h("div", { class: "stage-head" }, h("span", {}, stage.replace("_", " ")), h("span", { class: "count" }, String(list.length))),
        ...list.slice(0, 12).map((p) =>
          h("a", { class: `pkg ${p.final ? "final" : "tentative"}`, href: `#/package/${encodeURIComponent(p.id)}`, dataset: { package: p.id, state: p.final ? "final" : "tentative" } },
            h("span", { class: "pkg-id" }, p.id),
            h("span", { class: "pkg-state" }, p.final ? `final · L1 #${p.height ?? "?"}` : "tentative · L2"))),
        list.length > 12 ? h("div", { class: "more" }, `+${list.length - 12} more`) : null,
        list.length === 0 ? h("div", { class: "empty" }, "—") : null);
    }),
  );
}

// ---------------------------------------------------------------- sessions

function touchSession(id, fields = {}) {
  let s = state.sessions.get(id);
  if (!s) {
    s = { id, owner: null, status: "open", view: null, packages: new Set(), seen: Date.now() };
    state.sessions.set(id, s);
    remember("sessions", id);
  }
  Object.assign(s, fields);
  scheduleRender();
  return s;
}

const refreshing = new Map();
function refreshSession(id) {
  // Coalesce bursts of events into one request per session.
  if (refreshing.has(id)) return refreshing.get(id);
  const p = (async () => {
    await new Promise((r) => setTimeout(r, 50));
    refreshing.delete(id);
    try {
      const view = await api(`/v1/sessions/${id}`);
      const s = touchSession(id, { view, owner: view.owner, status: view.status.state });
      for (const st of view.steps) {
        s.packages.add(st.package_id);
        if (st.finality) chart.add("l1", st.finality.seen_ms, st.finality.seen_ms - st.accepted_ms, `${id}:${st.seq}`);
      }
      if (currentRoute().kind === "session" && currentRoute().id === id) renderSessionPage(id);
    } catch (e) {
      if (e.status === 404) {
        state.sessions.delete(id);
        forget("sessions", id);
      }
    }
  })();
  refreshing.set(id, p);
  return p;
}

function statusBadge(status) {
  return h("span", { class: `badge ${status}`, dataset: { status } }, status);
}

function sessionCard(s, full = false) {
  const v = s.view;
  const steps = v ? v.steps : [];
  const finalAt = steps.length && steps.every((x) => x.finality) ? Math.max(...steps.map((x) => x.finality.seen_ms)) : null;
  const heights = [...new Set(steps.filter((x) => x.finality).map((x) => x.finality.height))];
  return h("div", { class: "session", dataset: { session: s.id, status: s.status } },
    h("div", { class: "session-head" },
      h("a", { href: `#/session/${s.id}`, class: "mono" }, short(s.id, 10)),
      h("span", { class: "owner" }, s.owner ? nameOf(s.owner) : ""),
      statusBadge(s.status),
      h("span", { class: "times" },
        v && v.opened_ms ? `opened ${clock(v.opened_ms)}` : "",
        v && v.commit_ms ? ` · commit ${clock(v.commit_ms)}` : "",
        finalAt ? ` · finalized ${clock(finalAt)} at L1 #${heights.join(", #")}` : ""),
    ),
    steps.length === 0 ? h("p", { class: "note" }, v && v.note ? v.note : "no steps yet") :
      h("table", { class: "steps" },
        h("thead", {}, h("tr", {}, ...["#", "package", "action", "stage", "answered (L2)", "final (L1)", "height", full ? "transaction" : null, "L2 → L1"].filter(Boolean).map((t) => h("th", {}, t)))),
        h("tbody", {}, ...steps.map((st) => h("tr", { class: st.state, dataset: { seq: String(st.seq), state: st.state } },
          h("td", {}, String(st.seq)),
          h("td", {}, h("a", { href: `#/package/${encodeURIComponent(st.package_id)}` }, st.package_id)),
          h("td", {}, st.action),
          h("td", {}, st.stage),
          h("td", { class: "mono" }, clock(st.accepted_ms)),
          h("td", { class: "mono" }, st.finality ? clock(st.finality.seen_ms) : h("span", { class: "pending" }, "tentative")),
          h("td", { class: "l1-height" }, st.finality ? `#${st.finality.height}` : "—"),
          full ? h("td", { class: "mono" }, st.finality ? short(st.finality.tx_hash, 12) : "—") : null,
          h("td", { class: "mono" }, st.finality ? formatMs(st.finality.seen_ms - st.accepted_ms) : "—"))))),
    v && v.status && v.status.code ? h("p", { class: "error" }, `rejected: ${v.status.code} ${v.status.detail || ""}`) : null,
  );
}

function renderSessions() {
  const list = [...state.sessions.values()].sort((a, b) => b.seen - a.seen).slice(0, 8);
  $("sessions").replaceChildren(...(list.length ? list.map((s) => sessionCard(s)) : [h("p", { class: "note" }, "No sessions seen yet. Open one in the operator console.")]));
}

// ---------------------------------------------------------------- network and status

async function refreshStatus() {
  try {
    state.status = await api("/v1/status");
    $("chain").textContent = state.status.chain_id;
    $("gateway").textContent = short(state.status.gateway);
    $("gateway").title = state.status.gateway;
    $("l1-height").textContent = `#${state.status.l1_height}`;
    $("l1-state").textContent = state.status.replica_diverged ? "diverged" : state.status.l1_reachable ? "reachable" : "unreachable";
    $("l1-state").className = `pill ${state.status.replica_diverged || !state.status.l1_reachable ? "bad" : "good"}`;
    $("pending").textContent = String(state.status.pending_steps);
  } catch {
    $("l1-state").textContent = "gateway unreachable";
    $("l1-state").className = "pill bad";
  }
}

async function refreshNetwork() {
  try {
    const n = await api("/v1/network");
    const summary = $("network-summary");
    summary.className = `summary ${n.agree ? "good" : "bad"}`;
    summary.dataset.agree = String(n.agree);
    summary.textContent = n.common_height == null
      ? "No validator answers."
      : n.agree
        ? `App hashes agree at height ${n.common_height}: ${short(n.app_hash, 10)}`
        : `App hashes DISAGREE (or are unknown) at height ${n.common_height}`;
    const down = n.validators.filter((v) => !v.reachable).length;
    $("network").replaceChildren(
      h("table", { class: "validators" },
        h("thead", {}, h("tr", {}, ...["validator RPC", "height", "app hash at common height", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, ...n.validators.map((v) => h("tr", { class: v.reachable ? "up" : "down", dataset: { reachable: String(v.reachable) } },
          h("td", { class: "mono" }, v.rpc.replace(/^https?:\/\//, "")),
          h("td", {}, v.height == null ? "—" : `#${v.height}`),
          h("td", { class: "mono", title: v.app_hash || "" }, v.app_hash ? short(v.app_hash, 10) : "—"),
          h("td", {}, h("span", { class: `pill ${v.reachable ? "good" : "bad"}` }, v.reachable ? "up" : "down")))))),
      h("p", { class: "note" }, `${n.validators.length - down} of ${n.validators.length} validators up; the gateway's replica is at #${n.gateway_l1_height}. ${n.note}.`),
    );
  } catch (e) {
    $("network").replaceChildren(h("p", { class: "error" }, `network: ${e.message}`));
  }
}

// ---------------------------------------------------------------- events

function connectEvents() {
  const dot = $("events-state");
  const es = new EventSource("/v1/events");
  es.onopen = () => {
    dot.textContent = "live";
    dot.className = "pill good";
  };
  es.onerror = () => {
    dot.textContent = "reconnecting";
    dot.className = "pill warn";
  };
  const on = (type, f) => es.addEventListener(type, (m) => {
    try {
      f(JSON.parse(m.data));
    } catch (e) {
      console.warn(type, e);
    }
  });
  on("session_opened", (e) => touchSession(e.session, { owner: e.owner }));
  on("step_accepted", (e) => {
    const s = touchSession(e.session);
    s.packages.add(e.package_id);
    setPackage(e.package_id, { stage: e.stage, final: false, height: null });
    refreshSession(e.session);
    if (currentRoute().kind === "package" && currentRoute().id === e.package_id) refreshPackage(e.package_id);
  });
  on("session_committing", (e) => {
    touchSession(e.session, { status: "committing" });
    refreshSession(e.session);
  });
  on("session_expired", (e) => {
    touchSession(e.session, { status: "expired" });
    refreshSession(e.session);
  });
  on("session_finalized", async (e) => {
    // An expired session's steps become final too; it stays "expired".
    const expired = touchSession(e.session).status === "expired";
    const s = touchSession(e.session, e.complete && !expired ? { status: "finalized" } : {});
    consoleUi.markFinal(e.session, e.last_seq, e.height, e.tx_hash, Date.now());
    refreshStatus();
    await refreshSession(e.session);
    for (const p of s.packages) refreshPackage(p);
  });
  on("session_rejected", async (e) => {
    const s = touchSession(e.session, { status: "rejected" });
    consoleUi.markRejected(e.session, e.code, e.detail);
    await refreshSession(e.session);
    for (const p of s.packages) refreshPackage(p);
  });
}

// ---------------------------------------------------------------- pages

function currentRoute() {
  const m = location.hash.match(/^#\/(package|session)\/(.+)$/);
  if (m) return { kind: m[1], id: decodeURIComponent(m[2]) };
  if (location.hash === "#/selftest") return { kind: "selftest" };
  return { kind: "dashboard" };
}

function showPage(title, ...content) {
  $("dashboard").hidden = true;
  $("page").hidden = false;
  $("page").replaceChildren(h("p", {}, h("a", { href: "#/" }, "← dashboard")), h("h2", {}, title), ...content);
}

function dl(pairs) {
  return h("dl", { class: "facts" }, ...pairs.filter(Boolean).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function renderPackagePage(view) {
  const p = view.tentative || view.final;
  const lastFinal = [...view.history].reverse().find((x) => x.state === "final");
  showPage(`Package ${view.package_id}`,
    dl([
      ["stage", h("span", { class: `badge ${lastFinal && view.history[view.history.length - 1].state === "final" ? "finalized" : "open"}` }, p.stage)],
      ["state", view.history.every((x) => x.state === "final") ? `final on L1 (block #${lastFinal ? lastFinal.l1_height ?? "?" : "?"})` : "tentative: answered by the gateway (L2), not yet final on L1"],
      ["supplier", h("span", { class: "mono", title: p.supplier }, nameOf(p.supplier))],
      ["delivery note", p.delivery_note_id],
      ["label", p.label ? `${p.label.label_id} → ${p.label.destination} (${p.label.priority}), courier ${nameOf(p.label.courier)}` : "—"],
      ["quality checks", p.qc && p.qc.length ? p.qc.map((q) => (q.passed ? "passed" : `failed: ${(q.issues || []).join("; ")}`)).join(", ") : "—"],
      ["gateway's L1 height", `#${view.l1_height}`],
    ]),
    h("h3", {}, "Manifest"),
    h("table", { class: "steps" },
      h("thead", {}, h("tr", {}, h("th", {}, "item"), h("th", {}, "description"), h("th", {}, "quantity"))),
      h("tbody", {}, ...p.manifest.lines.map((l) => h("tr", {}, h("td", {}, l.item_id), h("td", {}, l.description), h("td", {}, String(l.quantity)))))),
    h("h3", {}, "Provenance"),
    h("table", { class: "steps", id: "provenance" },
      h("thead", {}, h("tr", {}, ...["#", "action", "stage", "actor", "session", "seq", "signed at (client)", "state", "L1 height", "transaction"].map((t) => h("th", {}, t)))),
      h("tbody", {}, ...view.history.map((x, i) => h("tr", { class: x.state, dataset: { state: x.state } },
        h("td", {}, String(i + 1)),
        h("td", {}, x.action),
        h("td", {}, x.stage),
        h("td", { class: "mono", title: x.actor }, nameOf(x.actor)),
        h("td", { class: "mono" }, h("a", { href: `#/session/${x.session}` }, short(x.session, 8))),
        h("td", {}, String(x.seq)),
        h("td", { class: "mono" }, clock(x.client_time_ms)),
        h("td", {}, h("span", { class: `badge ${x.state === "final" ? "finalized" : "open"}` }, x.state)),
        h("td", {}, x.l1_height == null ? "—" : `#${x.l1_height}`),
        h("td", { class: "mono", title: x.tx_hash || "" }, x.tx_hash ? short(x.tx_hash, 12) : "—"))))),
  );
}

function renderSessionPage(id) {
  const s = state.sessions.get(id);
  showPage(`Session ${short(id, 10)}`, h("p", { class: "mono wrap" }, id), s ? sessionCard(s, true) : h("p", { class: "note" }, "loading…"));
}

function renderSelftestPage() {
  const t = state.selftest;
  showPage("Protocol self-test",
    h("p", {}, "This browser's encoder and WebCrypto Ed25519 signer, checked against docs/protocol-vectors.json (served at /assets/protocol-vectors.json)."),
    !t ? h("p", {}, "running…") : h("div", {},
      h("p", { class: `summary ${t.pass ? "good" : "bad"}` }, t.pass ? `PASS: ${t.total} checks` : `FAIL: ${t.failed} of ${t.total} checks`),
      h("table", { class: "steps" },
        h("thead", {}, h("tr", {}, h("th", {}, "vector"), h("th", {}, "check"), h("th", {}, "result"))),
        h("tbody", {}, ...t.results.map((r) => h("tr", { class: r.ok ? "final" : "rejected" },
          h("td", {}, r.name), h("td", {}, r.check), h("td", {}, r.ok ? "pass" : `FAIL ${r.detail}`)))))));
}

async function route() {
  const r = currentRoute();
  if (r.kind === "dashboard") {
    $("dashboard").hidden = false;
    $("page").hidden = true;
    return;
  }
  if (r.kind === "selftest") return renderSelftestPage();
  if (r.kind === "session") {
    renderSessionPage(r.id);
    return refreshSession(r.id);
  }
  showPage(`Package ${r.id}`, h("p", { class: "note" }, "loading…"));
  try {
    renderPackagePage(await api(`/v1/packages/${encodeURIComponent(r.id)}`));
  } catch (e) {
    showPage(`Package ${r.id}`, h("p", { class: "error" }, e.message));
  }
}

// ---------------------------------------------------------------- rendering

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderBoard();
    renderSessions();
  });
}

async function selfTest() {
  const badge = $("selftest");
  badge.dataset.status = "running";
  try {
    state.selftest = await runSelfTest();
  } catch (e) {
    state.selftest = { pass: false, total: 0, failed: 1, results: [{ name: "selftest", check: "runs", ok: false, detail: String(e) }] };
  }
  const t = state.selftest;
  badge.dataset.status = t.pass ? "pass" : "fail";
  badge.className = `pill ${t.pass ? "good" : "bad"}`;
  badge.textContent = t.pass ? `self-test pass (${t.total})` : `self-test FAIL (${t.failed}/${t.total})`;
  if (currentRoute().kind === "selftest") renderSelftestPage();
}

async function main() {
  window.addEventListener("hashchange", route);
  renderBoard();
  renderSessions();
  connectEvents();
  await refreshStatus();
  await consoleUi.loadDemoKeys();
  for (const id of remembered("packages")) refreshPackage(id);
  for (const id of remembered("sessions").slice(-8)) refreshSession(id);
  refreshNetwork();
  setInterval(refreshStatus, 2000);
  setInterval(refreshNetwork, 2000);
  route();
  selfTest();
  document.body.dataset.ready = "true";
}

// For the browser test and for curious users: import keys without the form.
window.tandemConsole = consoleUi;
main();
