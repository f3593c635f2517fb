// A pipeline: stages as columns, substages as boxes coloured by state, live over the
// pipeline's WebSocket (its record at each change); a box opens its job.

import { ApiError, get, post, watch } from "./api.js";
import { badge, duration, fill, h, when } from "./dom.js";

export function render(main, { id }) {
  const head = h("div", { class: "panel-head" }, h("h1", null, `Pipeline p${id}`));
  const facts = h("p", { class: "facts" });
  const board = h("div", { class: "board", role: "list", "aria-label": "Stages" });
  const status = h("p", { class: "muted", "aria-live": "polite" }, "connecting…");
  fill(main, h("section", { class: "panel" }, head, facts, status), board);

  let record = null;
  let jobs = new Map();
  let stopped = false;
  let ws = null;

  const loadJobs = async () => {
    try {
      const page = await get(`/api/v1/jobs?label=o11n.pipeline=${id}&limit=500`);
      jobs = new Map(page.jobs.map((j) => [j.id, j]));
      if (!stopped && record) draw();
    } catch { /* the board still shows the pipeline's own states */ }
  };

  const draw = () => {
    const now = Date.now() / 1000;
    const cancel = h("button", {
      type: "button", class: "danger", disabled: record.state !== "running",
      onclick: async () => {
        try { await post(`/api/v1/pipelines/${id}/cancel`); } catch (err) { status.textContent = err.message; }
      },
    }, "Cancel pipeline");
    fill(head, h("h1", null, `Pipeline p${id}: ${record.name}`), badge(record.state), cancel);
    fill(facts, `tenant ${record.tenant} · started ${when(record.created_at)} · `,
      `${record.finished_at ? "took" : "running for"} ${duration((record.finished_at || now) - record.created_at)}`,
      record.dry_run ? " · dry run" : "");
    fill(board, record.stages.map((stage) => column(stage, jobs, now)));
  };

  const fail = (message) => {
    fill(main, h("section", { class: "panel" }, h("h1", null, "Pipeline not found"),
      h("p", { class: "error", role: "alert" }, message)));
  };

  get(`/api/v1/pipelines/${id}`).then((first) => {
    if (stopped) return;
    record = first;
    draw();
    loadJobs();
    ws = watch(`/api/v1/pipelines/${id}/watch`, {}, (message) => {
      if (message.type === "pipeline") {
        record = message;
        draw();
        loadJobs();
        status.textContent = "live";
      } else if (message.type === "end") {
        status.textContent = `ended: ${message.state}`;
        loadJobs();
      } else if (message.type === "error") {
        status.textContent = message.message;
      }
    }, () => {
      if (!stopped && record && record.state === "running") status.textContent = "disconnected; reload to follow it again";
    });
  }).catch((err) => fail(err instanceof ApiError && err.status === 404 ? `There is no pipeline p${id} you may see.` : err.message));

  // Durations of running boxes tick while the stream is quiet.
  const ticker = setInterval(() => { if (record && record.state === "running") draw(); }, 1000);
  const poller = setInterval(() => { if (record && record.state === "running") loadJobs(); }, 2000);
  return () => {
    stopped = true;
    clearInterval(ticker);
    clearInterval(poller);
    if (ws) ws.close();
  };
}

function column(stage, jobs, now) {
  return h("section", { class: `stage state-${stage.state}`, role: "listitem", "aria-label": `Stage ${stage.name}` },
    h("header", null, h("h2", null, stage.name), badge(stage.state)),
    h("div", { class: "boxes" }, stage.substages.map((sub) => box(sub, jobs, now))));
}

/** The job a box opens: the cached-from job, else the winning or latest copy's. */
function jobOf(sub) {
  if (sub.cached_from) return sub.cached_from;
  const copies = (sub.copies || []).filter((c) => c.job_id);
  const won = copies.find((c) => c.state === "succeeded");
  return (won || copies[copies.length - 1] || {}).job_id || null;
}

function shownState(sub, job) {
  const state = sub.state || "pending";
  if (state === "running" && job && job.state === "queued") return "queued";
  if (state === "pending") return "queued";
  return state;
}

function box(sub, jobs, now) {
  const jobId = jobOf(sub);
  const job = jobId ? jobs.get(jobId) : null;
  const state = shownState(sub, job);
  const attempts = job ? job.attempt : 0;
  const retried = attempts > 1;
  const details = [h("span", { class: "box-state" }, state)];
  if (sub.cached_from) details.push(h("span", null, `from #${sub.cached_from}`));
  if (job && attempts) details.push(h("span", null, `attempt ${attempts}`));
  if (job && job.state !== "queued") {
    details.push(h("span", null, duration((job.finished_at || now) - job.created_at)));
  }
  if ((sub.copies || []).length > 1) details.push(h("span", null, `${sub.copies.length} copies`));
  const cls = `box state-${state}${retried ? " retried" : ""}`;
  const label = `${sub.name}: ${state}${retried ? ", retried" : ""}`;
  const content = [
    h("span", { class: "box-name" }, sub.name),
    retried ? h("span", { class: "badge state-retried" }, "retried") : null,
    h("span", { class: "box-details" }, details),
  ];
  return jobId
    ? h("a", { class: cls, href: `#/jobs/${jobId}`, "aria-label": label, "data-substage": sub.name }, content)
    : h("div", { class: cls, "aria-label": label, "data-substage": sub.name }, content);
}
