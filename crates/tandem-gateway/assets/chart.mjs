// chart.mjs (dashboard): the live latency chart, drawn by hand in SVG.
// Two series over wall-clock time on a logarithmic millisecond axis:
//   "l2": how long a step took to be answered by the gateway (measured in the
//         browser for the console's own steps);
//   "l1": how long a step took to become final on L1 (from the gateway's
//         session view: finality.seen_ms - accepted_ms).

const SVG = "http://www.w3.org/2000/svg";
const KEEP = 200; // points kept per series
const W = 560;
const H = 220;
const PAD = { left: 52, right: 12, top: 12, bottom: 28 };

function el(name, attrs = {}, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

export function formatMs(ms) {
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}

function median(xs) {
  if (xs.length === 0) return null;
  const s = xs.slice().sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export class LatencyChart {
  /** @param {HTMLElement} host where the SVG goes; @param {HTMLElement} legend where the medians go */
  constructor(host, legend) {
    this.host = host;
    this.legend = legend;
    this.series = { l2: [], l1: [] };
    this.seen = new Set();
    this.svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "latency chart", class: "chart" });
    host.replaceChildren(this.svg);
    this.render();
  }

  /** Add one observation; `key` (optional) makes repeated reports of the same step count once. */
  add(series, atMs, latencyMs, key) {
    if (!(series in this.series) || !Number.isFinite(latencyMs) || latencyMs < 0) return;
    if (key !== undefined) {
      const k = `${series}:${key}`;
      if (this.seen.has(k)) return;
      this.seen.add(k);
    }
    const s = this.series[series];
    s.push({ t: atMs, v: Math.max(latencyMs, 0.1) });
    s.sort((a, b) => a.t - b.t);
    if (s.length > KEEP) s.splice(0, s.length - KEEP);
    this.render();
  }

  count(series) {
    return this.series[series].length;
  }

  render() {
    const all = [...this.series.l2, ...this.series.l1];
    const svg = this.svg;
    svg.replaceChildren();
    const x0 = PAD.left;
    const x1 = W - PAD.right;
    const y0 = H - PAD.bottom;
    const y1 = PAD.top;
    // Y: decades from 1 ms to at least 10 s.
    const maxV = Math.max(10_000, ...all.map((p) => p.v));
    const minV = Math.min(1, ...all.map((p) => p.v));
    const lo = Math.floor(Math.log10(minV));
    const hi = Math.ceil(Math.log10(maxV));
    const y = (v) => y0 - ((Math.log10(v) - lo) / (hi - lo)) * (y0 - y1);
    // X: the span of the points (at least 15 s), with a little room each side.
    const last = all.length ? Math.max(...all.map((p) => p.t)) : Date.now();
    const first = all.length ? Math.min(last - 15_000, ...all.map((p) => p.t)) : last - 60_000;
    const room = (last - first) * 0.04;
    const tMin = first - room;
    const tMax = last + room;
    const x = (t) => x0 + ((t - tMin) / Math.max(1, tMax - tMin)) * (x1 - x0);

    for (let d = lo; d <= hi; d++) {
      const v = 10 ** d;
      svg.append(el("line", { x1: x0, x2: x1, y1: y(v), y2: y(v), class: "grid" }));
      svg.append(el("text", { x: x0 - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, formatMs(v)));
    }
    svg.append(el("line", { x1: x0, x2: x0, y1: y0, y2: y1, class: "axis" }));
    svg.append(el("line", { x1: x0, x2: x1, y1: y0, y2: y0, class: "axis" }));
    const fmtT = (t) => new Date(t).toLocaleTimeString([], { hour12: false });
    svg.append(el("text", { x: x0, y: H - 8, class: "tick" }, fmtT(tMin)));
    svg.append(el("text", { x: x1, y: H - 8, "text-anchor": "end", class: "tick" }, fmtT(tMax)));

    if (all.length === 0) {
      svg.append(el("text", { x: (x0 + x1) / 2, y: (y0 + y1) / 2, "text-anchor": "middle", class: "empty" },
        "no steps yet: perform one in the operator console"));
    }
    for (const name of ["l1", "l2"]) {
      const pts = this.series[name];
      if (pts.length > 1) {
        svg.append(el("polyline", { points: pts.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(" "), class: `line ${name}` }));
      }
      for (const p of pts) {
        const c = el("circle", { cx: x(p.t).toFixed(1), cy: y(p.v).toFixed(1), r: 3, class: `dot ${name}` });
        c.append(el("title", {}, `${name === "l2" ? "L2 answer" : "L1 finality"}: ${formatMs(p.v)}`));
        svg.append(c);
      }
    }
    if (this.legend) {
      const m2 = median(this.series.l2.map((p) => p.v));
      const m1 = median(this.series.l1.map((p) => p.v));
      this.legend.replaceChildren();
      const item = (cls, label, m, n) => {
        const span = document.createElement("span");
        span.className = `legend-item ${cls}`;
        span.textContent = `${label}: ${m === null ? "—" : `median ${formatMs(m)}`} (${n})`;
        return span;
      };
      this.legend.append(
        item("l2", "L2 step answered", m2, this.series.l2.length),
        item("l1", "L1 step final", m1, this.series.l1.length),
      );
    }
  }
}
