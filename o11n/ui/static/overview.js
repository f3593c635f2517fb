// The overview: live counters, queued / running / recent jobs and pipelines, tenants'
// queues and shares, and charts of the last hours from the event log.

import { get } from "./api.js";
import { barChart, lineChart } from "./chart.js";
import { ago, badge, duration, fill, h, jobLink, table } from "./dom.js";

const POLL_MS = 2000;
const CHART_MS = 30000;

export function render(main) {
  const counters = h("section", { class: "counters", "aria-label": "Counters", "aria-live": "polite" });
  const running = h("section", { class: "panel" }, h("h2", null, "Running"));
  const queued = h("section", { class: "panel" }, h("h2", null, "Queued"));
  const recent = h("section", { class: "panel" }, h("h2", null, "Recent"));
  const pipelines = h("section", { class: "panel" }, h("h2", null, "Pipelines"));
  const tenants = h("section", { class: "panel" }, h("h2", null, "Tenants"));
  const hours = h("select", { id: "chart-hours", "aria-label": "Chart period" },
    [1, 3, 6, 24].map((n) => h("option", { value: n, selected: n === 3 }, `last ${n} h`)));
  const charts = h("div", { class: "charts" });
  const chartPanel = h("section", { class: "panel" },
    h("div", { class: "panel-head" }, h("h2", null, "Activity"), hours), charts);
  const error = h("p", { class: "error", role: "alert", hidden: true });
  fill(main, error, counters,
    h("div", { class: "columns" },
      h("div", { class: "col-main" }, running, queued, recent, pipelines),
      h("div", { class: "col-side" }, chartPanel, tenants)));

  let stopped = false;
  const refresh = async () => {
    try {
      const [summary, run, queue, done, pipes] = await Promise.all([
        get("/api/v1/ui/summary"),
        get("/api/v1/jobs?state=assigned&state=running&limit=25"),
        get("/api/v1/jobs?state=queued&limit=25"),
        get("/api/v1/jobs?state=succeeded&state=failed&state=error&state=cancelled&limit=25"),
        get("/api/v1/pipelines?limit=15"),
      ]);
      if (stopped) return;
      error.hidden = true;
      showCounters(counters, summary);
      fill(running, h("h2", null, "Running"), jobsTable("Running jobs", run.jobs, "started"));
      fill(queued, h("h2", null, "Queued"), jobsTable("Queued jobs", queue.jobs, "queued"));
      fill(recent, h("h2", null, "Recent"), jobsTable("Recent jobs", done.jobs, "ended"));
      fill(pipelines, h("h2", null, "Pipelines"), pipelinesTable(pipes.pipelines));
      fill(tenants, h("h2", null, "Tenants"), tenantsTable(summary.tenants));
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    }
  };
  const refreshCharts = async () => {
    try {
      const data = await get(`/api/v1/ui/activity?hours=${hours.value}`);
      if (!stopped) showCharts(charts, data);
    } catch (err) {
      fill(charts, h("p", { class: "error" }, err.message));
    }
  };
  hours.addEventListener("change", refreshCharts);
  refresh();
  refreshCharts();
  const timers = [setInterval(refresh, POLL_MS), setInterval(refreshCharts, CHART_MS)];
  return () => { stopped = true; timers.forEach(clearInterval); };
}

function counter(label, value, cls) {
  return h("div", { class: `counter ${cls || ""}` },
    h("span", { class: "counter-value", "data-counter": label }, value),
    h("span", { class: "counter-label" }, label));
}

function showCounters(el, s) {
  const w = s.workers;
  fill(el,
    counter("queued", s.queued, "queued"),
    counter("assigned", s.assigned, "assigned"),
    counter("running", s.running, "running"),
    counter("workers online", w.online),
    counter("workers busy", w.busy),
    w.draining ? counter("draining", w.draining) : null,
    w.disabled ? counter("disabled", w.disabled) : null);
}

function jobsTable(label, jobs, kind) {
  const now = Date.now() / 1000;
  const columns = ["job", "name", "tenant", "state", kind === "ended" ? "took" : "for", kind === "ended" ? "ended" : "attempt"];
  const rows = jobs.map((j) => {
    const started = j.attempts?.length ? j.attempts[j.attempts.length - 1].started_at : null;
    const since = kind === "started" ? (started || j.updated_at) : j.created_at;
    return [
      jobLink(j.id),
      h("span", { class: "name", title: j.name }, j.name),
      j.tenant,
      badge(j.state),
      kind === "ended" ? duration((j.finished_at || j.updated_at) - j.created_at) : duration(now - since),
      kind === "ended" ? ago(j.finished_at || j.updated_at) : String(j.attempt || "–"),
    ];
  });
  return table(label, columns, rows, `no ${label.toLowerCase()}`);
}

function pipelinesTable(pipelines) {
  const now = Date.now() / 1000;
  const rows = pipelines.map((p) => {
    const subs = p.stages.flatMap((s) => s.substages);
    const done = subs.filter((s) => ["succeeded", "cached", "skipped", "failed"].includes(s.state)).length;
    return [
      h("a", { href: `#/pipelines/${p.id}` }, `p${p.id}`),
      h("a", { href: `#/pipelines/${p.id}` }, p.name),
      p.tenant,
      badge(p.state),
      `${done}/${subs.length}`,
      duration((p.finished_at || now) - p.created_at),
    ];
  });
  return table("Pipelines", ["pipeline", "name", "tenant", "state", "steps", "took"], rows, "no pipelines yet");
}

function tenantsTable(tenants) {
  const rows = tenants.map((t) => [
    t.name, String(t.queued), String(t.running + t.assigned), String(t.weight),
    h("span", { class: "share" },
      h("meter", { min: 0, max: 1, value: t.share, "aria-label": `${t.name} share` }),
      ` ${Math.round(t.share * 100)}%`),
  ]);
  return table("Tenants", ["tenant", "queued", "running", "weight", "fair share"], rows, "no tenants");
}

function showCharts(el, data) {
  const b = data.buckets;
  const total = (k) => b.reduce((sum, x) => sum + x[k], 0);
  const step = data.bucket_seconds / 60;
  fill(el,
    h("figure", null,
      h("figcaption", null, `Jobs ended per ${step === 1 ? "minute" : `${step} minutes`}: `,
        h("span", { class: "key ok" }, `${total("succeeded")} succeeded`), ", ",
        h("span", { class: "key bad" }, `${total("failed")} failed`),
        `; ${total("submitted")} submitted`),
      barChart("Jobs ended per time bucket", b, [
        { key: "succeeded", class: "bar-ok", label: "succeeded" },
        { key: "failed", class: "bar-bad", label: "failed" },
      ], data.bucket_seconds)),
    h("figure", null,
      h("figcaption", null, "Queue wait (queued to assigned): ",
        h("span", { class: "key main" }, "average"), ", ", h("span", { class: "key peak" }, "longest")),
      lineChart("Queue wait in seconds per time bucket", b, "wait_avg", "wait_max")));
}
