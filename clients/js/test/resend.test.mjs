// Checks tandem-resend.mjs against a simulated gateway that takes a step and
// then loses its answer (a dropped connection, a 502 from a proxy), answers
// 429 with Retry-After, or refuses a step. The simulated gateway behaves as
// the real one: a byte-identical re-send gets the original answer, another
// step at a taken seq gets 409 bad_sequence. Run: cd clients/js && node --test test/
import { test } from "node:test";
import assert from "node:assert/strict";

import * as P from "../tandem-protocol.mjs";
import { GatewaySession, sendOpen, sendStep } from "../tandem-resend.mjs";

const SEED = "11".repeat(32);
const SESSION = "ab".repeat(32);
const BASE = "http://gateway.test";

const json = (status, body, headers = {}) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } });

/**
 * A gateway holding accepted steps by seq. `faults` is a list consumed one
 * per POST: "drop" (take the step, then fail the connection), "502" (take
 * it, answer 502), "503" (refuse with 503 before taking it), "429".
 */
function fakeGateway(faults = []) {
  const held = new Map();
  const posts = [];
  const fetch = async (url, init) => {
    const path = new URL(url).pathname;
    if (init.method === "GET") {
      const m = path.match(/\/v1\/sessions\/(\w+)\/steps\/(\d+)$/);
      const h = m && held.get(Number(m[2]));
      return h ? json(200, { step: JSON.parse(h.body), receipt: h.receipt, state: "tentative" }) : json(404, { code: "unknown_step", message: "none" });
    }
    posts.push({ path, body: init.body });
    const fault = faults.shift();
    if (fault === "503") return json(503, { code: "backlog_full", message: "busy" });
    if (fault === "429") return json(429, { code: "rate_limited", message: "slow down" }, { "retry-after": "2" });
    if (path === "/v1/sessions") return json(201, { session_id: SESSION, status: { state: "open" } });
    const signed = JSON.parse(init.body);
    const seq = signed.step.seq;
    const prior = held.get(seq);
    let answer;
    if (prior) {
      if (prior.body !== init.body) return json(409, { code: "bad_sequence", message: `seq ${seq} is taken` });
      answer = prior.answer;
    } else {
      const last = Math.max(0, ...held.keys());
      if (seq !== last + 1) return json(409, { code: "bad_sequence", message: `expected ${last + 1}` });
      const receipt = { body: { seq }, signature: `receipt-${seq}` };
      answer = { session: SESSION, seq, outcome_hash: `outcome-${seq}`, receipt };
      held.set(seq, { body: init.body, answer, receipt });
    }
    if (fault === "drop") throw new TypeError("fetch failed: the connection was reset");
    if (fault === "502") return new Response("bad gateway", { status: 502 });
    return json(200, answer);
  };
  return { fetch, held, posts };
}

async function signedStep(seq, pkg) {
  const step = {
    chain_id: "tandem-test",
    session: SESSION,
    seq,
    actor: await P.publicKeyFromSeedHex(SEED),
    package_id: pkg,
    action: { kind: "scan", station: "S1" },
    client_time_ms: 1_700_000_000_000,
  };
  return { step, signature: await P.signHex(SEED, P.signingBytes(P.DOMAINS.step, P.encodeStep(step))) };
}

const noSleep = () => {
  const waits = [];
  return { waits, sleep: async (ms) => void waits.push(ms) };
};

test("a lost answer is recovered by sending the same bytes again", async () => {
  const gw = fakeGateway(["drop", "502"]);
  const { waits, sleep } = noSleep();
  const signed = await signedStep(1, "P");
  const answer = await sendStep(BASE, signed, { fetch: gw.fetch, sleep });
  assert.equal(answer.receipt.signature, "receipt-1");
  assert.equal(gw.posts.length, 3);
  assert.ok(gw.posts.every((p) => p.body === gw.posts[0].body), "every attempt sends the same bytes");
  assert.deepEqual(waits, [100, 200], "backoff doubles");
  assert.equal(gw.held.size, 1, "taken once");
});

test("429 waits Retry-After and 503 is retried; other refusals are thrown at once", async () => {
  const gw = fakeGateway(["429", "503"]);
  const { waits, sleep } = noSleep();
  const answer = await sendStep(BASE, await signedStep(1, "P"), { fetch: gw.fetch, sleep });
  assert.equal(answer.seq, 1);
  assert.deepEqual(waits, [2000, 200]);

  const other = await signedStep(1, "Q");
  await assert.rejects(sendStep(BASE, other, { fetch: gw.fetch, sleep }), (e) => e.status === 409 && e.code === "bad_sequence" && !e.retriable);
});

test("when no attempt is answered the step is read back", async () => {
  const gw = fakeGateway(["drop", "drop"]);
  const { sleep } = noSleep();
  const retry = { attempts: 2, backoffMs: 1, maxBackoffMs: 1 };
  const signed = await signedStep(1, "P");
  const view = await sendStep(BASE, signed, { fetch: gw.fetch, sleep, retry });
  assert.equal(view.recovered, true);
  assert.equal(view.receipt.signature, "receipt-1");

  // Never accepted: the transport error stands, marked retriable.
  const gw2 = fakeGateway(["503", "503"]);
  await assert.rejects(sendStep(BASE, signed, { fetch: gw2.fetch, sleep, retry }), (e) => e.retriable && e.code === "backlog_full");
});

test("a session keeps its seqs: an unanswered step is settled before the next one is signed", async () => {
  // Every attempt at step 1 loses its answer; the gateway took it.
  const gw = fakeGateway(["drop", "drop", "drop"]);
  const { sleep } = noSleep();
  const retry = { attempts: 3, backoffMs: 1, maxBackoffMs: 1 };
  // The read-back fails too (the gateway is unreachable for it).
  let reachable = false;
  const fetch = (url, init) => (init.method === "GET" && !reachable ? Promise.reject(new TypeError("fetch failed")) : gw.fetch(url, init));
  const s = new GatewaySession({ base: BASE, chainId: "tandem-test", sessionId: SESSION, seedHex: SEED, actor: await P.publicKeyFromSeedHex(SEED), fetch, sleep, retry });
  await assert.rejects(s.step("P", { kind: "scan", station: "S1" }), (e) => e.retriable);
  assert.equal(s.nextSeq, 1);
  assert.ok(s.unanswered, "the step whose fate is unknown is kept");

  reachable = true;
  const answer = await s.step("Q", { kind: "scan", station: "S1" });
  assert.equal(answer.seq, 2, "step 1 was settled (the same bytes), then step 2 signed");
  assert.equal(s.nextSeq, 3);
  assert.equal(s.unanswered, null);
  assert.equal(gw.held.get(1).body, gw.posts[0].body);
  assert.ok(gw.posts.every((p) => p.path.endsWith("/steps")));
  assert.ok(!gw.posts.some((p) => JSON.parse(p.body).step.seq === 1 && p.body !== gw.posts[0].body), "seq 1 was never signed again");
});

test("a re-sent open is sent as the same bytes", async () => {
  const gw = fakeGateway(["503"]);
  const { sleep } = noSleep();
  const open = { open: { chain_id: "tandem-test", owner: "00".repeat(32), gateway: null, nonce: 1, client_time_ms: 1 }, signature: "00".repeat(64) };
  const a = await sendOpen(BASE, open, { fetch: gw.fetch, sleep });
  assert.equal(a.session_id, SESSION);
  assert.equal(gw.posts.length, 2);
  assert.equal(gw.posts[0].body, gw.posts[1].body);
});
