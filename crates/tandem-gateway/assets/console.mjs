// console.mjs (dashboard): the operator console. Holds demo identities' keys
// in this page's memory only, opens sessions and signs steps in the browser
// (WebCrypto Ed25519 over the canonical encoding of docs/protocol.md, through
// /assets/tandem-protocol.mjs), sends them to the gateway and shows each
// answer and, later, its finality on L1.

import * as P from "./tandem-protocol.mjs";
import { h, api, short, clock } from "./dom.mjs";

// Which actions each role may take (the intake workflow).
const ACTIONS_BY_ROLE = {
  supplier: ["register"],
  operator: ["scan", "validate", "qc", "label", "handover"],
  inspector: ["qc"],
  courier: ["deliver"],
};

const LABELS = {
  register: "Register (manifest)",
  scan: "Scan",
  validate: "Validate counts",
  qc: "Quality check",
  label: "Label",
  handover: "Hand over to courier",
  deliver: "Deliver",
};

/** A nonce below 2^53 from the OS random source. */
function nonce() {
  const [hi, lo] = crypto.getRandomValues(new Uint32Array(2));
  return (hi & 0x1fffff) * 2 ** 32 + lo;
}

function randomTag() {
  const b = crypto.getRandomValues(new Uint8Array(3));
  return P.bytesToHex(b).toUpperCase();
}

export class Console {
  /**
   * @param {HTMLElement} root the console panel's body
   * @param {object} hooks { status(): {chain_id, gateway}, onAnswered(info), onOpened(info), onCommit(info), onPackage(id) }
   */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    this.keys = []; // { name, role, public_key, secret_key }
    this.sessions = new Map(); // public_key → { id, seq, opened_ms, committed }
    this.demoKeysServed = null;
    this.packageId = `PKG-${randomTag()}`;
    this.build();
  }

  /** Name of a known identity by public key (for display elsewhere). */
  nameOf(publicKey) {
    const k = this.keys.find((k) => k.public_key === publicKey);
    return k ? k.name : null;
  }

  async loadDemoKeys() {
    try {
      const doc = await api("/v1/demo/keys");
      this.demoKeysServed = true;
      await this.addKeys(doc.keys, "demo");
    } catch (e) {
      this.demoKeysServed = false;
      if (e.status !== 404) this.log("error", `demo keys: ${e.message}`);
    }
    this.renderKeyNote();
  }

  /** Add key files ({name, role, public_key, secret_key}); checks each secret derives its public key. */
  async addKeys(list, source) {
    let added = 0;
    for (const k of list) {
      if (!k || typeof k.secret_key !== "string" || !ACTIONS_BY_ROLE[k.role]) continue;
      const pub = await P.publicKeyFromSeedHex(k.secret_key);
      if (k.public_key && k.public_key.toLowerCase() !== pub) throw new Error(`${k.name}: public_key does not match secret_key`);
      if (this.keys.some((x) => x.public_key === pub)) continue;
      this.keys.push({ name: k.name || short(pub), role: k.role, public_key: pub, secret_key: k.secret_key.toLowerCase(), source });
      added++;
    }
    this.keys.sort((a, b) => a.name.localeCompare(b.name));
    this.renderKeys();
    return added;
  }

  // ------------------------------------------------------------ layout

  build() {
    this.keyNote = h("p", { class: "note", id: "key-note" }, "Loading demo identities…");
    this.keySelect = h("select", { id: "key-select", onchange: () => this.onIdentity() });
    this.importBox = h("textarea", {
      id: "key-import",
      rows: 3,
      spellcheck: "false",
      placeholder: '{"name": "operator-1", "role": "operator", "public_key": "…", "secret_key": "…"}  (one key file, or an array of them)',
    });
    const importDetails = h("details", { class: "import", id: "import-details" },
      h("summary", {}, "Import a key file"),
      h("p", { class: "note" }, "Paste the JSON of a key file (e.g. DIR/keys/operator-1.json). The key stays in this tab's memory."),
      this.importBox,
      h("button", { id: "import-keys", type: "button", onclick: () => this.onImport() }, "Import"));
    this.sessionLine = h("div", { class: "session-line", id: "session-line" });
    this.openBtn = h("button", { id: "open-session", type: "button", onclick: () => this.onOpen() }, "Open session");
    this.commitBtn = h("button", { id: "commit-session", type: "button", class: "secondary", onclick: () => this.onCommit() }, "Commit session");
    this.actionSelect = h("select", { id: "action-select", onchange: () => this.renderFields() });
    this.pkgInput = h("input", { id: "package-id", name: "package_id", value: this.packageId, spellcheck: "false", oninput: (e) => (this.packageId = e.target.value.trim()) });
    this.fields = h("div", { class: "fields", id: "action-fields" });
    this.sendBtn = h("button", { id: "send-step", type: "submit" }, "Sign and send");
    this.form = h("form", { id: "step-form", class: "step-form", onsubmit: (e) => { e.preventDefault(); this.onSend(); } },
      h("div", { class: "row" },
        h("label", {}, "Action", this.actionSelect),
        h("label", {}, "Package", this.pkgInput)),
      this.fields,
      h("div", { class: "row buttons" }, this.sendBtn));
    this.logList = h("ol", { class: "log", id: "console-log" });
    this.root.replaceChildren(
      this.keyNote,
      h("div", { class: "row" }, h("label", { class: "grow" }, "Identity", this.keySelect)),
      importDetails,
      h("div", { class: "row buttons" }, this.openBtn, this.commitBtn),
      this.sessionLine,
      this.form,
      h("h3", {}, "Answers"),
      this.logList,
    );
    this.renderKeys();
  }

  renderKeyNote() {
    if (this.demoKeysServed) {
      this.keyNote.textContent =
        "Demo identities of this local devnet, served by the gateway in clear (a devnet convenience, never for real keys). Signing happens in this browser.";
    } else {
      this.keyNote.textContent =
        "This gateway serves no demo keys (only `tandem up` on a local devnet does). Import a key file below to act as that identity; signing happens in this browser.";
      this.keyNote.classList.add("warn");
    }
  }

  renderKeys() {
    const current = this.keySelect.value;
    this.keySelect.replaceChildren(
      ...(this.keys.length ? [] : [h("option", { value: "" }, "no identity yet")]),
      ...this.keys.map((k) => h("option", { value: k.public_key, selected: k.public_key === current }, `${k.name} (${k.role})`)),
    );
    this.onIdentity();
  }

  identity() {
    return this.keys.find((k) => k.public_key === this.keySelect.value) || null;
  }

  onIdentity() {
    const who = this.identity();
    const actions = who ? ACTIONS_BY_ROLE[who.role] : [];
    const was = this.actionSelect.value;
    this.actionSelect.replaceChildren(...actions.map((a) => h("option", { value: a, selected: a === was }, LABELS[a])));
    this.renderFields();
    this.renderSession();
  }

  renderSession() {
    const who = this.identity();
    const s = who && this.sessions.get(who.public_key);
    this.sessionLine.replaceChildren();
    if (!who) {
      this.sessionLine.append("Pick or import an identity first.");
    } else if (!s) {
      this.sessionLine.append(`No open session for ${who.name}. Open one, then sign steps.`);
    } else {
      this.sessionLine.append(
        "Session ",
        h("a", { href: `#/session/${s.id}`, id: "session-id", dataset: { session: s.id } }, short(s.id, 10)),
        ` · owner ${who.name} · ${s.seq} step${s.seq === 1 ? "" : "s"} · `,
        ((st) => h("span", { class: `badge ${st}`, dataset: { status: st } }, st))(s.final ? "finalized" : s.committed ? "committing" : "open"),
      );
    }
    const open = Boolean(s && !s.committed);
    this.sendBtn.disabled = !open;
    this.commitBtn.disabled = !open;
    this.openBtn.disabled = !who || open;
  }

  renderFields() {
    const a = this.actionSelect.value;
    const f = [];
    const field = (label, input) => h("label", {}, label, input);
    const couriers = this.keys.filter((k) => k.role === "courier");
    const courierInput = () =>
      h("select", { name: "courier" },
        ...couriers.map((k) => h("option", { value: k.public_key }, `${k.name} (${short(k.public_key)})`)),
        couriers.length ? null : h("option", { value: "" }, "import a courier key first"));
    const tag = this.packageId.replace(/^PKG-/, "") || randomTag();
    switch (a) {
      case "register":
        f.push(h("div", { class: "row" },
          field("Delivery note", h("input", { name: "delivery_note_id", value: `DN-${tag}` }))));
        f.push(field("Manifest lines: item id, description, quantity (one per line)",
          h("textarea", { name: "lines", rows: 3, spellcheck: "false" }, "ITEM-1, Steel bolts M8, 100\nITEM-2, Washers M8, 200")));
        break;
      case "scan":
        f.push(field("Station", h("input", { name: "station", value: "DOCK-1" })));
        break;
      case "validate":
        f.push(field("Counts: item id = quantity, one per line (empty: copy the manifest)",
          h("textarea", { name: "counts", rows: 2, spellcheck: "false", placeholder: "ITEM-1 = 100" })));
        break;
      case "qc":
        f.push(h("label", { class: "check" }, h("input", { type: "checkbox", name: "passed", checked: true }), "Passed"));
        f.push(field("Issues (one per line; required when failed)", h("textarea", { name: "issues", rows: 2 })));
        break;
      case "label":
        f.push(h("div", { class: "row" },
          field("Label id", h("input", { name: "label_id", value: `LBL-${tag}` })),
          field("Priority", h("select", { name: "priority" }, ...P.PRIORITIES.map((p) => h("option", { value: p, selected: p === "normal" }, p))))));
        f.push(field("Destination", h("input", { name: "destination", value: "Ward 3, Building B" })));
        f.push(field("Courier", courierInput()));
        break;
      case "handover":
        f.push(field("Courier (the one on the label)", courierInput()));
        break;
      case "deliver":
        f.push(field("Recipient", h("input", { name: "recipient", value: "Front desk" })));
        break;
    }
    this.fields.replaceChildren(...f);
  }

  // ------------------------------------------------------------ actions

  async onImport() {
    try {
      const text = this.importBox.value.trim();
      const doc = JSON.parse(text);
      const list = Array.isArray(doc) ? doc : Array.isArray(doc.keys) ? doc.keys : [doc];
      const n = await this.addKeys(list, "imported");
      this.importBox.value = "";
      this.importBox.closest("details").open = false;
      this.log("info", `imported ${n} key${n === 1 ? "" : "s"}`);
    } catch (e) {
      this.log("error", `import: ${e.message}`);
    }
  }

  async onOpen() {
    const who = this.identity();
    if (!who) return;
    const st = this.hooks.status();
    if (!st) return this.log("error", "the gateway's status is not known yet");
    const open = { chain_id: st.chain_id, owner: who.public_key, gateway: st.gateway, nonce: nonce(), client_time_ms: Date.now() };
    try {
      const signature = await P.signHex(who.secret_key, P.signingBytes(P.DOMAINS.sessionOpen, P.encodeSessionOpen(open)));
      const expected = await P.sessionId(open);
      const t0 = performance.now();
      const r = await api("/v1/sessions", { method: "POST", body: JSON.stringify({ open, signature }) });
      const ms = performance.now() - t0;
      if (r.session_id !== expected) throw new Error(`the gateway named session ${r.session_id}, expected ${expected}`);
      this.sessions.set(who.public_key, { id: r.session_id, seq: 0, committed: false, owner: who });
      this.log("open", `${who.name} opened session ${short(r.session_id, 10)}`, { session: r.session_id, ms });
      this.hooks.onOpened({ session: r.session_id, owner: who.public_key });
    } catch (e) {
      this.log("error", `open: ${e.message}`);
    }
    this.renderSession();
  }

  async onCommit() {
    const who = this.identity();
    const s = who && this.sessions.get(who.public_key);
    if (!s) return;
    try {
      const at = Date.now();
      // Only the owner closes its session: the close is signed here, after
      // the session's last step.
      const st = this.hooks.status();
      if (!st) throw new Error("the gateway's status is not known yet");
      const close = await P.signSessionClose(who.secret_key, { chain_id: st.chain_id, session: s.id, owner: who.public_key, last_seq: s.seq });
      await api(`/v1/sessions/${s.id}/commit`, { method: "POST", body: JSON.stringify(close) });
      s.committed = true;
      this.log("commit", `${who.name} committed session ${short(s.id, 10)}: waiting for L1`, { session: s.id });
      this.hooks.onCommit({ session: s.id, at });
    } catch (e) {
      this.log("error", `commit: ${e.message}`);
    }
    this.renderSession();
  }

  /** The action's JSON form from the form fields. */
  async action(kind, pkg, who, st) {
    const v = (name) => {
      const e = this.form.elements.namedItem(name);
      return e ? e.value.trim() : "";
    };
    const lines = (name) => v(name).split("\n").map((l) => l.trim()).filter(Boolean);
    switch (kind) {
      case "register": {
        const manifest = {
          chain_id: st.chain_id,
          package_id: pkg,
          delivery_note_id: v("delivery_note_id"),
          lines: lines("lines").map((l) => {
            const parts = l.split(",").map((p) => p.trim());
            if (parts.length < 3) throw new Error(`manifest line "${l}": expected item id, description, quantity`);
            const quantity = Number(parts[parts.length - 1]);
            if (!Number.isInteger(quantity)) throw new Error(`manifest line "${l}": quantity is not a whole number`);
            return { item_id: parts[0], description: parts.slice(1, -1).join(", "), quantity };
          }),
        };
        const manifest_signature = await P.signHex(who.secret_key, P.signingBytes(P.DOMAINS.manifest, P.encodeManifest(manifest)));
        return { kind, manifest, manifest_signature };
      }
      case "scan":
        return { kind, station: v("station") };
      case "validate": {
        let counts = lines("counts").map((l) => {
          const [item_id, q] = l.split("=").map((p) => p.trim());
          return { item_id, quantity: Number(q) };
        });
        if (counts.length === 0) {
          const view = await api(`/v1/packages/${encodeURIComponent(pkg)}`);
          const p = view.tentative || view.final;
          counts = p.manifest.lines.map((l) => ({ item_id: l.item_id, quantity: l.quantity }));
        }
        return { kind, counts };
      }
      case "qc":
        return { kind, passed: this.form.elements.namedItem("passed").checked, issues: lines("issues") };
      case "label":
        return { kind, label_id: v("label_id"), destination: v("destination"), priority: v("priority"), courier: v("courier") };
      case "handover":
        return { kind, courier: v("courier") };
      case "deliver":
        return { kind, recipient: v("recipient") };
    }
    throw new Error(`unknown action ${kind}`);
  }

  async onSend() {
    const who = this.identity();
    const s = who && this.sessions.get(who.public_key);
    const st = this.hooks.status();
    if (!s || s.committed || !st) return;
    const kind = this.actionSelect.value;
    const pkg = this.pkgInput.value.trim();
    this.sendBtn.disabled = true;
    try {
      const step = {
        chain_id: st.chain_id,
        session: s.id,
        seq: s.seq + 1,
        actor: who.public_key,
        package_id: pkg,
        action: await this.action(kind, pkg, who, st),
        client_time_ms: Date.now(),
      };
      const signature = await P.signHex(who.secret_key, P.signingBytes(P.DOMAINS.step, P.encodeStep(step)));
      const t0 = performance.now();
      const r = await api(`/v1/sessions/${s.id}/steps`, { method: "POST", body: JSON.stringify({ step, signature }) });
      const ms = performance.now() - t0;
      s.seq = step.seq;
      const stage = r.outcome.stage_after;
      this.log("step", `#${step.seq} ${kind} ${pkg} → ${stage}`, { session: s.id, seq: step.seq, ms, pkg });
      this.hooks.onAnswered({ session: s.id, seq: step.seq, package_id: pkg, action: kind, stage, ms, at: Date.now(), package: r.package });
      this.hooks.onPackage(pkg);
      // The next step for this package, as a convenience.
      const next = { register: null, scan: "validate", validate: "qc", qc: "label", label: "handover" }[kind];
      if (next && [...this.actionSelect.options].some((o) => o.value === next)) {
        this.actionSelect.value = next;
        this.renderFields();
      }
    } catch (e) {
      this.log("error", `${kind}: ${e.message}`);
    }
    this.renderSession();
  }

  // ------------------------------------------------------------ answers

  log(kind, text, info = {}) {
    const li = h("li", { class: `entry ${kind}`, dataset: { kind, ...(info.session ? { session: info.session } : {}), ...(info.seq ? { seq: String(info.seq) } : {}) } },
      h("span", { class: "when" }, clock(Date.now())),
      h("span", { class: "what" }, text),
      info.ms !== undefined ? h("span", { class: "answered" }, `answered in ${info.ms.toFixed(1)} ms`) : null,
      info.seq ? h("span", { class: "finality tentative", dataset: { state: "tentative" } }, "L2 · tentative") : null,
    );
    this.logList.prepend(li);
    while (this.logList.children.length > 60) this.logList.lastChild.remove();
  }

  /** Mark this console's steps final up to `lastSeq` of `session`. */
  markFinal(session, lastSeq, height, txHash, at) {
    for (const li of this.logList.querySelectorAll(`li[data-session="${session}"][data-seq]`)) {
      if (Number(li.dataset.seq) > lastSeq) continue;
      const f = li.querySelector(".finality");
      if (f && f.dataset.state !== "final") {
        f.dataset.state = "final";
        f.className = "finality final";
        f.textContent = `final · L1 #${height} at ${clock(at)}`;
        f.title = `transaction ${txHash}`;
      }
    }
    for (const s of this.sessions.values()) if (s.id === session && s.committed && lastSeq >= s.seq) s.final = true;
    this.renderSession();
  }

  markRejected(session, code, detail) {
    for (const li of this.logList.querySelectorAll(`li[data-session="${session}"][data-seq]`)) {
      const f = li.querySelector(".finality");
      if (f && f.dataset.state !== "final") {
        f.dataset.state = "rejected";
        f.className = "finality rejected";
        f.textContent = `rejected: ${code}`;
        f.title = detail || "";
      }
    }
    for (const [k, s] of this.sessions) if (s.id === session) this.sessions.delete(k);
    this.renderSession();
  }
}
