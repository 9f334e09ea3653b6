/**
 * The network page (`/network`): one self-contained document — no script or style from anywhere else — that
 * watches `/network/events` and draws the network as this gateway sees it: the peers and their links, each
 * node's load over time, which node hosts which server, the allocation epoch and whether the nodes agree on it,
 * and a log of failovers, refusals and placements. It carries no data itself: the stream is behind the API's
 * auth, so the page asks for a key when the stream answers 401 and keeps it for the tab only.
 */
export const NETWORK_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>MCP Nexus — network</title>
<style>
  :root { --bg: #0f1419; --panel: #182029; --text: #d8dee6; --muted: #8593a3; --accent: #4fb3ff; --ok: #3fcf8e; --bad: #ff6b6b; --warn: #f5b642; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--text); }
  header { display: flex; align-items: center; gap: 12px; padding: 12px 20px; border-bottom: 1px solid #25303b; }
  header h1 { font-size: 17px; margin: 0; font-weight: 600; }
  #status { width: 10px; height: 10px; border-radius: 50%; background: var(--bad); }
  #status.live { background: var(--ok); }
  #statusText, .muted { color: var(--muted); }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; padding: 16px 20px; }
  section { background: var(--panel); border-radius: 8px; padding: 12px 14px; min-width: 0; }
  section h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); margin: 0 0 10px; }
  .cards { display: flex; gap: 16px; flex-wrap: wrap; }
  .card b { display: block; font-size: 24px; font-weight: 600; }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid #25303b; white-space: nowrap; }
  td.servers { white-space: normal; }
  th { color: var(--muted); font-weight: 500; }
  .yes { color: var(--ok); } .no { color: var(--bad); } .draining { color: var(--warn); }
  svg text { font-size: 11px; }
  svg text:not([fill]) { fill: var(--text); }
  #events { list-style: none; margin: 0; padding: 0; max-height: 260px; overflow: auto; font-size: 13px; }
  #events li { padding: 3px 0; border-bottom: 1px solid #25303b; }
  #events .failover, #events .node-left, #events .refused { color: var(--warn); }
  #login { display: none; gap: 8px; }
  #login.shown { display: flex; }
  input, button { background: #0b1015; color: var(--text); border: 1px solid #334150; border-radius: 4px; padding: 4px 8px; }
  .wide { grid-column: 1 / -1; }
</style>
</head>
<body>
<header>
  <span id="status"></span><h1>MCP Nexus — network</h1><span id="statusText">connecting…</span>
  <form id="login"><input id="token" type="password" placeholder="API key (Bearer)" autocomplete="off"><button>Watch</button></form>
</header>
<main>
  <section class="wide"><h2>Summary</h2><div class="cards">
    <div class="card"><span class="muted">nodes</span><b id="nodeCount">–</b></div>
    <div class="card"><span class="muted">servers</span><b id="serverCount">–</b></div>
    <div class="card"><span class="muted">sessions on nodes</span><b id="sessionCount">–</b></div>
    <div class="card"><span class="muted">gateway sessions</span><b id="gatewaySessions">–</b></div>
    <div class="card"><span class="muted">allocation epoch</span><b id="epoch">–</b><span id="agree" class="muted"></span></div>
  </div></section>
  <section><h2>Peers and links</h2><svg id="graph" viewBox="0 0 420 300" width="100%"></svg></section>
  <section><h2>Nodes</h2><table><thead><tr><th>node</th><th>sessions</th><th>CPU</th><th>memory</th><th>in flight</th><th>servers</th></tr></thead><tbody id="nodes"></tbody></table></section>
  <section><h2>Sessions per node</h2><svg id="sessionsPlot" viewBox="0 0 420 160" width="100%"></svg></section>
  <section><h2>CPU per node</h2><svg id="cpuPlot" viewBox="0 0 420 160" width="100%"></svg></section>
  <section><h2>Memory per node</h2><svg id="memoryPlot" viewBox="0 0 420 160" width="100%"></svg></section>
  <section><h2>Who hosts what</h2><table id="hosting"></table></section>
  <section class="wide"><h2>What happened</h2><ul id="events"></ul></section>
</main>
<script>
"use strict";
var HISTORY = 120;
var COLORS = ["#4fb3ff", "#3fcf8e", "#f5b642", "#ff6b6b", "#b18cff", "#ff9f5a", "#5ad1d1", "#e87ac8"];
var past = [];
var svgNs = "http://www.w3.org/2000/svg";
function short(id) { return "…" + id.slice(-8); }
function el(name, attrs, text) {
  var node = document.createElementNS(svgNs, name);
  for (var key in attrs) node.setAttribute(key, attrs[key]);
  if (text !== undefined) node.textContent = text;
  return node;
}
function cell(row, text, cls) { var td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td; }
function pct(x) { return Math.round(x * 100) + "%"; }
function colorOf(ids, id) { return COLORS[ids.indexOf(id) % COLORS.length]; }

function drawGraph(s) {
  var svg = document.getElementById("graph");
  svg.replaceChildren();
  var peers = [{ id: s.gateway.peerId, gateway: true, links: s.gateway.links }].concat(s.nodes.map(function (n) { return { id: n.peerId, links: n.links, node: n }; }));
  var at = {};
  peers.forEach(function (p, i) {
    var angle = (2 * Math.PI * i) / peers.length - Math.PI / 2;
    at[p.id] = { x: 210 + 115 * Math.cos(angle), y: 150 + 110 * Math.sin(angle) };
  });
  var drawn = {};
  peers.forEach(function (p) {
    p.links.forEach(function (other) {
      if (!at[other]) return;
      var key = [p.id, other].sort().join("|");
      if (drawn[key]) return;
      drawn[key] = true;
      svg.appendChild(el("line", { x1: at[p.id].x, y1: at[p.id].y, x2: at[other].x, y2: at[other].y, stroke: "#3a4a5a", "stroke-width": 1.5, "data-link": key }));
    });
  });
  peers.forEach(function (p) {
    var g = el("g", { "data-peer": p.id });
    var fill = p.gateway ? "#4fb3ff" : p.node.draining ? "#f5b642" : "#3fcf8e";
    g.appendChild(el("circle", { cx: at[p.id].x, cy: at[p.id].y, r: p.gateway ? 14 : 10 + Math.min(10, p.node.load.sessions), fill: fill, opacity: 0.9 }));
    g.appendChild(el("text", { x: at[p.id].x, y: at[p.id].y + 28, "text-anchor": "middle" }, (p.gateway ? "gateway " : "") + short(p.id)));
    svg.appendChild(g);
  });
}

function drawPlot(id, pick, max, unit) {
  var svg = document.getElementById(id);
  svg.replaceChildren();
  var ids = [];
  past.forEach(function (s) { s.nodes.forEach(function (n) { if (ids.indexOf(n.peerId) < 0) ids.push(n.peerId); }); });
  ids.sort();
  var top = max;
  if (top === undefined) { top = 1; past.forEach(function (s) { s.nodes.forEach(function (n) { top = Math.max(top, pick(n)); }); }); }
  var w = 380, h = 130, x0 = 34;
  svg.appendChild(el("line", { x1: x0, y1: 10, x2: x0, y2: 10 + h, stroke: "#3a4a5a" }));
  svg.appendChild(el("line", { x1: x0, y1: 10 + h, x2: x0 + w, y2: 10 + h, stroke: "#3a4a5a" }));
  svg.appendChild(el("text", { x: x0 - 4, y: 18, "text-anchor": "end" }, unit === "%" ? "100%" : String(top)));
  svg.appendChild(el("text", { x: x0 - 4, y: 10 + h, "text-anchor": "end" }, "0"));
  ids.forEach(function (peer) {
    var points = [];
    past.forEach(function (s, i) {
      var n = s.nodes.find(function (m) { return m.peerId === peer; });
      if (!n) return;
      var x = x0 + (w * i) / Math.max(1, HISTORY - 1);
      var y = 10 + h - (h * Math.min(top, pick(n))) / top;
      points.push(x.toFixed(1) + "," + y.toFixed(1));
    });
    if (points.length > 0) svg.appendChild(el("polyline", { points: points.join(" "), fill: "none", stroke: colorOf(ids, peer), "stroke-width": 2, "data-node": peer }));
  });
  ids.forEach(function (peer, i) {
    svg.appendChild(el("text", { x: x0 + w, y: 20 + 13 * i, "text-anchor": "end", fill: colorOf(ids, peer) }, short(peer)));
  });
}

function render(s) {
  past.push(s);
  if (past.length > HISTORY) past.shift();
  var sessions = 0;
  s.nodes.forEach(function (n) { sessions += n.load.sessions; });
  document.getElementById("nodeCount").textContent = s.nodes.length;
  document.getElementById("serverCount").textContent = s.servers.length;
  document.getElementById("sessionCount").textContent = sessions;
  document.getElementById("gatewaySessions").textContent = s.gateway.sessions;
  document.getElementById("epoch").textContent = s.allocation ? s.allocation.epoch : "–";
  var agree = document.getElementById("agree");
  agree.textContent = !s.allocation ? "no allocation" : s.allocation.agree ? "every node agrees" : s.allocation.hashes + " different assignments";
  agree.className = !s.allocation ? "muted" : s.allocation.agree ? "yes" : "no";
  var body = document.getElementById("nodes");
  body.replaceChildren();
  s.nodes.forEach(function (n) {
    var row = body.insertRow();
    row.dataset.node = n.peerId;
    cell(row, short(n.peerId) + (n.draining ? " (draining)" : ""), n.draining ? "draining" : "");
    cell(row, n.load.sessions + " / " + n.load.capacity);
    cell(row, pct(n.load.cpu));
    cell(row, pct(n.load.memory));
    cell(row, n.load.inFlight);
    cell(row, n.servers.map(function (x) { return x.id; }).join(", "), "servers");
  });
  var hosting = document.getElementById("hosting");
  hosting.replaceChildren();
  var head = hosting.createTHead().insertRow();
  cell(head, "server");
  s.nodes.forEach(function (n) { cell(head, short(n.peerId)); });
  var rows = hosting.createTBody();
  s.servers.forEach(function (server) {
    var row = rows.insertRow();
    row.dataset.server = server.id;
    row.dataset.hosts = server.hosts.join(" ");
    cell(row, server.id);
    s.nodes.forEach(function (n) {
      var hosts = server.hosts.indexOf(n.peerId) >= 0;
      cell(row, hosts ? "●" : "·", hosts ? "yes" : "muted");
    });
  });
  var events = document.getElementById("events");
  events.replaceChildren();
  s.events.slice().reverse().forEach(function (e) {
    var li = document.createElement("li");
    li.className = e.kind;
    li.dataset.kind = e.kind;
    li.textContent = new Date(e.at).toLocaleTimeString() + "  " + e.text;
    events.appendChild(li);
  });
  drawGraph(s);
  drawPlot("sessionsPlot", function (n) { return n.load.sessions; });
  drawPlot("cpuPlot", function (n) { return n.load.cpu; }, 1, "%");
  drawPlot("memoryPlot", function (n) { return n.load.memory; }, 1, "%");
  document.body.dataset.snapshots = String(Number(document.body.dataset.snapshots || 0) + 1);
}

function setStatus(live, text) {
  document.getElementById("status").className = live ? "live" : "";
  document.getElementById("statusText").textContent = text;
}

async function watch() {
  var headers = {};
  var token = sessionStorage.getItem("nexus-token");
  if (token) headers.authorization = "Bearer " + token;
  try {
    var response = await fetch("network/events", { headers: headers });
    if (response.status === 401 || response.status === 403) {
      document.getElementById("login").className = "shown";
      setStatus(false, response.status === 401 ? "a key is needed" : "this key may not watch");
      return;
    }
    if (!response.ok) throw new Error("HTTP " + response.status);
    setStatus(true, "live");
    var reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    var buffer = "";
    for (;;) {
      var chunk = await reader.read();
      if (chunk.done) break;
      buffer += chunk.value;
      var end;
      while ((end = buffer.indexOf("\\n\\n")) >= 0) {
        var message = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        var data = message.split("\\n").filter(function (l) { return l.indexOf("data: ") === 0; }).map(function (l) { return l.slice(6); }).join("\\n");
        if (data) render(JSON.parse(data));
      }
    }
    setStatus(false, "disconnected; reconnecting…");
  } catch (err) {
    setStatus(false, "disconnected (" + err.message + "); reconnecting…");
  }
  setTimeout(watch, 1000);
}

document.getElementById("login").addEventListener("submit", function (event) {
  event.preventDefault();
  sessionStorage.setItem("nexus-token", document.getElementById("token").value);
  document.getElementById("login").className = "";
  watch();
});
watch();
</script>
</body>
</html>
`
