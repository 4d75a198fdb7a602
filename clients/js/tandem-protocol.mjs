// tandem-protocol.mjs: Tandem's wire protocol for JavaScript clients.
//
// Dependency-free ES module for Node 20+ and browsers. It turns the JSON form
// of Tandem's messages (as the HTTP API and docs/protocol-vectors.json show
// them) into their canonical borsh bytes, builds domain-separated signing
// bytes (ASCII tag || 0x00 || borsh(message)), hashes them with SHA-256 and
// signs / verifies them with Ed25519, all through WebCrypto (crypto.subtle).
// The format is specified in docs/protocol.md.
//
// Conventions: keys, hashes and signatures are hex strings; u64 fields accept
// a Number (safe integer), a BigInt or a decimal string; an Option is `null`
// or absent for None. Encoders throw on anything they cannot encode exactly.
// Encoders are synchronous and return Uint8Array; everything that hashes or
// signs (sha256Hex, sessionId, stepHash, signHex, verifyHex, ...) returns a
// Promise, because WebCrypto is asynchronous.
//
//   const open = { chain_id, owner, gateway, nonce: 1, client_time_ms: Date.now() };
//   const sig = await signHex(seed, signingBytes(DOMAINS.sessionOpen, encodeSessionOpen(open)));
//   const session = await sessionId(open);
//   const commit = await signSessionClose(seed, { chain_id, session, owner, last_seq: 3 });

/** Domain tags: what a byte string is signed or hashed for. */
export const DOMAINS = Object.freeze({
  step: "tandem/v1/step",
  sessionOpen: "tandem/v1/session-open",
  sessionClose: "tandem/v1/session-close",
  sessionId: "tandem/v1/session-id",
  manifest: "tandem/v1/manifest",
  batch: "tandem/v1/batch",
  admin: "tandem/v1/admin",
  outcome: "tandem/v1/outcome",
  package: "tandem/v1/package",
  receipt: "tandem/v1/receipt",
});

/** Largest transaction L1 accepts, in bytes. */
export const TX_BYTES_MAX = 512 * 1024;

// Enum variant indices (the borsh discriminant byte), in declaration order.
export const ROLES = ["admin", "supplier", "operator", "inspector", "courier"];
export const STAGES = ["registered", "scanned", "validated", "inspected", "quarantined", "labeled", "handed_over", "delivered"];
export const PRIORITIES = ["low", "normal", "high", "urgent"];
export const ACTION_KINDS = ["register", "scan", "validate", "qc", "label", "handover", "deliver"];
export const ADMIN_OPS = ["register_actor", "revoke_actor", "register_gateway", "revoke_gateway"];
export const TX_TYPES = ["session_batch", "direct_step", "admin"];

const utf8 = new TextEncoder();
const U32_MAX = 0xffffffff;
const U64_MAX = (1n << 64n) - 1n;

// ---------------------------------------------------------------- hex

export function hexToBytes(hex, len) {
  if (typeof hex !== "string" || hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) {
    throw new TypeError(`not a hex string: ${JSON.stringify(hex)}`);
  }
  if (len !== undefined && hex.length !== 2 * len) throw new TypeError(`expected ${len} bytes of hex, got ${hex.length / 2}`);
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---------------------------------------------------------------- borsh writer

class Writer {
  constructor() {
    this.parts = [];
  }
  raw(bytes) {
    this.parts.push(bytes);
    return this;
  }
  u8(n) {
    if (!Number.isInteger(n) || n < 0 || n > 0xff) throw new RangeError(`not a u8: ${n}`);
    return this.raw(Uint8Array.of(n));
  }
  u32(n) {
    if (!Number.isInteger(n) || n < 0 || n > U32_MAX) throw new RangeError(`not a u32: ${n}`);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n, true);
    return this.raw(b);
  }
  u64(n) {
    if (typeof n === "number" && !Number.isSafeInteger(n)) throw new RangeError(`unsafe integer for u64: ${n}; use a BigInt or a string`);
    if (typeof n === "string" && !/^[0-9]+$/.test(n)) throw new RangeError(`not a u64: ${JSON.stringify(n)}`);
    const v = BigInt(n);
    if (v < 0n || v > U64_MAX) throw new RangeError(`not a u64: ${n}`);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, true);
    return this.raw(b);
  }
  bool(v) {
    if (typeof v !== "boolean") throw new TypeError(`not a bool: ${v}`);
    return this.u8(v ? 1 : 0);
  }
  string(s) {
    if (typeof s !== "string") throw new TypeError(`not a string: ${s}`);
    const b = utf8.encode(s);
    return this.u32(b.length).raw(b);
  }
  fixed(hex, len) {
    return this.raw(hexToBytes(hex, len));
  }
  key(hex) {
    return this.fixed(hex, 32);
  }
  hash(hex) {
    return this.fixed(hex, 32);
  }
  sig(hex) {
    return this.fixed(hex, 64);
  }
  vec(items, each) {
    if (!Array.isArray(items)) throw new TypeError(`not an array: ${items}`);
    this.u32(items.length);
    for (const item of items) each(this, item);
    return this;
  }
  option(value, each) {
    if (value === null || value === undefined) return this.u8(0);
    this.u8(1);
    each(this, value);
    return this;
  }
  variant(names, name, what) {
    const i = names.indexOf(name);
    if (i < 0) throw new TypeError(`unknown ${what}: ${JSON.stringify(name)}`);
    return this.u8(i);
  }
  bytes() {
    return concat(...this.parts);
  }
}

const encoder = (write) => (obj) => {
  const w = new Writer();
  write(w, obj);
  return w.bytes();
};

// ---------------------------------------------------------------- message schemas

const wManifestLine = (w, l) => w.string(l.item_id).string(l.description).u32(l.quantity);

const wManifest = (w, m) =>
  w.string(m.chain_id).string(m.package_id).string(m.delivery_note_id).vec(m.lines, wManifestLine);

const wItemCount = (w, c) => w.string(c.item_id).u32(c.quantity);

function wAction(w, a) {
  w.variant(ACTION_KINDS, a.kind, "action kind");
  switch (a.kind) {
    case "register":
      wManifest(w, a.manifest);
      return w.sig(a.manifest_signature);
    case "scan":
      return w.string(a.station);
    case "validate":
      return w.vec(a.counts, wItemCount);
    case "qc":
      return w.bool(a.passed).vec(a.issues, (w, s) => w.string(s));
    case "label":
      return w.string(a.label_id).string(a.destination).variant(PRIORITIES, a.priority, "priority").key(a.courier);
    case "handover":
      return w.key(a.courier);
    case "deliver":
      return w.string(a.recipient);
  }
}

const wStep = (w, s) => {
  w.string(s.chain_id).hash(s.session).u64(s.seq).key(s.actor).string(s.package_id);
  wAction(w, s.action);
  return w.u64(s.client_time_ms);
};

const wSignedStep = (w, s) => {
  wStep(w, s.step);
  return w.sig(s.signature);
};

const wSessionOpen = (w, o) =>
  w.string(o.chain_id).key(o.owner).option(o.gateway, (w, g) => w.key(g)).u64(o.nonce).u64(o.client_time_ms);

const wSignedSessionOpen = (w, o) => {
  wSessionOpen(w, o.open);
  return w.sig(o.signature);
};

const wSessionClose = (w, c) => w.string(c.chain_id).hash(c.session).key(c.owner).u64(c.last_seq);

const wSignedSessionClose = (w, c) => {
  wSessionClose(w, c.close);
  return w.sig(c.signature);
};

const wBatchBody = (w, b) =>
  w
    .string(b.chain_id)
    .hash(b.session)
    .option(b.open, wSignedSessionOpen)
    .vec(b.steps, wSignedStep)
    .vec(b.claims, (w, h) => w.hash(h))
    .key(b.gateway)
    .option(b.close, wSignedSessionClose);

function wAdminOp(w, op) {
  w.variant(ADMIN_OPS, op.kind, "admin op");
  switch (op.kind) {
    case "register_actor":
      return w.key(op.key).string(op.name).variant(ROLES, op.role, "role");
    case "register_gateway":
      return w.key(op.key).string(op.name);
    default: // revoke_actor, revoke_gateway
      return w.key(op.key);
  }
}

const wAdminBody = (w, b) => {
  w.string(b.chain_id).key(b.admin).u64(b.nonce);
  return wAdminOp(w, b.op);
};

function wTx(w, tx) {
  w.variant(TX_TYPES, tx.type, "tx type");
  switch (tx.type) {
    case "session_batch":
      wBatchBody(w, tx.body);
      return w.sig(tx.signature);
    case "direct_step":
      w.option(tx.open, wSignedSessionOpen);
      return wSignedStep(w, tx.step);
    case "admin":
      wAdminBody(w, tx.body);
      return w.sig(tx.signature);
  }
}

const wOutcome = (w, o) =>
  w
    .hash(o.step)
    .string(o.package_id)
    .variant(ACTION_KINDS, o.action, "action kind")
    .option(o.stage_before, (w, s) => w.variant(STAGES, s, "stage"))
    .variant(STAGES, o.stage_after, "stage")
    .hash(o.package_digest);

const wReceiptBody = (w, r) => w.string(r.chain_id).hash(r.session).u64(r.seq).hash(r.step).hash(r.outcome);

/** borsh(SessionOpen) from its JSON form. */
export const encodeSessionOpen = encoder(wSessionOpen);
/** borsh(SessionClose) from its JSON form. */
export const encodeSessionClose = encoder(wSessionClose);
/** borsh(Step) from its JSON form (any Action kind). */
export const encodeStep = encoder(wStep);
/** borsh(Manifest) from its JSON form. */
export const encodeManifest = encoder(wManifest);
/** borsh(ReceiptBody) from its JSON form. */
export const encodeReceiptBody = encoder(wReceiptBody);
/** borsh(Outcome) from its JSON form. */
export const encodeOutcome = encoder(wOutcome);
/** borsh(BatchBody) from its JSON form. */
export const encodeBatchBody = encoder(wBatchBody);
/** borsh(AdminBody) from its JSON form. */
export const encodeAdminBody = encoder(wAdminBody);
/** borsh(Tx) from its JSON form (tagged by "type"): the bytes submitted to L1. */
export function encodeTx(tx) {
  const bytes = encoder(wTx)(tx);
  if (bytes.length > TX_BYTES_MAX) throw new RangeError(`transaction of ${bytes.length} bytes exceeds ${TX_BYTES_MAX}`);
  return bytes;
}

// ---------------------------------------------------------------- domains, hashes

/** tag || 0x00 || bytes, where `domainTag` is one of the DOMAINS values. */
export function signingBytes(domainTag, bytes) {
  if (!Object.values(DOMAINS).includes(domainTag)) throw new TypeError(`unknown domain tag: ${domainTag}`);
  return concat(utf8.encode(domainTag), Uint8Array.of(0), bytes);
}

function subtle() {
  const s = globalThis.crypto && globalThis.crypto.subtle;
  if (!s) throw new Error("WebCrypto (crypto.subtle) is not available");
  return s;
}

/** SHA-256 of `bytes`, as lowercase hex. */
export async function sha256Hex(bytes) {
  return bytesToHex(new Uint8Array(await subtle().digest("SHA-256", bytes)));
}

/** The session id a SessionOpen (JSON form) will get: sha256(session-id domain bytes). */
export function sessionId(open) {
  return sha256Hex(signingBytes(DOMAINS.sessionId, encodeSessionOpen(open)));
}

/** A step's hash (what receipts and outcomes refer to). */
export function stepHash(step) {
  return sha256Hex(signingBytes(DOMAINS.step, encodeStep(step)));
}

/**
 * The owner's signed close of a session after step `lastSeq` (the body of
 * POST /v1/sessions/{id}/commit): { close: { chain_id, session, owner, last_seq }, signature }.
 */
export async function signSessionClose(seedHex, { chain_id, session, owner, last_seq }) {
  const close = { chain_id, session, owner, last_seq };
  const signature = await signHex(seedHex, signingBytes(DOMAINS.sessionClose, encodeSessionClose(close)));
  return { close, signature };
}

/** An outcome's hash (what a gateway claims in a batch and puts in receipts). */
export function outcomeHash(outcome) {
  return sha256Hex(signingBytes(DOMAINS.outcome, encodeOutcome(outcome)));
}

// ---------------------------------------------------------------- Ed25519

// PKCS#8 DER header for an Ed25519 private key; the 32-byte seed follows it.
const PKCS8_ED25519 = hexToBytes("302e020100300506032b657004220420");

function privateKey(seedHex, extractable = false) {
  return subtle().importKey("pkcs8", concat(PKCS8_ED25519, hexToBytes(seedHex, 32)), { name: "Ed25519" }, extractable, ["sign"]);
}

function base64urlToBytes(s) {
  const b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

/** The public key (hex) for a 32-byte seed (hex). */
export async function publicKeyFromSeedHex(seedHex) {
  const jwk = await subtle().exportKey("jwk", await privateKey(seedHex, true));
  return bytesToHex(base64urlToBytes(jwk.x));
}

/** Sign `bytes` (normally signingBytes(...)) with the key for `seedHex`; returns the 64-byte signature as hex. */
export async function signHex(seedHex, bytes) {
  return bytesToHex(new Uint8Array(await subtle().sign({ name: "Ed25519" }, await privateKey(seedHex), bytes)));
}

// Encodings of the small-order points, sign bit cleared (as in libsodium's
// blocklist, including the non-canonical encodings of 0 and 1).
const SMALL_ORDER = [
  "0000000000000000000000000000000000000000000000000000000000000000",
  "0100000000000000000000000000000000000000000000000000000000000000",
  "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
  "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
  "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
  "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
];
const isSmallOrder = (point) => {
  const p = point.slice();
  p[31] &= 0x7f;
  return SMALL_ORDER.includes(bytesToHex(p));
};

// The group order L, little-endian; a canonical s is < L.
const L = hexToBytes("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
const isCanonicalS = (s) => {
  for (let i = 31; i >= 0; i--) if (s[i] !== L[i]) return s[i] < L[i];
  return false;
};

/**
 * Verify a signature over `bytes`, as strictly as L1 does: malformed hex,
 * small-order public keys or R, and non-canonical s are refused before
 * WebCrypto checks the equation. Never throws; returns a boolean.
 */
export async function verifyHex(publicKeyHex, signatureHex, bytes) {
  try {
    const key = hexToBytes(publicKeyHex, 32);
    const sig = hexToBytes(signatureHex, 64);
    if (isSmallOrder(key) || isSmallOrder(sig.subarray(0, 32)) || !isCanonicalS(sig.subarray(32))) return false;
    const k = await subtle().importKey("raw", key, { name: "Ed25519" }, false, ["verify"]);
    return await subtle().verify({ name: "Ed25519" }, k, sig, bytes);
  } catch {
    return false;
  }
}
