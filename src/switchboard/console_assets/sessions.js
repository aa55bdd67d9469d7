// Sessions: the filtered list, and one session's transcript with the actions the role allows.
import { fileCards } from "./files.js";
import { interactionCards } from "./interaction_cards.js";
import { withQuery } from "./api.js";
import { badge, cell, fields, fill, h, input, json, ms, select, table, when } from "./dom.js";

const STATES = ["live", "idle", "paused", "ended"];
const FILTERS = ["agent", "state", "user", "source", "tag", "account", "started_after",
  "started_before", "include_archived"];

/** `datetime-local` input value → an ISO instant for the API. */
function instant(local) {
  const date = local ? new Date(local) : null;
  return date && !Number.isNaN(date.getTime()) ? date.toISOString() : "";
}

function sessionRow(s) {
  return h("tr", { "data-session-id": s.id, "data-state": s.state },
    cell("Started", h("a", { href: `#/sessions/${encodeURIComponent(s.id)}`,
      "aria-label": `Session ${s.id}` }, when(s.started_at, { short: true })),
    h("div", { class: "muted mono small", text: s.id })),
    cell("Agent", s.agent),
    cell("State", badge(s.state, "state")),
    cell("User", h("div", { text: s.user_name || s.user_id || "—" }),
      s.user_name && s.user_id ? h("div", { class: "muted mono small", text: s.user_id }) : null),
    cell("Source / account", h("div", { text: s.source }),
      h("div", { class: "muted", text: s.account || "" })),
    cell("Turns", String(s.turn_count ?? 0)),
    cell("Last activity", when(s.last_activity_at, { short: true })));
}

export async function sessionsView(main, ctx) {
  const p = ctx.params;
  const filters = Object.fromEntries(FILTERS.map((key) => [key, p.get(key) || ""]));
  const meta = await ctx.meta().catch(() => null);
  const sources = meta ? meta.providers.map((provider) => provider.name) : [];
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter sessions" },
    select("agent", "Agent", meta ? meta.agents.map((a) => a.name) : [], filters.agent),
    select("state", "State", STATES, filters.state),
    input("user", "User id", filters.user),
    select("source", "Source", sources, filters.source),
    select("tag", "Tag", ["live", "test"], filters.tag),
    select("account", "Account", meta ? meta.accounts.map((a) => a.name) : [], filters.account),
    input("started_after", "Started after", filters.started_after, { type: "datetime-local" }),
    input("started_before", "Started before", filters.started_before,
      { type: "datetime-local" }),
    h("label", { class: "field check", for: "f-include_archived" },
      h("input", { id: "f-include_archived", name: "include_archived", type: "checkbox",
        value: "true", checked: filters.include_archived === "true" }),
      h("span", { text: "Include archived" })),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary", text: "Apply" }),
      h("button", { type: "button", text: "Clear", onclick: () => ctx.navigate("/sessions") })));
  const apply = () => ctx.navigate("/sessions", Object.fromEntries(new FormData(form)));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  form.querySelectorAll("select, input[type=checkbox]")
    .forEach((el) => el.addEventListener("change", apply));

  const grid = table(["Started", "Agent", "State", "User", "Source / account", "Turns",
    "Last activity"], [], { caption: "Sessions, newest first", empty: "No sessions match." });
  const more = h("button", { type: "button", hidden: true, text: "Load older sessions" });
  fill(main, h("h1", { tabindex: "-1", text: "Sessions" }), form, grid.wrap, more);

  const query = { ...filters, started_after: instant(filters.started_after),
    started_before: instant(filters.started_before) };
  let cursor = null;
  let shown = 0;
  async function load(reset = false) {
    const data = await ctx.api(withQuery("/api/sessions", { ...query, limit: reset
      ? Math.max(shown, 50) : 50, cursor: reset ? null : cursor }));
    if (reset) grid.body.replaceChildren();
    data.sessions.forEach((s) => grid.body.append(sessionRow(s)));
    shown = grid.body.children.length;
    cursor = data.next_cursor;
    more.hidden = !cursor;
    grid.none.hidden = shown > 0;
  }
  more.addEventListener("click", () => load().catch((e) => ctx.notify(e.message, "error")));
  await load();
  let timer = null;
  return {
    onEvent(event) {
      if (!event.name.startsWith("session.") && event.name !== "turn.delivered") return;
      clearTimeout(timer);
      timer = setTimeout(() => load(true).catch(() => {}), 250);
    },
    dispose: () => clearTimeout(timer),
  };
}

// --- one session -------------------------------------------------------------------------

function preview(value, limit = 80) {
  const text = typeof value === "string" ? value : JSON.stringify(value ?? {});
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

function activity(entry) {
  const d = entry.data || {};
  if (d.type === "tool_call") {
    return h("details", { class: "tool" },
      h("summary", {}, h("span", { class: "tag", text: "tool" }), " ",
        h("strong", { class: "mono", text: d.name || entry.text }), " ",
        badge(d.status || "unknown", "tool"), " ",
        h("span", { class: "muted", text: d.duration_ms === undefined ? "" : ms(d.duration_ms) }),
        " ", h("code", { class: "args", text: preview(d.arguments) })),
      h("h3", { text: "Arguments" }), h("pre", { class: "json", text: json(d.arguments ?? {}) }),
      d.result !== undefined || d.output !== undefined ? [h("h3", { text: "Result" }),
        h("pre", { class: "json", text: json(d.result ?? d.output) })] : null);
  }
  const note = d.text || d.summary || entry.text;
  return h("details", { class: "tool" },
    h("summary", {}, h("span", { class: "tag", text: d.type || "activity" }), " ",
      h("span", { class: "muted", text: preview(note) })),
    h("pre", { class: "json", text: typeof note === "string" && d.type === "reasoning"
      ? note : json(d) }));
}

function entryItem(entry) {
  const d = entry.data || {};
  let body;
  if (entry.role === "system" && d.to) {
    body = h("p", { class: "system" }, "State ", badge(d.from, "state"), " → ",
      badge(d.to, "state"), h("span", { class: "muted",
        text: ` (${d.cause}${d.actor ? `, by ${d.actor}` : ""})` }));
  } else if (entry.role === "system") {
    body = h("p", { class: "system", text: entry.text });
  } else if (entry.role === "activity") {
    body = activity(entry);
  } else if (entry.role === "interaction" && d.options && d.options.length) {
    body = h("p", { class: "message" }, entry.text, h("span", { class: "muted",
      text: ` (${d.options.map((o) => o.label).join(" / ")})` }));
  } else {
    body = h("p", { class: "message", text: entry.text });
  }
  const label = { user: "User", agent: "Agent", activity: "Activity", system: "System",
    interaction: d.state ? "Answer" : "Asks people",
    operator: `Operator ${d.operator || ""}`.trim() };
  return h("li", { class: `entry role-${entry.role}`, "data-role": entry.role,
    "data-entry": entry.id },
    h("div", { class: "entry-head" }, h("strong", { text: label[entry.role] || entry.role }),
      d.held ? h("span", { class: "muted", text: " (held while paused)" }) : null,
      d.model ? h("span", { class: "muted", text: ` · ${d.model}` }) : null, " ", when(entry.at),
      entry.delivery ? [" ", badge(entry.delivery.status === "failed" ? "not delivered"
        : entry.delivery.status), entry.delivery.error
        ? h("span", { class: "delivery-error", text: ` ${entry.delivery.error}` }) : null]
        : null,
      entry.turn_id ? [" ", h("a", { href: `#/turns/${encodeURIComponent(entry.turn_id)}`,
        class: "small", text: "turn" })] : null),
    body);
}

function actionBar(session, ctx, act, agents) {
  const open = session.state !== "ended";
  const buttons = [];
  const button = (text, onclick, extra = "") => h("button", { type: "button",
    class: `action ${extra}`, "data-action": text.toLowerCase(), text, onclick });
  const forPeople = session.state === "paused" && (session.taken_over_by || session.handoff);
  if (ctx.may("operator") && open) {
    if (forPeople) {
      const replay = h("input", { id: "replay-missed", type: "checkbox" });
      buttons.push(button("Hand back", () => act("handback",
        { replay_missed: replay.checked }), "primary"),
      h("label", { class: "check", for: "replay-missed" }, replay,
        h("span", { text: " give the agent the messages it missed" })));
    } else if (session.state === "paused") buttons.push(button("Resume", () => act("resume")));
    else buttons.push(button("Pause", () => act("pause")));
    if (!session.taken_over_by) buttons.push(button("Take over", () => act("takeover")));
    buttons.push(button("End", () => {
      if (confirm(`End session ${session.id}? The next message starts a new one.`)) act("end");
    }, "danger"));
    const others = agents.filter((name) => name !== session.agent);
    if (others.length) {
      const pick = h("select", { id: "transfer-agent", "aria-label": "Transfer to agent" },
        others.map((name) => h("option", { value: name, text: name })));
      buttons.push(h("span", { class: "transfer" }, pick,
        button("Transfer", () => act("transfer", { agent: pick.value }))));
    }
  }
  if (ctx.may("admin") && !open) {
    buttons.push(button("Delete", () => {
      if (confirm(`Delete session ${session.id} and its transcript? This cannot be undone.`)) {
        act("delete");
      }
    }, "danger"));
  }
  if (!buttons.length) return null;
  return h("div", { class: "action-bar", role: "group", "aria-label": "Session actions" },
    buttons);
}

/** Why the agent is not answering, when people have the session. */
function takeoverNote(s) {
  if (s.state !== "paused") return null;
  if (s.taken_over_by) {
    return h("p", { class: "notice takeover-note", role: "status",
      text: `Agent paused: taken over by ${s.taken_over_by}. The person's messages wait here; `
        + "reply below, then hand the session back." });
  }
  if (s.handoff) {
    return h("p", { class: "notice takeover-note", role: "status",
      text: `The agent asked for a person: ${s.handoff.reason}` });
  }
  return null;
}

/** The reply box: kept across live redraws, so a reply being written is never lost. */
function replyBox(path, ctx, redraw) {
  const field = h("textarea", { id: "operator-reply", name: "text", rows: "3", required: true });
  const send = h("button", { type: "submit", class: "primary", text: "Reply" });
  const form = h("form", { class: "reply-box", "aria-label": "Operator reply",
    onsubmit: async (event) => {
      event.preventDefault();
      const text = field.value.trim();
      if (!text) return;
      send.disabled = true;
      try {
        const answer = await ctx.api(`${path}/reply`, { method: "POST", body: { text } });
        field.value = "";
        const status = answer.turn ? answer.turn.delivery_status || answer.turn.status : "sent";
        ctx.notify(`reply ${status}`);
        await redraw();
      } catch (error) {
        ctx.notify(error.message, "error");
      } finally {
        send.disabled = false;
      }
    } },
  h("label", { for: "operator-reply", text: "Reply as the bot" }), field,
  h("div", { class: "actions" }, send));
  return form;
}

export async function sessionView(main, ctx, id) {
  const meta = await ctx.meta().catch(() => null);
  const agents = meta ? meta.agents.map((a) => a.name) : [];
  const path = `/api/sessions/${encodeURIComponent(id)}`;
  let timer = null;
  let gone = false;
  const reply = ctx.may("operator") ? replyBox(path, ctx, () => draw()) : null;

  async function act(action, body) {
    if (action === "delete") {
      gone = true; // no redraw of a session that is about to vanish
      clearTimeout(timer);
    }
    try {
      const answer = action === "delete"
        ? await ctx.api(path, { method: "DELETE" })
        : await ctx.api(`${path}/${action}`, { method: "POST", body: body || {} });
      ctx.notify(answer.message || "done");
      if (action === "delete") return ctx.navigate("/sessions", {});
      await draw();
    } catch (error) {
      gone = false;
      ctx.notify(error.message, "error");
    }
  }

  async function draw() {
    const s = await ctx.api(path);
    const opened = new Set([...main.querySelectorAll(".transcript details[open]")]
      .map((el) => el.closest("li").dataset.entry));
    const focused = main.contains(document.activeElement) ? document.activeElement : null;
    const focusAction = focused && focused.dataset.action;
    fill(main,
      h("p", { class: "crumbs" }, h("a", { href: "#/sessions", text: "← Sessions" })),
      h("h1", { tabindex: "-1" }, "Session ", h("span", { class: "mono", text: s.id }), " ",
        badge(s.state, "state")),
      actionBar(s, ctx, act, agents),
      takeoverNote(s),
      fields([
        ["Agent", s.agent], ["Binding", s.binding],
        ["Source / account", [s.source, s.account].filter(Boolean).join(" · ")],
        ["User", s.user_name ? `${s.user_name} (${s.user_id})` : s.user_id],
        ["Scope", h("span", { class: "mono", text: s.scope_key })],
        ["Started", when(s.started_at)], ["Last activity", when(s.last_activity_at)],
        ["Ended", s.ended_at ? h("span", {}, when(s.ended_at), ` (${s.end_cause})`) : null],
        ["Turns", String(s.turn_count ?? 0)],
        ["Turns of this session", h("a", { href: `#${withQuery("/turns", { q: s.id })}`,
          text: "show in the turns table" })],
        ["Model override", s.model_override],
        ["Transferred to", s.transferred_to],
        ["Continues", s.parent_session_id ? h("a", {
          href: `#/sessions/${encodeURIComponent(s.parent_session_id)}`,
          text: s.parent_session_id }) : null],
      ]),
      h("section", { "aria-labelledby": "transcript-h" },
        h("h2", { id: "transcript-h", text: "Transcript" }),
        s.transcript.length ? h("ol", { class: "transcript" }, s.transcript.map(entryItem))
          : h("p", { class: "muted", text: "No messages yet." })),
      interactionCards(s.interactions),
      s.state !== "ended" ? reply : null,
      fileCards(s.files));
    for (const li of main.querySelectorAll(".transcript li")) {
      const details = li.querySelector("details");
      if (details && opened.has(li.dataset.entry)) details.open = true;
    }
    if (focused) { // a live redraw keeps the keyboard where it was
      const kept = reply && reply.contains(focused) && main.contains(focused);
      const again = kept ? focused : focusAction
        ? main.querySelector(`[data-action="${focusAction}"]`)
          || main.querySelector(".action-bar button")
        : null;
      (again || main.querySelector("h1")).focus();
    }
  }
  await draw();
  return {
    onEvent(event) {
      if (event.data.session_id !== id || gone) return;
      clearTimeout(timer);
      if (event.name === "session.deleted") {
        gone = true;
        ctx.notify(`Session ${id} was deleted by ${event.data.actor || "an admin"}.`);
        return;
      }
      timer = setTimeout(() => draw().catch(() => {}), 150);
    },
    dispose() {
      gone = true;
      clearTimeout(timer);
    },
  };
}
