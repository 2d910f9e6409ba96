// The monitor's dashboard: charts of the index per entity (uPlot), the latest alerts and items.
// Reads the JSON API of the same server and refreshes itself every REFRESH_MS.
"use strict";
const REFRESH_MS = 5000;
const MAX_CHARTS = 8;
const charts = new Map(); // entity -> {plot, latest}

// A server started with --api-key-file wants "Authorization: Bearer KEY" on the API (this page and its
// files are served without it). The key comes from the form shown on a 401, or from a link ending in
// #key=KEY (a fragment never reaches the server or its logs), and is kept for this tab only.
const KEY_SLOT = "acceltune.monitor.key";
const fromLink = new URLSearchParams(location.hash.slice(1)).get("key");
if (fromLink) {
  sessionStorage.setItem(KEY_SLOT, fromLink);
  history.replaceState(null, "", location.pathname + location.search);  // the key leaves the address bar
}

class Unauthorized extends Error {}

async function getJSON(path) {
  const headers = {"Accept": "application/json"};
  const key = sessionStorage.getItem(KEY_SLOT);
  if (key) headers.Authorization = "Bearer " + key;
  const r = await fetch(path, {headers});
  if (r.status === 401) throw new Unauthorized(key ? "wrong API key" : "this server wants an API key");
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

function askForKey() {
  const form = document.getElementById("key-form");
  form.hidden = false;
  form.onsubmit = (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_SLOT, document.getElementById("key").value.trim());
    form.hidden = true;
    refresh();
  };
}

function el(tag, attrs = {}, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function chartFor(entity, container) {
  let c = charts.get(entity);
  if (c) return c;
  const box = el("div", {"class": "chart", "data-entity": entity});
  const title = el("h3", {}, entity === "*" ? "all items (*)" : entity);
  const latest = el("span", {"class": "latest", "data-entity": entity});
  title.appendChild(latest);
  box.appendChild(title);
  container.appendChild(box);
  const width = Math.max(300, container.clientWidth - 10);
  const plot = new uPlot({
    width, height: 160,
    scales: {y: {range: [-1, 1]}},
    series: [{}, {label: "index", stroke: "#1565c0", width: 2, points: {show: true}},
             {label: "items", stroke: "#999", scale: "n"}],
    axes: [{}, {scale: "y"}, {scale: "n", side: 1, grid: {show: false}}],
  }, [[], [], []], box);
  c = {plot, latest, box};
  charts.set(entity, c);
  return c;
}

async function refreshCharts(windowLabel) {
  const container = document.getElementById("charts");
  const listing = await getJSON(`v1/entities?window=${encodeURIComponent(windowLabel)}&limit=${MAX_CHARTS}`);
  for (const {entity} of listing.entities) {
    const data = await getJSON(`v1/index?entity=${encodeURIComponent(entity)}&window=${encodeURIComponent(windowLabel)}&limit=5000`);
    const pts = data.points;
    const c = chartFor(entity, container);
    c.plot.setData([pts.map(p => p.start_ms / 1000), pts.map(p => p.index), pts.map(p => p.n)]);
    const last = pts[pts.length - 1];
    c.latest.textContent = last ? `index ${last.index.toFixed(3)} over ${last.n} items (${last.start})` : "no data";
  }
  return listing;
}

async function refreshAlerts() {
  const ul = document.getElementById("alerts");
  const data = await getJSON("v1/alerts?limit=20");
  ul.replaceChildren(...(data.alerts.length ? data.alerts.map(a => el("li", {"class": "alert", "data-rule": a.rule}, a.message))
                                               : [el("li", {"class": "empty"}, "none")]));
}

async function refreshItems() {
  const body = document.querySelector("#items tbody");
  const data = await getJSON("v1/items?limit=25");
  body.replaceChildren(...data.items.map(it => {
    const tr = el("tr", {"class": "item"});
    tr.appendChild(el("td", {}, it.timestamp));
    tr.appendChild(el("td", {}, it.entities.join(", ")));
    tr.appendChild(el("td", {"class": it.label}, it.label));
    tr.appendChild(el("td", {}, it.score.toFixed(3)));
    tr.appendChild(el("td", {}, it.sentiment.toFixed(3)));
    tr.appendChild(el("td", {}, it.text));
    return tr;
  }));
}

async function refresh() {
  const select = document.getElementById("window");
  const status = document.getElementById("status");
  try {
    if (!select.options.length) {
      const first = await getJSON("v1/entities?limit=1");
      for (const w of first.windows) select.appendChild(el("option", {value: w}, w));
      select.addEventListener("change", () => { charts.forEach(c => c.box.remove()); charts.clear(); refresh(); });
    }
    await Promise.all([refreshCharts(select.value), refreshAlerts(), refreshItems()]);
    status.textContent = `updated ${new Date().toISOString()}`;
    status.setAttribute("data-state", "ok");
  } catch (e) {
    status.textContent = `error: ${e.message}`;
    status.setAttribute("data-state", e instanceof Unauthorized ? "unauthorized" : "error");
    if (e instanceof Unauthorized) askForKey();
  }
}

async function loop() {
  await refresh();
  setTimeout(loop, REFRESH_MS);
}
loop();
