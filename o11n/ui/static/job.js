// A job: what it runs and where, its attempts and events, its live log, cancel and retry.

import { ApiError, api, get, post, watch } from "./api.js";
import { badge, bytes, chips, duration, fill, h, table, when } from "./dom.js";
import { LogView } from "./logview.js";

const LIVE = ["queued", "assigned", "running"];
const JOB_ONLY = ["id", "state", "attempt", "attempts", "exit_code", "reason", "created_at",
  "updated_at", "finished_at", "idempotency_key"];

export function render(main, { id }) {
  const head = h("div", { class: "panel-head" }, h("h1", null, `Job #${id}`));
  const facts = h("div", { class: "facts" });
  const message = h("p", { class: "muted", role: "status", "aria-live": "polite" });
  const spec = h("section", { class: "panel" });
  const attempts = h("section", { class: "panel" }, h("h2", null, "Attempts"));
  const timeline = h("ol", { class: "timeline", "aria-label": "Events" });
  const follow = h("input", { type: "checkbox", id: "follow", checked: true });
  const download = h("button", { type: "button" }, "Download the log");
  const logBox = h("div", { class: "log", id: "log", role: "log", "aria-label": "Log", tabindex: 0 });
  const logInfo = h("span", { class: "muted" });
  fill(main,
    h("section", { class: "panel" }, head, facts, message),
    h("div", { class: "columns" },
      h("div", { class: "col-main" },
        h("section", { class: "panel" },
          h("div", { class: "panel-head" }, h("h2", null, "Log"),
            h("label", { class: "inline" }, follow, " follow the tail"), download, logInfo),
          logBox)),
      h("div", { class: "col-side" }, spec, attempts,
        h("section", { class: "panel" }, h("h2", null, "Events"), timeline))));

  const log = new LogView(logBox);
  log.onflush = () => { logInfo.textContent = `${bytes(log.bytes)}B`; };
  follow.addEventListener("change", () => {
    log.follow = follow.checked;
    if (follow.checked) logBox.scrollTop = logBox.scrollHeight;
  });
  logBox.addEventListener("scroll", () => {
    const atEnd = logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 24;
    if (log.follow !== atEnd && !log.scheduled) { log.follow = atEnd; follow.checked = atEnd; }
  });
  download.addEventListener("click", () => downloadLog(id, message));

  let job = null;
  let stopped = false;
  let ws = null;
  let lastAttempt = 0;
  let reloading = null;

  const show = () => {
    fill(head, h("h1", null, `Job #${job.id}: `, h("span", { class: "name" }, job.name)), badge(job.state),
      actions(job, message));
    fill(facts, factsOf(job));
    fill(spec, h("h2", null, "Spec"), specOf(job));
    fill(attempts, h("h2", null, "Attempts"), attemptsTable(job));
  };
  const reload = () => {
    if (reloading) return reloading;
    reloading = get(`/api/v1/jobs/${id}`).then((fresh) => {
      job = fresh;
      if (!stopped) show();
    }).catch((err) => { message.textContent = err.message; }).finally(() => { reloading = null; });
    return reloading;
  };

  get(`/api/v1/jobs/${id}`).then((first) => {
    if (stopped) return;
    job = first;
    show();
    ws = watch(`/api/v1/jobs/${id}/watch`, { logs: 1 }, (m) => {
      if (m.type === "log") {
        if (m.attempt !== lastAttempt) {
          if (lastAttempt) log.marker(`── attempt ${m.attempt} ──`);
          lastAttempt = m.attempt;
        }
        log.append(m.data, m.stream);
      } else if (m.type === "event") {
        timeline.append(eventItem(m));
        reload();
      } else if (m.type === "end") {
        message.textContent = "the job has ended";
        reload();
      } else if (m.type === "error") {
        message.textContent = m.message;
      }
    }, (event) => {
      if (!stopped && event.code === 1013) message.textContent = "the stream was interrupted; reload to follow again";
    });
  }).catch((err) => {
    const text = err instanceof ApiError && err.status === 404 ? `There is no job #${id} you may see.` : err.message;
    fill(main, h("section", { class: "panel" }, h("h1", null, "Job not found"), h("p", { class: "error", role: "alert" }, text)));
  });

  return () => { stopped = true; if (ws) ws.close(); };
}

function actions(job, message) {
  const live = LIVE.includes(job.state);
  const cancel = h("button", {
    type: "button", class: "danger", disabled: !live,
    onclick: async () => {
      cancel.disabled = true;
      try {
        const result = await post(`/api/v1/jobs/${job.id}/cancel`);
        message.textContent = `cancel requested: ${result.state}`;
      } catch (err) {
        message.textContent = err.message;
        cancel.disabled = false;
      }
    },
  }, "Cancel");
  // There is no retry endpoint: retry submits the same spec again as a new job.
  const retry = h("button", {
    type: "button", disabled: live,
    title: "Submit the same spec again as a new job",
    onclick: async () => {
      try {
        const submitted = await api("POST", "/api/v1/jobs", resubmission(job));
        location.hash = `#/jobs/${submitted.id}`;
      } catch (err) {
        message.textContent = err.message;
      }
    },
  }, "Retry");
  return h("span", { class: "actions" }, cancel, retry);
}

/** The job's spec for a new submit: without its record's fields, its idempotency key, or
 * the o11n.* labels that would tie it to a pipeline or service. */
export function resubmission(job) {
  const spec = {};
  for (const [key, value] of Object.entries(job)) {
    if (!JOB_ONLY.includes(key) && value !== null) spec[key] = value;
  }
  spec.labels = Object.fromEntries(Object.entries(job.labels || {}).filter(([k]) => !k.startsWith("o11n.")));
  spec.labels["retry-of"] = String(job.id);
  return spec;
}

function factsOf(job) {
  const now = Date.now() / 1000;
  const took = (job.finished_at || now) - job.created_at;
  return h("dl", { class: "facts-list" },
    fact("tenant", job.tenant),
    fact("submitted", when(job.created_at)),
    fact(job.finished_at ? "took" : "for", duration(took)),
    fact("attempt", String(job.attempt)),
    job.exit_code !== null ? fact("exit code", String(job.exit_code)) : null,
    job.reason ? fact("reason", job.reason) : null,
    job.labels && job.labels["o11n.pipeline"]
      ? fact("pipeline", h("a", { href: `#/pipelines/${job.labels["o11n.pipeline"]}` }, `p${job.labels["o11n.pipeline"]}`))
      : null);
}

function fact(term, value) {
  return [h("dt", null, term), h("dd", null, value)];
}

function specOf(job) {
  const command = Array.isArray(job.command) ? job.command.map(quote).join(" ") : job.command;
  const r = job.resources || {};
  return h("dl", { class: "spec" },
    fact("command", h("pre", { class: "command" }, command)),
    fact("tags", chips(job.tags)),
    fact("resources", `${r.cpu} cpu · ${r.memory ? `${bytes(r.memory)}B` : "any"} memory${r.gpu ? ` · ${r.gpu} gpu` : ""}`),
    fact("timeout", duration(job.timeout)),
    fact("priority", String(job.priority)),
    fact("retry", `${job.retry.max_attempts} attempts on ${job.retry.when.join(", ") || "nothing"}`),
    job.image ? fact("image", h("code", null, job.image)) : null,
    fact("labels", chips(job.labels)),
    Object.keys(job.env || {}).length ? fact("env", chips(job.env)) : null);
}

function quote(arg) {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`;
}

function attemptsTable(job) {
  const rows = (job.attempts || []).map((a) => [
    String(a.number), a.worker, a.outcome ? badge(a.outcome) : badge(a.state),
    a.exit_code !== null ? String(a.exit_code) : (a.signal ? `signal ${a.signal}` : ""),
    when(a.started_at || a.assigned_at),
    duration(((a.ended_at || Date.now() / 1000) - (a.started_at || a.assigned_at))),
    a.reason || "",
  ]);
  return table("Attempts", ["#", "worker", "outcome", "exit", "started", "took", "reason"], rows, "not started yet");
}

function eventItem(e) {
  return h("li", { class: `event state-${e.state}` },
    h("time", null, when(e.at)), " ", badge(e.state),
    e.previous ? h("span", { class: "muted" }, ` from ${e.previous}`) : null,
    e.attempt ? ` · attempt ${e.attempt}` : null,
    e.worker ? ` · on ${e.worker}` : null,
    e.reason ? h("span", { class: "reason" }, ` · ${e.reason}`) : null);
}

async function downloadLog(id, message) {
  let attempt = 0;
  let seq = -1;
  const parts = [];
  try {
    for (;;) {
      const page = await get(`/api/v1/jobs/${id}/logs?after_attempt=${attempt}&after_seq=${seq}&limit=1000`);
      for (const chunk of page.chunks) parts.push(chunk.data);
      if (page.chunks.length < 1000) break;
      attempt = page.next_attempt;
      seq = page.next_seq;
    }
  } catch (err) {
    message.textContent = err.message;
    return;
  }
  const url = URL.createObjectURL(new Blob(parts, { type: "text/plain" }));
  const link = h("a", { href: url, download: `job-${id}.log` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
