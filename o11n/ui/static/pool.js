// The pool: agents with their offers, workers with drain / disable / enable (admin),
// services with tasks, endpoints and latest metrics, the autoscaler's decisions and cost.

import { ApiError, get, post } from "./api.js";
import { ago, badge, bytes, chips, fill, h, jobLink, table, when } from "./dom.js";

const POLL_MS = 3000;

export function render(main, { session }) {
  const message = h("p", { class: "muted", role: "status", "aria-live": "polite" });
  const agents = h("section", { class: "panel" }, h("h2", null, "Agents and offers"));
  const services = h("section", { class: "panel" }, h("h2", null, "Services"));
  const autoscale = h("section", { class: "panel" }, h("h2", null, "Autoscaler"));
  const cost = h("section", { class: "panel" }, h("h2", null, "Cost"));
  fill(main, h("h1", { class: "page-title" }, "Pool"), message, agents, services,
    h("div", { class: "columns" }, h("div", { class: "col-main" }, autoscale), h("div", { class: "col-side" }, cost)));

  let stopped = false;
  const admin = session.role === "admin";
  const act = async (path, what) => {
    try {
      await post(path);
      message.textContent = what;
    } catch (err) {
      message.textContent = err.message;
    }
    refresh();
  };
  const refresh = async () => {
    const [agentList, workerList, serviceList, events, costReport] = await Promise.all([
      get("/api/v1/agents").catch((e) => e),
      get("/api/v1/workers").catch((e) => e),
      get("/api/v1/services").catch((e) => e),
      get("/api/v1/autoscale/events").catch((e) => e),
      get("/api/v1/cost?by=tenant").catch((e) => e),
    ]);
    if (stopped) return;
    fill(agents, h("h2", null, "Agents and offers"), agentsPart(agentList, workerList, admin, act));
    fill(services, h("h2", null, "Services"), await servicesPart(serviceList));
    fill(autoscale, h("h2", null, "Autoscaler"), autoscalePart(events));
    fill(cost, h("h2", null, "Cost by tenant"), costPart(costReport));
  };
  refresh();
  const timer = setInterval(refresh, POLL_MS);
  return () => { stopped = true; clearInterval(timer); };
}

function refused(err, what) {
  if (err instanceof ApiError && err.status === 403) return h("p", { class: "muted" }, `${what} are shown to admin tokens.`);
  return h("p", { class: "error" }, err.message);
}

function resources(r, capacity) {
  return `${r.cpu}/${capacity.cpu} cpu · ${bytes(r.memory)}/${bytes(capacity.memory)}B${capacity.gpu ? ` · ${r.gpu}/${capacity.gpu} gpu` : ""}`;
}

function agentsPart(agentList, workerList, admin, act) {
  if (agentList instanceof Error) return refused(agentList, "The pool's agents");
  const running = new Map(workerList instanceof Error ? [] : workerList.workers.map((w) => [w.name, w]));
  const rows = agentList.agents.map((a) => {
    const worker = running.get(a.name);
    const state = !a.online ? "offline" : a.draining ? "draining" : a.disabled ? "disabled" : "online";
    const buttons = h("span", { class: "actions" },
      h("button", {
        type: "button", disabled: !admin || !a.online || a.draining, "aria-label": `Drain ${a.name}`,
        onclick: () => act(`/api/v1/workers/${encodeURIComponent(a.name)}/drain`, `${a.name} is draining`),
      }, "Drain"),
      a.disabled
        ? h("button", {
          type: "button", disabled: !admin, "aria-label": `Enable ${a.name}`,
          onclick: () => act(`/api/v1/agents/${encodeURIComponent(a.name)}/enable`, `${a.name} is enabled`),
        }, "Enable")
        : h("button", {
          type: "button", disabled: !admin, "aria-label": `Disable ${a.name}`,
          onclick: () => act(`/api/v1/agents/${encodeURIComponent(a.name)}/disable`, `${a.name} is disabled`),
        }, "Disable"));
    return [
      h("strong", null, a.name), a.ip, badge(state),
      resources(a.free, a.capacity),
      h("code", null, a.ports || "none"),
      chips(a.attributes), chips(a.tags),
      worker ? h("span", null, worker.running.length ? worker.running.map((id) => [jobLink(id), " "]) : "idle") : "",
      worker ? ago(worker.last_seen) : "",
      buttons,
    ];
  });
  return table("Agents", ["agent", "ip", "state", "free / capacity", "free ports", "attributes", "tags", "running", "last seen", "actions"],
    rows, "no agents have registered");
}

async function servicesPart(serviceList) {
  if (serviceList instanceof Error) return refused(serviceList, "Services");
  if (!serviceList.services.length) return h("p", { class: "muted" }, "no services");
  const parts = [];
  for (const svc of serviceList.services) {
    const base = `/api/v1/services/${svc.namespace}/${svc.name}`;
    const metrics = await get(`${base}/metrics`).catch(() => ({ tasks: [] }));
    const byTask = new Map(metrics.tasks.map((t) => [t.task, t]));
    const rows = svc.tasks.map((t) => {
      const m = byTask.get(t.index);
      return [
        String(t.index), badge(t.state), t.agent || "", t.ip || "",
        Object.entries(t.ports).map(([n, p]) => `${n}:${p}`).join(", "),
        t.job_id ? jobLink(t.job_id) : "", String(t.restarts), t.last_exit || t.reason || "",
        m ? metricsCell(m) : "",
      ];
    });
    parts.push(h("article", { class: "service" },
      h("h3", null, `${svc.namespace}/${svc.name} `, h("span", { class: "muted" }, `${svc.running}/${svc.instances} running · ${svc.tenant} · version ${svc.version}`)),
      svc.reason ? h("p", { class: "reason" }, svc.reason) : null,
      table(`Tasks of ${svc.name}`, ["task", "state", "agent", "ip", "endpoints", "job", "restarts", "last exit", "metrics"], rows, "no tasks")));
  }
  return parts;
}

const SHOWN_SAMPLES = 3;

// The latest scrape of a task: up or down, its first samples (all of them on hover).
function metricsCell(m) {
  const sample = (s) => {
    const labels = Object.entries(s.labels).map(([k, v]) => `${k}="${v}"`).join(",");
    return `${s.name}${labels ? `{${labels}}` : ""} ${s.value}`;
  };
  const all = m.samples.map(sample);
  const more = all.length > SHOWN_SAMPLES ? ` · ${all.length - SHOWN_SAMPLES} more` : "";
  const shown = m.up ? all.slice(0, SHOWN_SAMPLES).join(" · ") : m.error || "";
  return h("span", { class: "metrics", title: all.join("\n") },
    badge(m.up ? "up" : "down"), ` ${shown}${more} · ${when(m.at)}`);
}

function autoscalePart(events) {
  if (events instanceof ApiError && events.status === 404) return h("p", { class: "muted", id: "autoscale-off" }, "autoscaling is off");
  if (events instanceof Error) return refused(events, "The autoscaler's decisions");
  const rows = events.events.slice(-30).reverse().map((e) => [
    when(e.at), e.kind, e.worker || "", e.instance_type || "", e.reason || "",
  ]);
  return table("Autoscaler events", ["at", "what", "worker", "type", "reason"], rows, "no decisions yet");
}

function costPart(report) {
  if (report instanceof Error) return refused(report, "Costs");
  const rows = report.lines.map((l) => [l.key, String(l.attempts), amount(l.hours), amount(l.cost)]);
  return [table("Cost by tenant", ["tenant", "attempts", "hours", "cost"], rows, "no priced attempts (set a worker's price attribute)"),
    h("p", { class: "muted" }, "total ", amount(report.total))];
}

// Two decimals; what would show as 0.00 (a short job on a spot instance costs fractions
// of a cent) shows as "< 0.01", its exact value on hover.
function amount(x) {
  return x > 0 && x < 0.005 ? h("span", { title: String(x) }, "< 0.01") : x.toFixed(2);
}
