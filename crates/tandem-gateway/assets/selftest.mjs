// selftest.mjs (dashboard): checks the browser's protocol implementation
// (/assets/tandem-protocol.mjs over WebCrypto) against docs/protocol-vectors.json,
// served at /assets/protocol-vectors.json. Returns one result per check, so
// the page can show pass/fail and the browser test can read it.

import * as P from "./tandem-protocol.mjs";

// Which encoder each vector's JSON goes through.
const ENCODERS = {
  session_open: P.encodeSessionOpen,
  session_id: P.encodeSessionOpen,
  manifest: P.encodeManifest,
  step_register: P.encodeStep,
  step_scan: P.encodeStep,
  outcome: P.encodeOutcome,
  batch_body: P.encodeBatchBody,
  receipt: P.encodeReceiptBody,
  session_close: P.encodeSessionClose,
  batch_body_close: P.encodeBatchBody,
};

const hex = P.bytesToHex;

/** Run every check; resolves to { pass, total, failed, results: [{ name, check, ok, detail }] }. */
export async function runSelfTest() {
  const results = [];
  const check = (name, what, ok, detail = "") => results.push({ name, check: what, ok: Boolean(ok), detail });
  let doc;
  try {
    const r = await fetch("/assets/protocol-vectors.json", { cache: "no-store" });
    doc = await r.json();
  } catch (e) {
    check("vectors", "load /assets/protocol-vectors.json", false, String(e));
    return summary(results);
  }
  for (const v of doc.vectors) {
    try {
      if (v.tx_hex) {
        check(v.name, "tx encoding", hex(P.encodeTx(v.json)) === v.tx_hex);
        continue;
      }
      const encode = ENCODERS[v.name];
      if (!encode) {
        check(v.name, "known vector", false, "no encoder for this vector");
        continue;
      }
      const borsh = encode(v.json);
      check(v.name, "borsh", hex(borsh) === v.borsh_hex);
      const signing = P.signingBytes(v.domain, borsh);
      check(v.name, "signing bytes", hex(signing) === v.signing_bytes_hex);
      check(v.name, "sha256", (await P.sha256Hex(signing)) === v.sha256_hex);
      if (v.signer_seed_hex) {
        check(v.name, "public key", (await P.publicKeyFromSeedHex(v.signer_seed_hex)) === v.signer_public_key_hex);
        check(v.name, "signature", (await P.signHex(v.signer_seed_hex, signing)) === v.signature_hex);
        check(v.name, "verifies", await P.verifyHex(v.signer_public_key_hex, v.signature_hex, signing));
        const flipped = signing.slice();
        flipped[flipped.length - 1] ^= 1;
        check(v.name, "flipped byte fails", !(await P.verifyHex(v.signer_public_key_hex, v.signature_hex, flipped)));
      }
    } catch (e) {
      check(v.name, "no exception", false, String(e && e.message ? e.message : e));
    }
  }
  return summary(results);
}

function summary(results) {
  const failed = results.filter((r) => !r.ok);
  return { pass: results.length > 0 && failed.length === 0, total: results.length, failed: failed.length, results };
}
