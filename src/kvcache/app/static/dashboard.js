// The kvcache dashboard: fetches /api/dashboard and /api/cost every REFRESH_MS and draws them.
// Every cache figure carries data-metric (and data-family per family) with its raw value in
// data-value, so what the page shows can be checked against /api/cache/stats.
"use strict";

(function () {
  const REFRESH_MS = 5000;
  const MINUTES = 60;
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                   "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
  const COUNTS = ["hits", "misses", "sets", "deletes", "errors"];
  const charts = {};
  const state = { refreshes: 0, palette: PALETTE, busy: false, again: false };
  window.kvcacheDashboard = state;

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function percent(rate) {
    return (rate * 100).toFixed(1) + " %";
  }

  function usd(value) {
    return "$" + Number(value).toFixed(2);
  }

  function count(value) {
    return Number(value).toLocaleString("en-US", { maximumFractionDigits: 2 });
  }

  function setMetric(node, key, value) {
    node.dataset.value = String(value);
    node.textContent = key === "hitRate" ? percent(value) : String(value);
  }

  function showStats(stats) {
    for (const node of document.querySelectorAll(".figures [data-metric]")) {
      setMetric(node, node.dataset.metric, stats[node.dataset.metric]);
    }
    const body = document.querySelector("#families tbody");
    body.replaceChildren();
    for (const [family, row] of Object.entries(stats.by_family)) {
      const tr = el("tr");
      tr.append(el("td", {}, family || "(no family)"));
      for (const key of ["hitRate", ...COUNTS]) {
        const td = el("td", { class: "num", "data-metric": key, "data-family": family });
        setMetric(td, key, row[key]);
        tr.append(td);
      }
      body.append(tr);
    }
  }

  // yRange given (the hit rate): a fixed scale, and points, since its minutes have gaps.
  function chart(id, minutes, series, yFormat, yRange) {
    const box = document.getElementById(id);
    const empty = box.parentElement.querySelector(".empty");
    empty.hidden = series.length > 0;
    const labels = series.map((s) => s.label).join("\n");
    const data = [minutes, ...series.map((s) => s.values)];
    const existing = charts[id];
    if (existing && existing.labels === labels) {
      existing.plot.setData(data);
      return;
    }
    if (existing) existing.plot.destroy();
    const width = Math.max(320, box.clientWidth || 480);
    const options = {
      width: width,
      height: 220,
      scales: { x: { time: true }, y: yRange ? { range: yRange } : {} },
      axes: [{}, { values: (u, ticks) => ticks.map(yFormat), size: 60 }],
      series: [{}, ...series.map((s, i) => ({
        label: s.label,
        stroke: PALETTE[i % PALETTE.length],
        width: 2,
        points: { show: Boolean(yRange), size: 5 },
        value: (u, v) => (v === null || v === undefined ? "–" : yFormat(v)),
      }))],
    };
    charts[id] = { labels: labels, plot: new uPlot(options, data, box) };
  }

  function showCharts(data) {
    chart("chart-hit-rate", data.minutes,
      data.hitRate.map((s) => ({ label: s.family || "(no family)", values: s.rates })),
      (v) => (v * 100).toFixed(0) + " %", [0, 1]);
    chart("chart-ops", data.minutes,
      data.ops.map((s) => ({ label: s.namespace, values: s.perSecond })),
      (v) => count(v) + "/s");
    chart("chart-webhooks", data.minutes,
      data.webhooks.map((s) => ({
        label: (s.topic || "(no topic)") + " " + s.outcome, values: s.counts })),
      (v) => count(v));
  }

  function showHealth(health) {
    const dl = document.getElementById("health");
    dl.replaceChildren();
    const rows = [
      ["Backend", health.backend, {}],
      ["Circuit breaker", health.breaker, { class: "state-" + health.breaker }],
      ["Failures in a row", health.consecutiveFailures, {}],
      ["Breaker trips", health.trips, {}],
      ["Store errors", health.errors, { "data-health": "errors" }],
      ["Skipped calls", health.skipped, { "data-health": "skipped" }],
      ["Answered by worker", health.worker, {}],
    ];
    for (const [label, value, attrs] of rows) {
      dl.append(el("dt", {}, label), el("dd", attrs, value));
    }
  }

  async function replay(button) {
    const status = document.getElementById("replay-status");
    button.disabled = true;
    status.textContent = "replaying " + button.dataset.replay + "…";
    try {
      const answer = await fetch("/api/webhooks/replay", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ webhookId: button.dataset.replay, shop: button.dataset.shop }),
      });
      const body = await answer.json();
      status.textContent = button.dataset.replay + ": " +
        (body.outcome || body.error) + (body.detail ? " (" + body.detail + ")" : "");
    } catch (err) {
      status.textContent = "replay failed: " + err;
    }
    await refresh();
  }

  function showDeliveries(rows) {
    const body = document.querySelector("#deliveries tbody");
    body.replaceChildren();
    for (const row of rows) {
      const tr = el("tr", { "data-webhook-id": row.webhookId, "data-shop": row.shop });
      tr.append(
        el("td", {}, row.receivedAt),
        el("td", {}, row.topic),
        el("td", {}, row.shop),
        el("td", { class: "outcome outcome-" + row.outcome, "data-outcome": row.outcome },
          row.outcome),
        el("td", { class: "num" }, row.attempts),
        el("td", { class: "num" }, row.durationMs === null ? "" : row.durationMs.toFixed(1)),
        el("td", { class: "error" }, row.error || ""),
      );
      const action = el("td");
      if (row.outcome === "failed") {
        const button = el("button", { type: "button", "data-replay": row.webhookId,
                                      "data-shop": row.shop }, "Replay");
        button.addEventListener("click", () => replay(button));
        action.append(button);
      }
      tr.append(action);
      body.append(tr);
    }
  }

  function costFigure(dl, label, path, value, format) {
    dl.append(el("dt", {}, label),
              el("dd", { "data-cost": path, "data-value": String(value) }, format(value)));
  }

  function showCost(cost) {
    const box = document.getElementById("cost");
    box.replaceChildren();
    if (cost === null) {
      box.append(el("p", { class: "unavailable", "data-cost": "unavailable" },
                    "cost projection unavailable"));
      return;
    }
    const seconds = cost.window_seconds;
    const observed = seconds >= 3600 ? (seconds / 3600).toFixed(1) + " h"
      : (seconds / 60).toFixed(1) + " min";
    box.append(el("p", {}, "From " + observed + " observed, scaled to 30 days."));
    const dl = el("dl");
    for (const key of ["reads", "writes", "deletes", "lists", "stored_bytes"]) {
      costFigure(dl, "Monthly " + key.replace("_", " "), "monthly." + key,
                 cost.monthly[key], count);
    }
    const free = cost.workers_kv.free;
    dl.append(el("dt", {}, "Workers KV Free"),
              el("dd", { class: free.fits ? "fits-yes" : "fits-no", "data-cost": "workers_kv.free.fits",
                         "data-value": String(free.fits) },
                 free.fits ? "fits" : "over: " + free.over.join(", ")));
    costFigure(dl, "Workers KV Paid usage", "workers_kv.paid.usage_usd",
               cost.workers_kv.paid.usage_usd, usd);
    costFigure(dl, "Workers KV Paid total", "workers_kv.paid.total_usd",
               cost.workers_kv.paid.total_usd, usd);
    costFigure(dl, "D1 Paid usage", "d1.paid.usage_usd", cost.d1.paid.usage_usd, usd);
    costFigure(dl, "D1 Paid total", "d1.paid.total_usd", cost.d1.paid.total_usd, usd);
    box.append(dl);
    if (cost.warnings.length) {
      const list = el("ul", { class: "warnings" });
      for (const warning of cost.warnings) {
        list.append(el("li", { "data-warning": warning.code }, warning.message));
      }
      box.append(list);
    }
  }

  async function getJson(url) {
    const answer = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (answer.status === 404) return null;
    if (answer.status === 401) throw new Error("the session ended: reload to log in");
    if (!answer.ok) throw new Error(url + " answered " + answer.status);
    return answer.json();
  }

  async function refresh() {
    if (state.busy) {
      state.again = true;  // a replay asked while a refresh was out: refresh once more after it
      return;
    }
    state.busy = true;
    const problem = document.getElementById("problem");
    try {
      const [data, cost] = await Promise.all([
        getJson("/api/dashboard?minutes=" + MINUTES),
        getJson("/api/cost").catch(() => null),
      ]);
      if (data === null) throw new Error("/api/dashboard is missing");
      showStats(data.stats);
      showCharts(data);
      showHealth(data.health);
      showDeliveries(data.deliveries);
      showCost(cost);
      problem.textContent = "";
      state.refreshes += 1;
      document.body.dataset.refreshes = String(state.refreshes);
      document.getElementById("updated").textContent =
        "updated " + new Date(data.now * 1000).toLocaleTimeString();
    } catch (err) {
      problem.textContent = String(err.message || err);
    } finally {
      state.busy = false;
    }
    if (state.again) {
      state.again = false;
      await refresh();
    }
  }

  refresh();
  setInterval(refresh, REFRESH_MS);
})();
