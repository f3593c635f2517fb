// The dashboard's shell: sign-in, navigation and hash routes to the pages.

import { ApiError, clearToken, get, setToken, token } from "./api.js";
import { fill, h } from "./dom.js";
import * as jobPage from "./job.js";
import * as overviewPage from "./overview.js";
import * as pipelinePage from "./pipeline.js";
import * as poolPage from "./pool.js";

const main = document.getElementById("main");
const ROUTES = [
  [/^#?\/?$/, "overview", () => overviewPage],
  [/^#\/pool$/, "pool", () => poolPage],
  [/^#\/jobs\/(\d+)$/, "job", () => jobPage],
  [/^#\/pipelines\/(\d+)$/, "pipeline", () => pipelinePage],
];

let cleanup = null;
let session = null; // {role, tenant} of the signed-in token

async function route() {
  if (cleanup) { cleanup(); cleanup = null; }
  if (!token()) return showSignIn();
  if (!session) {
    try {
      session = await get("/api/v1/ui/summary");
    } catch (err) {
      return showSignIn(err instanceof ApiError && err.status === 401 ? "That token is not valid." : err.message);
    }
  }
  showWho();
  const hash = location.hash || "#/";
  for (const [pattern, name, page] of ROUTES) {
    const match = hash.match(pattern);
    if (!match) continue;
    for (const link of document.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    document.title = `o11n · ${name}`;
    main.dataset.page = name;
    cleanup = page().render(main, { id: match[1] ? Number(match[1]) : null, session }) || null;
    return;
  }
  fill(main, h("section", { class: "panel" }, h("h1", null, "Not found"), h("p", null, "No such page.")));
}

function showWho() {
  const who = document.getElementById("who");
  who.textContent = session.role === "tenant" ? `tenant ${session.tenant}` : session.role;
  document.getElementById("sign-out").hidden = false;
  document.body.dataset.role = session.role;
}

function showSignIn(message) {
  session = null;
  main.dataset.page = "signin";
  document.title = "o11n · sign in";
  document.getElementById("who").textContent = "";
  document.getElementById("sign-out").hidden = true;
  const input = h("input", {
    id: "token", name: "token", type: "password", autocomplete: "off", required: true,
    spellcheck: "false", placeholder: "o11n_adm_… or o11n_ten_…",
  });
  const form = h("form", { class: "signin panel", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in to o11n"),
    h("p", null, "Paste an API token: the admin token (",
      h("code", null, "DATA/admin-token"), ") or a tenant's (", h("code", null, "o11n tenants create"),
      "). It is kept in this tab only."),
    h("label", { for: "token" }, "API token"),
    input,
    message ? h("p", { class: "error", role: "alert" }, message) : null,
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setToken(input.value.trim());
    route();
  });
  fill(main, form);
  input.focus();
}

document.getElementById("sign-out").addEventListener("click", () => {
  clearToken();
  session = null;
  route();
});

document.getElementById("goto").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = event.target.elements.id.value.trim();
  const pipeline = value.match(/^p(?:ipeline)?\s*#?(\d+)$/i);
  const job = value.match(/^#?(\d+)$/);
  if (pipeline) location.hash = `#/pipelines/${pipeline[1]}`;
  else if (job) location.hash = `#/jobs/${job[1]}`;
});

window.addEventListener("hashchange", route);
route();
