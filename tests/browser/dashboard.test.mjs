// dashboard.test.mjs (tests/browser): end-to-end test of the gateway's
// dashboard in a real browser. Starts `tandem up` (4 validators and a gateway)
// in a temporary folder, loads the dashboard in Debian's Chromium through
// playwright-core, checks the protocol self-test passes and that the page
// makes no request outside the gateway, performs a whole workflow in the
// operator console (a supplier registers a package; an operator scans,
// validates, checks and labels it), sees each step answered and then final
// on L1, checks the package page, and saves tests/browser/artifacts/dashboard.png.
// `tandem up` is always stopped (SIGTERM, then SIGKILL of its process group).
//
// Environment: TANDEM_BIN (default <repo>/target/debug/tandem),
// CHROMIUM (default /usr/bin/chromium).

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, createWriteStream } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "..", "..");
const BIN = process.env.TANDEM_BIN || join(REPO, "target", "debug", "tandem");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const LISTEN = "127.0.28.100:8080";
const BASE = `http://${LISTEN}`;
const ARTIFACTS = join(HERE, "artifacts");
const STEP_TIMEOUT = 30_000;
const FINAL_TIMEOUT = 90_000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function upArgs(dir) {
  const args = ["up", "--dir", dir, "--listen", LISTEN];
  // Another engineer is adding --base-ip; use it when this binary has it, so
  // the validators stay off the default 127.0.0.x addresses.
  const help = execFileSync(BIN, ["up", "--help"], { encoding: "utf8" });
  if (help.includes("--base-ip")) args.push("--base-ip", "127.0.28.1");
  return args;
}

async function waitForHealth(proc, deadlineMs) {
  const until = Date.now() + deadlineMs;
  while (Date.now() < until) {
    if (proc.exitCode !== null) throw new Error(`tandem up exited with ${proc.exitCode} before the gateway was healthy`);
    try {
      const r = await fetch(`${BASE}/healthz`);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await sleep(250);
  }
  throw new Error(`the gateway at ${BASE} was not healthy within ${deadlineMs} ms`);
}

async function stop(proc) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGTERM");
  const clean = await Promise.race([exited.then(() => true), sleep(20_000).then(() => false)]);
  if (!clean) {
    try {
      process.kill(-proc.pid, "SIGKILL"); // the whole group: validators too
    } catch {
      proc.kill("SIGKILL");
    }
    await Promise.race([exited, sleep(5_000)]);
  }
}

/** Demo keys for the console: the gateway's /v1/demo/keys, or the key files of the devnet. */
async function demoKeysServed() {
  const r = await fetch(`${BASE}/v1/demo/keys`);
  if (r.status === 404) return false;
  assert.equal(r.status, 200, "GET /v1/demo/keys");
  const doc = await r.json();
  assert.ok(doc.keys.length > 0, "demo keys listed");
  assert.ok(doc.keys.every((k) => !["admin", "gateway"].includes(k.role)), "no admin or gateway key is served");
  return true;
}

function keyFiles(dir) {
  const keysDir = join(dir, "keys");
  return readdirSync(keysDir)
    .filter((f) => f.endsWith(".json"))
    .map((f) => JSON.parse(readFileSync(join(keysDir, f), "utf8")))
    .filter((k) => ["supplier", "operator", "inspector", "courier"].includes(k.role));
}

async function openSession(page, identity) {
  await page.selectOption("#key-select", { label: identity });
  await page.click("#open-session");
  const link = page.locator("#session-id");
  await link.waitFor({ timeout: STEP_TIMEOUT });
  return link.getAttribute("data-session");
}

async function sendStep(page, session, seq, action) {
  await page.selectOption("#action-select", action);
  await page.click("#send-step");
  const entry = page.locator(`#console-log li[data-kind="step"][data-session="${session}"][data-seq="${seq}"]`);
  await entry.waitFor({ timeout: STEP_TIMEOUT }).catch(async (e) => {
    const log = await page.locator("#console-log").innerText();
    throw new Error(`step ${seq} (${action}) was not answered: ${e.message}\nconsole log:\n${log}`);
  });
  const text = await entry.innerText();
  assert.match(text, /answered in [0-9.]+ ms/, `step ${seq} shows its answer time`);
  assert.match(text, /tentative/, `step ${seq} is tentative until L1 finalizes it`);
  return entry;
}

async function waitFinal(page, session, seq) {
  const f = page.locator(`#console-log li[data-session="${session}"][data-seq="${seq}"] .finality[data-state="final"]`);
  await f.waitFor({ timeout: FINAL_TIMEOUT });
  const text = await f.innerText();
  const m = text.match(/L1 #(\d+)/);
  assert.ok(m, `finality shows an L1 height: ${text}`);
  return Number(m[1]);
}

test("dashboard: self-test, whole workflow from the console, finality on L1", { timeout: 300_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "tandem-browser-"));
  mkdirSync(ARTIFACTS, { recursive: true });
  const logPath = join(ARTIFACTS, "tandem-up.log");
  const log = createWriteStream(logPath);
  let proc = null;
  let browser = null;
  try {
    proc = spawn(BIN, upArgs(dir), { cwd: REPO, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    proc.stdout.pipe(log);
    proc.stderr.pipe(log);
    await waitForHealth(proc, 180_000);

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
    const foreign = [];
    const problems = [];
    page.on("request", (req) => {
      const url = req.url();
      if (!url.startsWith(`${BASE}/`) && !url.startsWith("data:")) foreign.push(url);
    });
    page.on("console", (msg) => {
      if (msg.type() === "error" && !/Failed to load resource.*404/.test(msg.text())) problems.push(msg.text());
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));

    await page.goto(`${BASE}/`);
    await page.waitForSelector("body[data-ready='true']", { timeout: STEP_TIMEOUT });

    await t.test("protocol self-test passes in the browser", async () => {
      const badge = page.locator("#selftest");
      await page.waitForSelector("#selftest[data-status='pass'], #selftest[data-status='fail']", { timeout: STEP_TIMEOUT });
      assert.equal(await badge.getAttribute("data-status"), "pass", await badge.innerText());
    });

    await t.test("the console has identities (served, or imported from the key files)", async () => {
      if (!(await demoKeysServed())) {
        // The gateway was started without demo_keys: import the key files as a user would.
        await page.click("#import-details summary");
        await page.fill("#key-import", JSON.stringify(keyFiles(dir)));
        await page.click("#import-keys");
      }
      await page.waitForSelector("#key-select option[value]:not([value=''])", { state: "attached", timeout: STEP_TIMEOUT });
      const labels = await page.locator("#key-select option").allInnerTexts();
      assert.ok(labels.includes("supplier-1 (supplier)") && labels.includes("operator-1 (operator)"), labels.join(", "));
    });

    const pkg = `PKG-BT${Date.now().toString(36).toUpperCase()}`;
    let supplierSession;
    let operatorSession;

    await t.test("a supplier registers a package and commits", async () => {
      supplierSession = await openSession(page, "supplier-1 (supplier)");
      await page.fill("#package-id", pkg);
      await sendStep(page, supplierSession, 1, "register");
      await page.click("#commit-session");
      await page.locator(`#console-log li[data-kind="commit"][data-session="${supplierSession}"]`).waitFor({ timeout: STEP_TIMEOUT });
    });

    await t.test("an operator scans, validates, checks and labels it, and commits", async () => {
      operatorSession = await openSession(page, "operator-1 (operator)");
      await page.fill("#package-id", pkg);
      let seq = 0;
      for (const action of ["scan", "validate", "qc", "label"]) await sendStep(page, operatorSession, ++seq, action);
      await page.click("#commit-session");
      await page.locator(`#console-log li[data-kind="commit"][data-session="${operatorSession}"]`).waitFor({ timeout: STEP_TIMEOUT });
    });

    await t.test("both sessions are finalized on L1, and the board shows it", async () => {
      const h1 = await waitFinal(page, supplierSession, 1);
      const h2 = await waitFinal(page, operatorSession, 4);
      assert.ok(h2 >= h1, `the operator's batch (L1 #${h2}) is not before the supplier's (L1 #${h1})`);
      await page.locator(`#board .stage-col[data-stage="labeled"] .pkg[data-package="${pkg}"][data-state="final"]`).waitFor({ timeout: STEP_TIMEOUT });
      const row = page.locator(`#sessions .session[data-session="${operatorSession}"] tr[data-seq="4"][data-state="final"] .l1-height`);
      await row.waitFor({ timeout: STEP_TIMEOUT });
      assert.equal(await row.innerText(), `#${h2}`);
      await page.locator(`#sessions .session[data-session="${operatorSession}"][data-status="finalized"]`).waitFor({ timeout: STEP_TIMEOUT });
    });

    await t.test("the chart and the network panel have data", async () => {
      await page.waitForFunction(() => document.querySelectorAll("#chart circle.l2").length >= 5 && document.querySelectorAll("#chart circle.l1").length >= 5, null, { timeout: STEP_TIMEOUT });
      await page.waitForSelector("#network-summary[data-agree='true']", { timeout: STEP_TIMEOUT });
      const up = await page.locator("#network tr[data-reachable='true']").count();
      assert.equal(up, 4, "four validators up");
    });

    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(ARTIFACTS, "dashboard.png"), fullPage: true });

    await t.test("the package page shows the full provenance, final on L1", async () => {
      await page.goto(`${BASE}/#/package/${pkg}`);
      const rows = page.locator("#provenance tbody tr");
      await page.waitForFunction(() => document.querySelectorAll("#provenance tbody tr").length === 5, null, { timeout: STEP_TIMEOUT });
      assert.equal(await rows.count(), 5);
      assert.equal(await page.locator("#provenance tbody tr[data-state='final']").count(), 5);
      const text = await page.locator("#provenance").innerText();
      for (const a of ["register", "scan", "validate", "qc", "label"]) assert.ok(text.includes(a), `provenance lists ${a}`);
      assert.ok(text.includes("supplier-1") && text.includes("operator-1"), "provenance names the actors");
      await page.screenshot({ path: join(ARTIFACTS, "package.png"), fullPage: true });
    });

    await t.test("no request left the gateway, no error on the page", () => {
      assert.deepEqual(foreign, [], "requests outside the gateway");
      assert.deepEqual(problems, [], "console errors");
    });

    await t.test("dashboard responses carry a CSP that keeps the page on its origin", async () => {
      const r = await fetch(`${BASE}/`);
      const csp = r.headers.get("content-security-policy") || "";
      assert.match(csp, /default-src 'none'/);
      assert.match(csp, /script-src 'self'/);
      assert.match(csp, /connect-src 'self'/);
      const js = await fetch(`${BASE}/assets/tandem-protocol.mjs`);
      assert.match(js.headers.get("content-type"), /^text\/javascript/);
      assert.equal((await fetch(`${BASE}/assets/nope.js`)).status, 404);
    });
  } finally {
    if (browser) await browser.close().catch(() => {});
    await stop(proc);
    log.end();
    rmSync(dir, { recursive: true, force: true });
  }
});
