// Sending signed requests to a Tandem gateway so that a lost answer is never
// a lost or doubled step. A gateway answers a byte-identical re-send of a
// step (or an open request) it accepted with the original answer and receipt,
// and refuses a different step at a taken seq (409 `bad_sequence`). So after
// a transport error, a 5xx or a 429, the same bytes are sent again; when
// every attempt fails, the step is read back with
// `GET /v1/sessions/{id}/steps/{seq}`. A session keeps its sequence numbers:
// a seq is never reused for another step while its first step's fate is
// unknown. No dependencies; `fetch` is injectable for tests.
import * as P from "./tandem-protocol.mjs";

/** An error answer of the gateway: HTTP status and stable code. */
export class GatewayError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

/** How hard to try: attempts in all, and the backoff between them (doubling). */
export const DEFAULT_RETRY = Object.freeze({ attempts: 6, backoffMs: 100, maxBackoffMs: 2000 });

const sleepMs = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function errorOf(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    return new GatewayError(response.status, body.code ?? `http_${response.status}`, body.message ?? "");
  } catch {
    return new GatewayError(response.status, `http_${response.status}`, text.slice(0, 200));
  }
}

/**
 * POST `body` (a string, sent byte for byte on every attempt) to `url`.
 * Re-sends on a transport error, a 5xx, or a 429 (after its Retry-After);
 * any other error answer is thrown at once as a GatewayError. Returns the
 * parsed answer. When every attempt failed, throws the last error with
 * `retriable = true`.
 */
export async function postSame(url, body, { fetch = globalThis.fetch, sleep = sleepMs, retry = DEFAULT_RETRY } = {}) {
  let wait = retry.backoffMs;
  let last;
  for (let attempt = 1; attempt <= retry.attempts; attempt++) {
    let pause = wait;
    try {
      const r = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body });
      if (r.ok) return await r.json();
      last = await errorOf(r);
      if (r.status === 429) {
        const after = Number(r.headers.get("retry-after"));
        if (Number.isFinite(after) && after > 0) pause = after * 1000;
      } else if (r.status < 500) {
        throw last;
      }
    } catch (e) {
      if (e instanceof GatewayError && e.status < 500 && e.status !== 429) throw e;
      // A transport error: the request may or may not have been taken.
      last = e;
    }
    if (attempt < retry.attempts) {
      await sleep(pause);
      wait = Math.min(wait * 2, retry.maxBackoffMs);
    }
  }
  last.retriable = true;
  throw last;
}

/**
 * A step this gateway holds, or null (404 `unknown_step`: it was never
 * accepted). Other failures throw.
 */
export async function fetchStep(base, sessionId, seq, { fetch = globalThis.fetch } = {}) {
  const r = await fetch(`${base}/v1/sessions/${sessionId}/steps/${seq}`, { method: "GET" });
  if (r.ok) return await r.json();
  const e = await errorOf(r);
  if (e.code === "unknown_step") return null;
  throw e;
}

/**
 * Send a signed step (`{step, signature}`) until its answer arrives; the
 * same bytes on every attempt. If no attempt got an answer, reads the step
 * back: when the gateway holds exactly this step, returns its view
 * (`{step, outcome, outcome_hash, receipt, state, finality}`, with
 * `recovered: true`); otherwise throws the last error.
 */
export async function sendStep(base, signed, options = {}) {
  const body = JSON.stringify(signed);
  try {
    return await postSame(`${base}/v1/sessions/${signed.step.session}/steps`, body, options);
  } catch (e) {
    if (!e.retriable) throw e;
    let held = null;
    try {
      held = await fetchStep(base, signed.step.session, signed.step.seq, options);
    } catch {
      throw e;
    }
    if (held && held.step && held.step.signature === signed.signature) return { ...held, recovered: true };
    throw e;
  }
}

/** Send a signed open request (`{open, signature}`) until its answer arrives. */
export function sendOpen(base, signedOpen, options = {}) {
  return postSame(`${base}/v1/sessions`, JSON.stringify(signedOpen), options);
}

/**
 * A session at a gateway that signs its steps with `seedHex` and keeps the
 * sequence numbers. A step whose answer never came stays `unanswered`; the
 * next `step()` settles it first (the same bytes again), so a seq is never
 * signed twice with different content.
 */
export class GatewaySession {
  constructor({ base, chainId, sessionId, seedHex, actor, nextSeq = 1, ...options }) {
    Object.assign(this, { base, chainId, sessionId, seedHex, actor, nextSeq, options });
    this.unanswered = null;
  }

  /** Re-send the unanswered step, if any; returns its answer, or null. */
  async settle() {
    const signed = this.unanswered;
    if (!signed) return null;
    try {
      const answer = await sendStep(this.base, signed, this.options);
      this.unanswered = null;
      this.nextSeq = signed.step.seq + 1;
      return answer;
    } catch (e) {
      // An error answer means the gateway did not take it: the seq is free.
      if (!e.retriable) this.unanswered = null;
      throw e;
    }
  }

  /** Sign and send the next step. */
  async step(packageId, action) {
    if (this.unanswered) {
      try {
        await this.settle();
      } catch (e) {
        if (this.unanswered) throw e;
      }
    }
    const step = {
      chain_id: this.chainId,
      session: this.sessionId,
      seq: this.nextSeq,
      actor: this.actor,
      package_id: packageId,
      action,
      client_time_ms: Date.now(),
    };
    const signature = await P.signHex(this.seedHex, P.signingBytes(P.DOMAINS.step, P.encodeStep(step)));
    const signed = { step, signature };
    try {
      const answer = await sendStep(this.base, signed, this.options);
      this.nextSeq = step.seq + 1;
      return answer;
    } catch (e) {
      if (e.retriable) this.unanswered = signed;
      throw e;
    }
  }
}
