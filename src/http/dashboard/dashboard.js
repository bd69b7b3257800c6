/* global document, window, fetch, uPlot, setInterval */
// The live dashboard: polls /health and /api/stats (same origin, the session cookie goes along)
// and redraws. Everything from the server is inserted as text, never as HTML.
"use strict";

const POLL_MS = 3000;
const CHART_MS = 10000;
// An answer later than this counts as none: a hung API or proxy must not leave the page
// showing its last reading as current, nor pile up a request per poll.
const ANSWER_MS = 8000;
const charts = {};

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof window.Node ? c : String(c ?? ""));
  return e;
}

function fmt(v, digits = 1) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (Math.abs(v) >= 100) return Math.round(v).toString();
  return Number(v).toFixed(digits);
}
const pct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`);

function setMetric(name, text) {
  for (const e of document.querySelectorAll(`[data-metric="${name}"]`)) e.textContent = text;
}

// What a row's button acts on: the key that finds it again in the next rendering.
const actsOn = (e) => e && (e.dataset.queue ?? e.dataset.retry);

// Rows are drawn anew on every poll. A row that has not changed stays in the page as it is, so
// a button keeps the keyboard focus and a press in progress; when the row did change (the
// button now says Resume), the focus moves to the button for the same queue or job.
function fill(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  const focused = body.contains(document.activeElement) ? actsOn(document.activeElement) : undefined;
  const old = [...body.children];
  const wanted = rows.map((row) => {
    const i = old.findIndex((o) => o.isEqualNode(row));
    return i < 0 ? row : old.splice(i, 1)[0];
  });
  wanted.forEach((row, i) => {
    if (body.children[i] !== row) body.insertBefore(row, body.children[i] ?? null);
  });
  while (body.children.length > wanted.length) body.lastElementChild.remove();
  if (focused !== undefined && !body.contains(document.activeElement)) {
    const again = [...body.querySelectorAll("button")].find((b) => actsOn(b) === focused);
    // Its row is gone (a retried job): the focus stays in the table's box, not lost to the page.
    if (again) again.focus();
    else body.closest("[tabindex]")?.focus();
  }
}

async function getJson(url, init) {
  let res;
  try {
    res = await fetch(url, {
      credentials: "same-origin",
      signal: window.AbortSignal.timeout(ANSWER_MS),
      ...init,
    });
  } catch (err) {
    if (err && err.name === "TimeoutError")
      throw new Error(`the API did not answer within ${ANSWER_MS / 1000} s`, { cause: err });
    throw new Error("the API could not be reached", { cause: err });
  }
  if (res.status === 401 || res.status === 403) {
    // 401: the session ended while the page was open (it expired, or was signed out elsewhere).
    window.location.href = res.status === 401 ? "/dashboard/login?ended=1" : "/dashboard/login";
    throw new Error("not signed in");
  }
  // A proxy's own error page (HTML) is no answer of the API's.
  const body = await res.json().catch(() => null);
  if (body === null) throw new Error(`${res.status} ${res.statusText || "answer"} (not from the API)`);
  // An error answer (Redis away, rate limited) is no data: say what the server said.
  if (body.error)
    throw Object.assign(new Error(`${res.status} ${body.error.message}`), { status: res.status });
  return { status: res.status, body };
}

async function pollHealth() {
  const badge = document.getElementById("status");
  let h;
  try {
    ({ body: h } = await getJson("/health"));
  } catch (err) {
    // The last status read is no longer known to hold, nor the queues and workers read with it.
    badge.textContent = "unknown";
    badge.dataset.status = "unknown";
    report("fleet", err);
    throw err;
  }
  badge.textContent = h.status;
  badge.dataset.status = h.status;
  document.getElementById("reasons").replaceChildren(...(h.reasons || []).map((r) => el("li", {}, r)));
  // Without Redis, /health still answers (unhealthy, and why), but cannot know the queues and
  // workers: its zeros there are no reading. Their panels keep the last one, marked stale.
  if (h.checks && h.checks.redis !== "up") {
    report("fleet", new Error("Redis unreachable: queues and workers unknown"));
    return;
  }
  report("fleet");
  failedTotal = h.queue ? h.queue.failed : undefined;
  setMetric("queue_depth", String(h.queue ? h.queue.depth : "–"));
  setMetric("workers", String(h.system ? h.system.active_workers : "–"));
  fill(
    "queues",
    Object.entries(h.models || {}).map(([name, m]) =>
      el(
        "tr",
        {},
        el("td", {}, name),
        el("td", { class: "num" }, m.workers),
        el("td", { class: "num" }, m.queue_depth),
        el("td", { class: "num" }, m.active),
        el("td", { class: "num" }, m.retrying),
        el("td", { class: "num" }, m.failed),
        el("td", { class: "num" }, fmt(m.oldest_waiting_age_seconds)),
        el("td", { class: "num" }, fmt(m.avg_processing_ms, 2)),
        el(
          "td",
          {},
          m.paused ? el("span", { class: "paused" }, "paused ") : "",
          el(
            "button",
            {
              type: "button",
              "data-queue": name,
              "data-action": m.paused ? "resume" : "pause",
              "data-pending": `queue:${name}`,
              // Read out alone (a screen reader's list of buttons), "Pause" would not say which.
              "aria-label": `${m.paused ? "Resume" : "Pause"} ${name}`,
              ...busyAttrs(`queue:${name}`),
              onclick: (ev) => pauseOrResume(ev.target, name, m.paused ? "resume" : "pause"),
            },
            m.paused ? "Resume" : "Pause",
          ),
        ),
      ),
    ),
  );
  fill(
    "workers",
    // In a fixed order (host, then pid): rows that swap places on every poll are hard to read.
    [...(h.workers || [])]
      .sort((a, b) => String(a.host).localeCompare(String(b.host)) || a.pid - b.pid)
      .map((w) =>
        el(
          "tr",
          {},
          el("td", {}, w.host),
          el("td", { class: "num" }, w.pid),
          el("td", {}, (w.models || []).join(", ")),
          el("td", {}, w.state),
          el("td", { class: "num" }, w.processed),
          el("td", { class: "num" }, w.failed),
          el("td", { class: "num" }, fmt(w.rss_bytes / 1048576, 0)),
          el("td", {}, new Date(w.last_seen).toLocaleTimeString()),
        ),
      ),
  );
}

async function pollSummary() {
  const { body: s } = await getJson("/api/stats?window=5m");
  const l = s.latency_ms;
  setMetric("throughput", fmt(s.throughput_per_s, 2));
  setMetric("total_p50", fmt(l.total.p50_ms));
  setMetric("total_p95", fmt(l.total.p95_ms));
  setMetric("total_p99", fmt(l.total.p99_ms));
  setMetric("wait_p95", fmt(l.wait.p95_ms));
  setMetric("inference_p95", fmt(l.inference.p95_ms, 2));
  setMetric("error_rate", pct(s.error_rate));
  setMetric("cache_hit_rate", pct(s.cache.hit_rate));
  setMetric("batch_avg", fmt(s.batch.avg_size, 2));
  setMetric("completed", String(s.completed));
}

const chartWidth = (target) => Math.max(200, target.clientWidth || 540);

function chart(id, series, data) {
  const target = document.getElementById(id);
  const width = chartWidth(target);
  if (!charts[id]) {
    charts[id] = new uPlot(
      {
        width,
        height: 200,
        series: [{}, ...series],
        axes: [{}, { size: 60 }],
        scales: { x: { time: true } },
        hooks: { draw: [() => (target.dataset.drawn = String(Number(target.dataset.drawn || 0) + 1))] },
      },
      data,
      target,
    );
  } else {
    charts[id].setData(data);
  }
}

// Charts follow the width of their box (a phone turned, a window narrowed).
window.addEventListener("resize", () => {
  for (const [id, c] of Object.entries(charts)) {
    const width = chartWidth(document.getElementById(id));
    if (width !== c.width) c.setSize({ width, height: 200 });
  }
});

const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df"];
// Points as well as lines: a minute with traffic between idle ones is a lone point.
const line = (label, i) => ({
  label,
  stroke: COLORS[i % COLORS.length],
  width: 1.5,
  spanGaps: false,
  points: { show: true, size: 5, fill: COLORS[i % COLORS.length] },
});

function predictionText(p) {
  if (!p) return "–";
  if (p.kind === "classes")
    return Object.entries(p.shares)
      .map(([label, share]) => `${label} ${pct(share)}`)
      .join(" · ");
  return `${p.count} values, ${p.bins.length} bins`;
}

function liveText(f) {
  const live = f.live;
  if (!live || live.count === 0) return "no feedback yet";
  if (live.accuracy !== undefined) return `accuracy ${pct(live.accuracy)} (n=${live.count})`;
  return `MAE ${fmt(live.mae, 3)} · RMSE ${fmt(live.rmse, 3)} (n=${live.count})`;
}

function trainingText(f) {
  const m = f.training && f.training.metrics;
  if (!m) return "–";
  return Object.entries(m)
    .filter(([, v]) => typeof v === "number" || typeof v === "string")
    .slice(0, 4)
    .map(([k, v]) => `${k} ${typeof v === "number" && !Number.isInteger(v) ? fmt(v, 3) : v}`)
    .join(" · ");
}

async function pollCharts() {
  const { body: s } = await getJson("/api/stats?window=1h");
  const xs = s.series.map((p) => Date.parse(p.t) / 1000);
  const col = (k) => s.series.map((p) => p[k]);
  chart("chart-throughput", [line("completed/s", 0)], [xs, col("throughput_per_s")]);
  chart(
    "chart-latency",
    [line("p50", 0), line("p95", 3), line("p99", 1)],
    [xs, col("total_p50_ms"), col("total_p95_ms"), col("total_p99_ms")],
  );
  // In percent, as the tiles show them.
  const percent = (k) => col(k).map((v) => (v === null || v === undefined ? v : v * 100));
  chart(
    "chart-rates",
    [line("error rate %", 1), line("cache hit rate %", 2)],
    [xs, percent("error_rate"), percent("cache_hit_rate")],
  );
  chart("chart-batch", [line("avg batch size", 4)], [xs, col("batch_avg_size")]);

  const rows = [];
  for (const [name, m] of Object.entries(s.models)) {
    for (const [version, v] of Object.entries(m.versions)) {
      rows.push(
        el(
          "tr",
          {},
          el("td", {}, `${name}@${version}`),
          el("td", { class: "num" }, v.completed),
          el(
            "td",
            { class: "num" },
            `${fmt(v.latency_ms.inference.p50_ms, 2)} / ${fmt(v.latency_ms.inference.p95_ms, 2)}`,
          ),
          el("td", {}, predictionText(v.predictions)),
          el("td", {}, liveText(v.feedback)),
          el("td", {}, trainingText(v.feedback)),
        ),
      );
    }
  }
  fill("models", rows);
}

// An action the operator asked for (not a poll): a failure is shown until the next attempt,
// with the code and message the server gave, and never sends the page to the sign-in form.
async function act(url) {
  let res;
  try {
    res = await fetch(url, { method: "POST", credentials: "same-origin" });
  } catch {
    throw new Error("the API did not answer");
  }
  if (res.ok) return;
  const body = await res.json().catch(() => null);
  const error = body && body.error;
  throw new Error(
    error ? `${res.status} ${error.code}: ${error.message}` : `${res.status} ${res.statusText}`,
  );
}

function showActionError(boxId, text) {
  const box = document.getElementById(boxId);
  box.textContent = text;
  box.hidden = text === "";
}

// Buttons whose action is on its way ("queue:echo", "job:<id>"). Such a button is marked
// aria-disabled rather than disabled: a disabled button drops the keyboard focus. Redraws keep
// the mark, so a second press cannot slip in while the first is answered.
const pending = new Set();
const busyAttrs = (key) => (pending.has(key) ? { "aria-disabled": "true" } : {});

async function whilePending(button, key, action) {
  if (pending.has(key)) return;
  pending.add(key);
  button.setAttribute("aria-disabled", "true");
  try {
    await action();
  } finally {
    pending.delete(key);
    // The button may have been redrawn meanwhile: clear the mark wherever it now is.
    for (const b of document.querySelectorAll('button[aria-disabled="true"]'))
      if (!pending.has(b.dataset.pending)) b.removeAttribute("aria-disabled");
  }
}

function retry(button, jobId) {
  return whilePending(button, `job:${jobId}`, async () => {
    showActionError("failed-error", "");
    try {
      await act(`/api/admin/jobs/${encodeURIComponent(jobId)}/retry`);
    } catch (err) {
      showActionError("failed-error", `Retry of ${jobId} failed: ${err.message}`);
      return;
    }
    await refreshFailed(true);
  });
}

// Pausing stops every worker from starting the model's jobs (requests are still queued).
function pauseOrResume(button, model, action) {
  return whilePending(button, `queue:${model}`, async () => {
    showActionError("queues-error", "");
    try {
      await act(`/api/admin/models/${encodeURIComponent(model)}/${action}`);
    } catch (err) {
      showActionError(
        "queues-error",
        `${action === "pause" ? "Pausing" : "Resuming"} ${model} failed: ${err.message}`,
      );
      return;
    }
    await refreshHealth(true);
  });
}

// Failed jobs kept, from the last /health read: the list shows the newest FAILED_SHOWN per model.
let failedTotal;
const FAILED_SHOWN = 20;

async function pollFailed() {
  const { body } = await getJson(`/api/admin/jobs/failed?limit=${FAILED_SHOWN}`);
  // Cut short only where a model filled its share (health's count may be a poll behind).
  const perModel = new Map();
  for (const j of body.jobs) perModel.set(j.model, (perModel.get(j.model) ?? 0) + 1);
  const cut = [...perModel.values()].some((n) => n >= FAILED_SHOWN);
  document.getElementById("failed-count").textContent =
    cut && failedTotal !== undefined && failedTotal > body.jobs.length
      ? `The newest ${body.jobs.length} of ${failedTotal} (${FAILED_SHOWN} per model); GET /api/admin/jobs/failed lists more.`
      : "";
  fill(
    "failed",
    body.jobs.map((j) =>
      el(
        "tr",
        {},
        el("td", {}, j.job_id),
        el("td", {}, `${j.model}@${j.version}`),
        el("td", {}, `${j.error.code}: ${j.error.message}`),
        el("td", { class: "num" }, j.attempts),
        el("td", {}, j.failed_at ? new Date(j.failed_at).toLocaleTimeString() : "–"),
        el(
          "td",
          {},
          el(
            "button",
            {
              type: "button",
              "data-retry": j.job_id,
              "data-pending": `job:${j.job_id}`,
              "aria-label": `Retry job ${j.job_id}`,
              ...busyAttrs(`job:${j.job_id}`),
              onclick: (ev) => retry(ev.target, j.job_id),
            },
            "Retry",
          ),
        ),
      ),
    ),
  );
}

// Sources whose last poll failed, with why. What they drew stays on the page but is marked
// stale (data-stale, greyed) until they are read again; the line by the status tells why.
const failing = new Map();

function report(source, err) {
  if (err) failing.set(source, err.message);
  else failing.delete(source);
  for (const e of document.querySelectorAll(`[data-source="${source}"]`))
    e.toggleAttribute("data-stale", failing.has(source));
  document.getElementById("updated").textContent =
    failing.size > 0
      ? `update failed: ${failing.values().next().value}`
      : `updated ${new Date().toLocaleTimeString()}`;
}

// A poll that never rejects: it reports how it went. One at a time per source: a timer's turn
// while one is under way is skipped; after an action (fresh), the next starts when it ends.
const inFlight = new Map();
const polled = (source, fn) => {
  const run = (fresh = false) => {
    const under = inFlight.get(source);
    if (under) return fresh ? under.then(() => run(true)) : under;
    const p = fn()
      .then(
        () => report(source),
        (err) => report(source, err),
      )
      .finally(() => inFlight.delete(source));
    inFlight.set(source, p);
    return p;
  };
  return run;
};
// With METRICS_ENABLED=false the server keeps no stats (/api/stats answers 404): the panels they
// feed give way to a note saying so, and are not polled again.
let statsOff = false;
const withStats = (poll) => async () => {
  if (statsOff) return;
  try {
    await poll();
  } catch (err) {
    if (err.status !== 404) throw err;
    statsOff = true;
    for (const e of document.querySelectorAll("[data-stats]")) e.hidden = true;
    document.getElementById("stats-off").hidden = false;
  }
};

const refreshHealth = polled("health", pollHealth);
const refreshSummary = polled("summary", withStats(pollSummary));
const refreshCharts = polled("charts", withStats(pollCharts));
const refreshFailed = polled("failed", pollFailed);

function every(ms, run) {
  setInterval(run, ms);
  return run();
}

Promise.all([
  every(POLL_MS, refreshHealth),
  every(POLL_MS, refreshSummary),
  every(CHART_MS, refreshCharts),
  every(CHART_MS, refreshFailed),
]).then(() => (document.body.dataset.ready = "true"));
