// The console shell: sign-in, the hash router, the live event stream, and who may do what.
import { ApiError, LiveEvents, api, token, unauthorized, withQuery } from "./api.js";
import { bindingsView } from "./bindings.js";
import { fill, h } from "./dom.js";
import { hooksView } from "./hooks.js";
import { operatorsView } from "./operators.js";
import { pairingView } from "./pairing.js";
import { sessionView, sessionsView } from "./sessions.js";
import { turnView, turnsView } from "./turns.js";
import { waitingView } from "./interactions.js";

const ROLES = ["viewer", "operator", "admin"];
const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const liveState = document.getElementById("live");
const signOutButton = document.getElementById("signout");
const notice = document.getElementById("notice");

const app = { me: null, live: null, view: null, path: null, meta: null, rendering: 0 };

function route() {
  const raw = location.hash.replace(/^#/, "") || "/turns";
  const [path, query = ""] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map((part) => decodeURIComponent(part));
  return { path, parts, params: new URLSearchParams(query) };
}

/** Go to `path` (e.g. "/turns") with `params` in the hash, so the link can be shared. */
function navigate(path, params = {}) {
  const target = `#${withQuery(path, params)}`;
  if (location.hash === target) render();
  else location.hash = target;
}

/** Tell the operator something: an action's answer, or an error in the API's own words. */
function notify(message, kind = "info") {
  fill(notice, h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" },
    message, " ", h("button", { type: "button", class: "link", text: "Dismiss",
      onclick: () => fill(notice) })));
}

const context = {
  api,
  navigate,
  notify,
  may: (role) => app.me && ROLES.indexOf(app.me.role) >= ROLES.indexOf(role),
  /** The loaded bindings, agents and accounts, and the providers this server speaks,
   * fetched once per sign-in (for the filters). */
  meta() {
    if (!app.meta) {
      app.meta = Promise.all([api("/api/bindings"), api("/api/providers")])
        .then(([bindings, known]) => ({ ...bindings, providers: known.providers }))
        .catch((error) => {
          app.meta = null;
          throw error;
        });
    }
    return app.meta;
  },
};

const VIEWS = {
  turns: (parts) => (parts[1] ? (el, ctx) => turnView(el, ctx, parts[1]) : turnsView),
  sessions: (parts) => (parts[1] ? (el, ctx) => sessionView(el, ctx, parts[1]) : sessionsView),
  bindings: () => bindingsView,
  operators: () => operatorsView,
  pairing: () => pairingView,
  waiting: () => waitingView,
  webhooks: () => hooksView,
};

async function render() {
  if (!app.me) return;
  const { path, parts, params } = route();
  const pathChanged = path !== app.path;
  app.path = path;
  if (app.view && app.view.dispose) app.view.dispose();
  app.view = null;
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.section === parts[0]) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const pick = VIEWS[parts[0]];
  if (!pick) {
    fill(main, h("h1", { tabindex: "-1", text: "Not found" }),
      h("p", {}, "No such page. ", h("a", { href: "#/turns", text: "Go to turns" })));
    return;
  }
  const ticket = ++app.rendering;
  main.setAttribute("aria-busy", "true");
  try {
    // Each view draws into a root of its own: a late redraw of a view already left writes
    // into a detached element, never over the page that replaced it.
    const root = h("div", { class: "view" });
    fill(main, root);
    const view = await pick(parts)(root, { ...context, params, parts, me: app.me });
    if (ticket !== app.rendering) {
      if (view && view.dispose) view.dispose();
      return;
    }
    app.view = view || null;
  } catch (error) {
    if (ticket !== app.rendering) return;
    const message = error instanceof ApiError ? error.message : String(error);
    fill(main, h("h1", { tabindex: "-1", text: "Could not load this page" }),
      h("p", { class: "notice error", role: "alert", text: message }));
  } finally {
    if (ticket === app.rendering) main.removeAttribute("aria-busy");
  }
  if (pathChanged && ticket === app.rendering) {
    const heading = main.querySelector("h1");
    if (heading) heading.focus({ preventScroll: true });
  }
}

function showSignIn(message) {
  app.me = null;
  nav.hidden = true;
  signOutButton.hidden = true;
  fill(who);
  fill(liveState);
  const field = h("input", { id: "token", name: "token", type: "password", required: true,
    autocomplete: "current-password", spellcheck: "false" });
  const error = h("p", { class: "notice error", role: "alert", hidden: !message,
    text: message || "" });
  const form = h("form", { class: "signin", onsubmit: async (event) => {
    event.preventDefault();
    const secret = field.value.trim();
    try {
      const me = await api("/api/me", { secret });
      token.set(secret);
      start(me);
    } catch (failure) {
      error.hidden = false;
      error.textContent = failure instanceof ApiError && failure.status === 401
        ? "That token is not an operator token of this Switchboard." : String(failure.message);
      field.focus();
    }
  } },
  h("h1", { tabindex: "-1", text: "Sign in" }),
  h("p", {}, "Paste an operator token from the operators section of ",
    h("code", { text: "bindings.yaml" }), " (or the admin token ",
    h("code", { text: "switchboard serve" }), " printed on first start)."),
  h("label", { for: "token", text: "Operator token" }), field, error,
  h("button", { type: "submit", class: "primary", text: "Sign in" }));
  fill(main, form);
  field.focus();
}

function start(me) {
  app.me = me;
  app.meta = null;
  app.path = null;
  nav.hidden = false;
  for (const link of nav.querySelectorAll("a[data-role]")) {
    link.hidden = !context.may(link.dataset.role);
  }
  signOutButton.hidden = false;
  fill(who, h("span", { class: "who-name", text: me.name }), " ",
    h("span", { class: `role role-${me.role}`, text: me.role }),
    me.agents ? h("span", { class: "muted", text: ` (agents: ${me.agents.join(", ")})` }) : null);
  if (app.live) app.live.stop();
  app.live = new LiveEvents({
    lastId: me.last_event_id || 0,
    onEvent: (event) => app.view && app.view.onEvent && app.view.onEvent(event),
    onState: (state) => {
      liveState.dataset.state = state;
      liveState.textContent = state === "live" ? "Live" : "Reconnecting…";
    },
  });
  app.live.start();
  render();
}

function signOut(message) {
  if (app.live) app.live.stop();
  app.live = null;
  if (app.view && app.view.dispose) app.view.dispose();
  app.view = null;
  token.clear();
  fill(notice);
  showSignIn(message);
}

unauthorized.add((message) => {
  if (app.me) signOut(`Signed out: ${message}`);
});
signOutButton.addEventListener("click", () => signOut());
window.addEventListener("hashchange", render);

(async function boot() {
  const saved = token.get();
  if (!saved) return showSignIn();
  try {
    start(await api("/api/me", { secret: saved }));
  } catch {
    token.clear();
    showSignIn("Your session ended; sign in again.");
  }
})();
