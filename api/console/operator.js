// The operator page: readiness and, from /metrics, how far each read model
// and feed is behind and how many events are parked.
import { request } from "./api.js";
import { h, heading } from "./ui.js";

const REFRESH_MS = 5000;

export function operatorPage(main) {
  const ready = h("div", { id: "readiness" }, h("p", { class: "loading" }, "Loading…"));
  const lag = h("div", { id: "lag" }, h("p", { class: "loading" }, "Loading…"));
  const updated = h("p", { class: "muted small" });

  async function load() {
    const [readiness, metrics] = await Promise.allSettled([
      request("GET", "/readyz", { anonymous: true }),
      request("GET", "/metrics", { anonymous: true }),
    ]);
    if (readiness.status === "fulfilled") {
      const parts = Object.entries(readiness.value.data).filter(([name]) => name !== "status");
      ready.replaceChildren(h("p", { class: "ok" }, "Ready"),
        h("ul", {}, parts.map(([name, up]) => h("li", {}, `${name.replace("_", " ")}: ${up ? "up" : "down"}`))));
    } else {
      ready.replaceChildren(h("p", { class: "bad", role: "alert" }, readiness.reason.detail));
    }
    if (metrics.status === "fulfilled") {
      lag.replaceChildren(...lagTables(parseMetrics(metrics.value.data)));
    } else {
      lag.replaceChildren(h("p", { class: "bad" }, metrics.reason.detail));
    }
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${REFRESH_MS / 1000} s.`;
  }

  main.replaceChildren(heading("Operator"),
    h("section", { class: "card", "aria-labelledby": "ready-h" }, h("h2", { id: "ready-h" }, "Readiness"), ready),
    h("section", { class: "card", "aria-labelledby": "lag-h" }, h("h2", { id: "lag-h" }, "Projections"), lag),
    updated);
  load();
  const timer = setInterval(load, REFRESH_MS);
  return () => clearInterval(timer);
}

/** Prometheus text → [{name, labels, value}] (comments and histograms' buckets included as-is). */
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    samples.push({ name: match[1], labels, value: Number(match[4]) });
  }
  return samples;
}

function lagTables(samples) {
  const pick = (name, label) => {
    const rows = new Map();
    for (const sample of samples) {
      if (sample.name === `${name}_events` || sample.name === `${name}_seconds`) {
        const key = sample.labels[label] || "";
        const row = rows.get(key) || {};
        row[sample.name.endsWith("_events") ? "events" : "seconds"] = sample.value;
        rows.set(key, row);
      }
    }
    return rows;
  };
  const table = (caption, label, rows) => rows.size === 0
    ? h("p", { class: "muted" }, `${caption}: not reported yet.`)
    : h("table", {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, label), h("th", { scope: "col" }, "events behind"), h("th", { scope: "col" }, "seconds behind"))),
      h("tbody", {}, [...rows].sort().map(([key, row]) => h("tr", {},
        h("th", { scope: "row" }, key), h("td", {}, fmt(row.events)), h("td", {}, fmt(row.seconds))))));
  const parked = samples.find((sample) => sample.name === "crm_parked_events");
  return [
    table("Read models", "view", pick("crm_view_lag", "view")),
    table("Feeds", "feed", pick("crm_projection_lag", "feed")),
    h("p", { id: "parked", class: parked && parked.value > 0 ? "bad" : "" },
      `Parked events: ${parked ? parked.value : "not reported yet"}`),
  ];
}

function fmt(value) {
  if (value === undefined) return "–";
  return Number.isInteger(value) ? String(value) : value.toFixed(2);
}
