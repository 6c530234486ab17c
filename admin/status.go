package admin

import "net/http"

// statusPage is the admin endpoint's "/": one self-contained page (inline
// CSS and script, nothing fetched but this endpoint's own /metrics and
// /upstreams) in the spirit of HAProxy's stats page. Every RefreshMS it
// reads both and redraws: listeners (address, open sessions, sessions/s,
// bytes/s, refusals/s), upstreams (state, sessions, connects, limit,
// failures) and close reasons with their rates. Rates are the difference of
// two scrapes of the counters over the time between them, so the page
// needs nothing but what Prometheus reads. The tables scroll sideways on a
// phone. Element ids (#listeners, #upstreams, #reasons, #updated) and
// classes (tr.listener, tr.upstream, td.state) are stable for tests.
const statusPage = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>relayd status</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:10px;color:#222}
h1{font-size:19px;margin:6px 0}h2{font-size:15px;margin:18px 0 4px}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-variant-numeric:tabular-nums;min-width:100%}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;white-space:nowrap}th:first-child,td:first-child,td.addr{text-align:left}
thead th{background:#e8ecf7}td.state{font-weight:600;text-align:center}
.up{background:#c8f0c8}.down{background:#f6c3c3}.draining{background:#ffe6a8}.disabled{background:#d5d5d5}
#meta{color:#555}#error{color:#b00}
</style></head><body>
<h1>relayd</h1>
<div id="meta">loading…</div><div id="error"></div>
<h2>Listeners</h2><div class="scroll"><table id="listeners"><thead><tr><th>listener</th><th>address</th><th>open</th><th>sessions/s</th><th>bytes/s</th><th>refused/s</th><th>accepted</th></tr></thead><tbody></tbody></table></div>
<h2>Upstreams</h2><div class="scroll"><table id="upstreams"><thead><tr><th>listener</th><th>upstream</th><th>state</th><th>sessions</th><th>connecting</th><th>queued</th><th>limit</th><th>connected</th><th>failures</th></tr></thead><tbody></tbody></table></div>
<h2>Close reasons</h2><div class="scroll"><table id="reasons"><thead><tr><th>reason</th><th>total</th><th>per s</th></tr></thead><tbody></tbody></table></div>
<p id="updated"></p>
<script>
"use strict";
const REFRESH = 2000;
let prev = null;
function parse(text) {
  const m = new Map();
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const sp = line.lastIndexOf(" ");
    const key = line.slice(0, sp), v = Number(line.slice(sp + 1));
    const b = key.indexOf("{");
    const name = b < 0 ? key : key.slice(0, b);
    const labels = {};
    if (b >= 0) {
      const re = /(\w+)="((?:[^"\\]|\\.)*)"/g;
      let x;
      while ((x = re.exec(key.slice(b))) !== null) labels[x[1]] = x[2];
    }
    if (!m.has(name)) m.set(name, []);
    m.get(name).push({labels, v});
  }
  return m;
}
function sum(m, name, f) {
  let s = 0;
  for (const x of m.get(name) || []) if (!f || f(x.labels)) s += x.v;
  return s;
}
function fmt(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(2) + "G";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return (Math.round(n * 10) / 10).toString();
}
function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
}
function fill(id, rows) {
  const tb = document.querySelector("#" + id + " tbody");
  tb.replaceChildren(...rows);
}
function rate(now, name, f, dt) {
  if (!prev || dt <= 0) return 0;
  return Math.max(0, (sum(now, name, f) - sum(prev.m, name, f)) / dt);
}
async function refresh() {
  try {
    const [mt, ups] = await Promise.all([
      fetch("metrics", {cache: "no-store"}).then(r => { if (!r.ok) throw new Error("/metrics " + r.status); return r.text(); }),
      fetch("upstreams", {cache: "no-store"}).then(r => r.ok ? r.json() : []),
    ]);
    const m = parse(mt), t = Date.now() / 1000;
    const dt = prev ? t - prev.t : 0;
    const ver = (m.get("relayd_build_info") || [{labels: {}}])[0].labels.version || "?";
    const workers = sum(m, "relayd_workers", l => l.state === "up");
    document.getElementById("meta").textContent = "version " + ver + " · " + fmt(sum(m, "relayd_sessions_active")) + " sessions open" +
      (workers ? " · " + workers + " workers up" : "");
    const lrows = [];
    for (const li of m.get("relayd_listener_info") || []) {
      const name = li.labels.listener, is = l => l.listener === name;
      const tr = document.createElement("tr");
      tr.className = "listener";
      tr.dataset.listener = name;
      cell(tr, name);
      cell(tr, li.labels.addr, "addr");
      cell(tr, fmt(sum(m, "relayd_listener_sessions_active", is)));
      cell(tr, fmt(rate(m, "relayd_listener_sessions_accepted_total", is, dt)));
      cell(tr, fmt(rate(m, "relayd_listener_session_bytes_total", is, dt)));
      cell(tr, fmt(rate(m, "relayd_listener_sessions_closed_total", l => is(l) && l.reason.startsWith("rejected_"), dt)));
      cell(tr, fmt(sum(m, "relayd_listener_sessions_accepted_total", is)));
      lrows.push(tr);
    }
    fill("listeners", lrows);
    fill("upstreams", ups.map(u => {
      const tr = document.createElement("tr");
      tr.className = "upstream";
      tr.dataset.listener = u.listener;
      tr.dataset.upstream = u.upstream;
      cell(tr, u.listener);
      cell(tr, u.upstream, "addr");
      cell(tr, u.state, "state " + u.state);
      for (const k of ["sessions_active", "connects_inflight", "connects_queued", "connect_limit", "connected_total"]) cell(tr, fmt(u[k]));
      const f = Object.entries(u.failures_total || {}).filter(e => e[1] > 0).map(e => e[0] + " " + e[1]).join(", ");
      cell(tr, f || "-");
      return tr;
    }));
    const reasons = new Map();
    for (const x of m.get("relayd_sessions_closed_total") || []) reasons.set(x.labels.reason, (reasons.get(x.labels.reason) || 0) + x.v);
    fill("reasons", [...reasons].filter(e => e[1] > 0).sort((a, b) => b[1] - a[1]).map(([r, v]) => {
      const tr = document.createElement("tr");
      cell(tr, r);
      cell(tr, fmt(v));
      cell(tr, fmt(rate(m, "relayd_sessions_closed_total", l => l.reason === r, dt)));
      return tr;
    }));
    prev = {m, t};
    document.getElementById("error").textContent = "";
    document.getElementById("updated").textContent = "updated " + new Date().toISOString();
  } catch (e) {
    document.getElementById("error").textContent = "refresh failed: " + e.message;
  }
}
refresh();
setInterval(refresh, REFRESH);
</script>
</body></html>
`

func serveStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// Nothing but this endpoint: the page's own script and styles.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write([]byte(statusPage))
}
