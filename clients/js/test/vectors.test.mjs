// Checks tandem-protocol.mjs against the protocol test vectors produced by the
// Rust implementation (docs/protocol-vectors.json), plus a few extra vectors
// (test/more-vectors.json) for the Action kinds and transactions the main file
// does not contain. Run: cd clients/js && node --test test/
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import * as tp from "../tandem-protocol.mjs";

const load = (rel) => JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8"));
const main = load("../../../docs/protocol-vectors.json");
const more = load("./more-vectors.json");
const byName = Object.fromEntries(main.vectors.map((v) => [v.name, v]));
const hex = tp.bytesToHex;

// Which encoder applies to a vector, by the domain it is signed/hashed for.
const ENCODERS = {
  "tandem/v1/session-open": tp.encodeSessionOpen,
  "tandem/v1/session-close": tp.encodeSessionClose,
  "tandem/v1/session-id": tp.encodeSessionOpen,
  "tandem/v1/manifest": tp.encodeManifest,
  "tandem/v1/step": tp.encodeStep,
  "tandem/v1/receipt": tp.encodeReceiptBody,
  "tandem/v1/outcome": tp.encodeOutcome,
  "tandem/v1/batch": tp.encodeBatchBody,
  "tandem/v1/admin": tp.encodeAdminBody,
};

async function checkVector(v) {
  const encode = ENCODERS[v.domain];
  assert.ok(encode, `no encoder for ${v.domain}`);
  const borsh = encode(v.json);
  assert.equal(hex(borsh), v.borsh_hex, "borsh encoding");
  const signing = tp.signingBytes(v.domain, borsh);
  assert.equal(hex(signing), v.signing_bytes_hex, "signing bytes");
  assert.equal(await tp.sha256Hex(signing), v.sha256_hex, "sha256");
  if (v.signer_seed_hex) {
    assert.equal(await tp.publicKeyFromSeedHex(v.signer_seed_hex), v.signer_public_key_hex, "public key from seed");
    assert.equal(await tp.signHex(v.signer_seed_hex, signing), v.signature_hex, "deterministic signature");
    assert.ok(await tp.verifyHex(v.signer_public_key_hex, v.signature_hex, signing), "signature verifies");
  }
}

for (const v of [...main.vectors, ...more.vectors]) {
  if (v.tx_hex) {
    test(`${v.name}: Tx encoding`, () => assert.equal(hex(tp.encodeTx(v.json)), v.tx_hex));
  } else {
    test(`${v.name}: encoding, signing bytes, hash, signature`, () => checkVector(v));
  }
}

test("the main vectors include the required kinds", () => {
  for (const n of ["session_open", "session_id", "manifest", "step_register", "step_scan", "receipt", "session_close", "batch_body_close"]) {
    assert.ok(byName[n], `vector ${n} is missing`);
  }
});

test("the extra vectors cover every action kind and admin op", () => {
  const kinds = new Set([...main.vectors, ...more.vectors].filter((v) => v.domain === "tandem/v1/step").map((v) => v.json.action.kind));
  assert.deepEqual([...kinds].sort(), [...tp.ACTION_KINDS].sort());
  const ops = new Set(more.vectors.filter((v) => v.domain === "tandem/v1/admin").map((v) => v.json.op.kind));
  assert.deepEqual([...ops].sort(), [...tp.ADMIN_OPS].sort());
});

test("derived ids link up: session id, step hash, outcome hash", async () => {
  const sid = await tp.sessionId(byName.session_open.json);
  assert.equal(sid, byName.session_id.sha256_hex);
  assert.equal(byName.step_scan.json.session, sid);
  const sh = await tp.stepHash(byName.step_scan.json);
  assert.equal(sh, byName.step_scan.sha256_hex);
  assert.equal(byName.outcome.json.step, sh);
  assert.equal(byName.receipt.json.step, sh);
  assert.equal(await tp.outcomeHash(byName.outcome.json), byName.receipt.json.outcome);
});

test("the domain tags are exactly the vectors' tags", () => {
  const used = new Set(main.vectors.filter((v) => v.domain).map((v) => v.domain));
  for (const d of used) assert.ok(Object.values(tp.DOMAINS).includes(d), d);
  assert.equal(Object.keys(tp.DOMAINS).length, 10);
});

test("signSessionClose gives the session_close vector, linked to the session and the closing batch", async () => {
  const v = byName.session_close;
  assert.equal(v.json.session, byName.session_id.sha256_hex);
  assert.equal(v.json.owner, byName.session_open.json.owner);
  const signed = await tp.signSessionClose(v.signer_seed_hex, v.json);
  assert.deepEqual(signed, { close: v.json, signature: v.signature_hex });
  assert.deepEqual(byName.batch_body_close.json.close, signed);
  assert.deepEqual(byName.batch_body_close.json.steps, []);
  assert.equal(byName.batch_body.json.close, null);
  // A close signed by anyone but the owner does not verify under the owner's key.
  const other = await tp.signSessionClose(byName.manifest.signer_seed_hex, v.json);
  const bytes = tp.signingBytes(tp.DOMAINS.sessionClose, tp.encodeSessionClose(v.json));
  assert.equal(await tp.verifyHex(v.json.owner, other.signature, bytes), false);
  assert.ok(await tp.verifyHex(v.json.owner, signed.signature, bytes));
  // The step domain over the same bytes is another message.
  assert.equal(await tp.verifyHex(v.json.owner, signed.signature, tp.signingBytes(tp.DOMAINS.step, tp.encodeSessionClose(v.json))), false);
});

// ---------------------------------------------------------------- negative checks

const scan = byName.step_scan;

test("a flipped byte in the message fails verification", async () => {
  const bytes = tp.hexToBytes(scan.signing_bytes_hex);
  for (const at of [0, 20, bytes.length - 1]) {
    const bad = bytes.slice();
    bad[at] ^= 0x01;
    assert.equal(await tp.verifyHex(scan.signer_public_key_hex, scan.signature_hex, bad), false, `byte ${at}`);
  }
});

test("a flipped bit in the signature or key fails verification", async () => {
  const bytes = tp.hexToBytes(scan.signing_bytes_hex);
  const sig = tp.hexToBytes(scan.signature_hex);
  sig[5] ^= 0x80;
  assert.equal(await tp.verifyHex(scan.signer_public_key_hex, hex(sig), bytes), false);
  // Another signer's key.
  assert.equal(await tp.verifyHex(byName.manifest.signer_public_key_hex, scan.signature_hex, bytes), false);
});

test("a wrong domain changes the signing bytes, and the signature no longer verifies", async () => {
  const borsh = tp.hexToBytes(scan.borsh_hex);
  const wrong = tp.signingBytes(tp.DOMAINS.batch, borsh);
  assert.notEqual(hex(wrong), scan.signing_bytes_hex);
  assert.equal(await tp.verifyHex(scan.signer_public_key_hex, scan.signature_hex, wrong), false);
  // session-open and session-id domains differ on the same message.
  assert.notEqual(byName.session_open.sha256_hex, byName.session_id.sha256_hex);
  assert.throws(() => tp.signingBytes("tandem/v1/nope", borsh));
});

test("a malleated signature (s + L) is refused", async () => {
  const bytes = tp.hexToBytes(scan.signing_bytes_hex);
  const sig = tp.hexToBytes(scan.signature_hex);
  const L = tp.hexToBytes("edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010");
  let carry = 0;
  for (let i = 0; i < 32; i++) {
    const v = sig[32 + i] + L[i] + carry;
    sig[32 + i] = v & 0xff;
    carry = v >> 8;
  }
  assert.equal(await tp.verifyHex(scan.signer_public_key_hex, hex(sig), bytes), false);
});

test("a small-order public key is refused", async () => {
  const identity = "01" + "00".repeat(31);
  assert.equal(await tp.verifyHex(identity, "00".repeat(64), new Uint8Array([1])), false);
  assert.equal(await tp.verifyHex(identity, "01" + "00".repeat(63), tp.hexToBytes(scan.signing_bytes_hex)), false);
});

test("malformed input is refused", async () => {
  assert.equal(await tp.verifyHex("zz", scan.signature_hex, new Uint8Array()), false);
  assert.throws(() => tp.encodeStep({ ...scan.json, actor: "abcd" }), /32 bytes/);
  assert.throws(() => tp.encodeStep({ ...scan.json, action: { kind: "teleport" } }), /unknown action kind/);
  assert.throws(() => tp.encodeStep({ ...scan.json, seq: -1 }), /u64/);
  assert.throws(() => tp.encodeStep({ ...scan.json, seq: 2 ** 53 }), /unsafe integer/);
  assert.throws(() => tp.encodeManifest({ ...byName.manifest.json, lines: [{ item_id: "x", description: "", quantity: 2 ** 32 }] }), /u32/);
});

test("u64 accepts Number, BigInt and decimal string alike", () => {
  const a = tp.encodeStep({ ...scan.json, seq: 1 });
  const b = tp.encodeStep({ ...scan.json, seq: 1n });
  const c = tp.encodeStep({ ...scan.json, seq: "1" });
  assert.equal(hex(a), scan.borsh_hex);
  assert.equal(hex(b), scan.borsh_hex);
  assert.equal(hex(c), scan.borsh_hex);
});
