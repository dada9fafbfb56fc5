// The server view: /health and the key figures of /metrics, refreshed every few seconds.

import { clear, h } from "./ui.js";

const REFRESH_MS = 3000;

export async function serverPage(root, ctx) {
  const healthBox = h("div", { id: "health", class: "figures" });
  const metricsBox = h("div", { id: "metrics" });
  const updated = h("p", { class: "muted", id: "server-updated" });
  clear(
    root,
    h("h1", { tabindex: "-1" }, "Server"),
    h("section", { class: "card", "aria-labelledby": "health-title" }, h("h2", { id: "health-title" }, "Health"), healthBox),
    h("section", { class: "card", "aria-labelledby": "metrics-title" }, h("h2", { id: "metrics-title" }, "Metrics"), metricsBox),
    updated,
  );
  let previous = null; // the last scrape: {at, published}
  let timer = null;
  let stopped = false;
  ctx.onLeave(() => {
    stopped = true;
    clearTimeout(timer);
  });

  const tick = async () => {
    const [health, metrics] = await Promise.all([fetchHealth(), fetchMetrics()]);
    if (stopped) return;
    renderHealth(healthBox, health);
    previous = renderMetrics(metricsBox, metrics, previous);
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}; refreshed every ${REFRESH_MS / 1000} s.`;
    timer = setTimeout(tick, REFRESH_MS);
  };
  await tick();
}

async function fetchHealth() {
  try {
    const response = await fetch("/health", { cache: "no-store", credentials: "omit" });
    return { status: response.status, body: await response.json().catch(() => null) };
  } catch {
    return { status: 0, body: null };
  }
}

async function fetchMetrics() {
  try {
    const response = await fetch("/metrics", { cache: "no-store", credentials: "omit" });
    return { status: response.status, text: await response.text() };
  } catch {
    return { status: 0, text: "" };
  }
}

function figure(label, value, { id, state } = {}) {
  return h("div", { class: `figure${state ? ` ${state}` : ""}`, id }, h("span", { class: "label" }, label), h("span", { class: "value" }, value));
}

function renderHealth(box, { status, body }) {
  if (status === 0 || !body) {
    clear(box, figure("Status", "no answer", { id: "health-status", state: "bad" }));
    return;
  }
  const good = (value) => (value === "ok" || value === "local" ? "good" : "bad");
  clear(
    box,
    figure("Status", body.status, { id: "health-status", state: status === 200 ? "good" : "bad" }),
    figure("Storage", body.storage, { state: good(body.storage) }),
    figure("Fan-out", body.fanout, { state: good(body.fanout) }),
    figure("Version", body.version),
  );
}

// Prometheus text format: `name{label="value",...} number` lines; comments start with #.
export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith("#")) continue;
    const match = trimmed.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[2] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1]] = pair[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

function sum(samples, name, filter = () => true) {
  const found = samples.filter((s) => s.name === name && filter(s.labels));
  return found.length ? found.reduce((total, s) => total + s.value, 0) : null;
}

function renderMetrics(box, { status, text }, previous) {
  if (status === 404) {
    clear(box, h("p", { class: "muted", id: "metrics-note" }, "This server does not serve /metrics here: it may listen for metrics on a separate address (--metrics-listen), or this version has none."));
    return null;
  }
  if (status === 401 || status === 403) {
    clear(box, h("p", { class: "muted", id: "metrics-note" }, "/metrics needs a bearer token (--metrics-token), which the console does not send. Scrape it with your monitoring system instead."));
    return null;
  }
  if (status !== 200) {
    clear(box, h("p", { class: "form-error", id: "metrics-note" }, status === 0 ? "/metrics did not answer." : `/metrics answered ${status}.`));
    return null;
  }
  const samples = parseMetrics(text);
  const now = performance.now();
  const published = sum(samples, "herald_messages_published_total");
  let rate = "…";
  if (published !== null && previous && previous.published !== null) {
    const seconds = (now - previous.at) / 1000;
    const delta = published - previous.published;
    rate = seconds > 0 && delta >= 0 ? `${(delta / seconds).toFixed(1)}/s` : "…";
  }
  const show = (value) => (value === null ? "–" : String(value));
  const transports = [
    ["poll", "Waiting polls"],
    ["websocket", "WebSocket subscribers"],
    ["sse", "SSE subscribers"],
  ];
  const byAction = samples.filter((s) => s.name === "herald_messages_published_total");
  clear(
    box,
    h(
      "div",
      { class: "figures" },
      figure("Connections", show(sum(samples, "herald_connections")), { id: "metric-connections" }),
      transports.map(([transport, label]) =>
        figure(label, show(sum(samples, "herald_subscribers", (l) => l.transport === transport)), { id: `metric-subscribers-${transport}` }),
      ),
      figure("Publish rate", published === null ? "–" : rate, { id: "metric-publish-rate" }),
      figure("Published", show(published), { id: "metric-published" }),
    ),
    byAction.length > 1
      ? h("p", { class: "muted" }, "By action: ", byAction.map((s) => `${s.labels.action ?? "?"} ${s.value}`).join(", "))
      : null,
  );
  return { at: now, published };
}
