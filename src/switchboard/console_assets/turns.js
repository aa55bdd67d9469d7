// The turns table (live, filtered, shareable) and one turn's story.
import { fileCards } from "./files.js";
import { interactionCards } from "./interaction_cards.js";
import { withQuery } from "./api.js";
import { badge, cell, fields, fill, h, input, json, ms, select, table, when } from "./dom.js";

const STATUSES = ["pending", "held", "delivered", "failed", "ignored", "duplicate", "cancelled", "queued"];
const FILTERS = ["status", "provider", "account", "agent", "q"];
const HEADERS = ["Received", "From", "Message", "Status", "Agent", "Session",
  "Received → delivered"];

/** Collects turn ids for a moment, then fetches each once: a burst of events is one fetch. */
function batcher(fetchOne, apply, delay = 120) {
  const waiting = new Set();
  let timer = null;
  return (id) => {
    waiting.add(id);
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const ids = [...waiting];
      waiting.clear();
      for (const turn of await Promise.all(ids.map((one) => fetchOne(one).catch(() => null)))) {
        if (turn) apply(turn);
      }
    }, delay);
  };
}

function sessionLink(id) {
  return id ? h("a", { href: `#/sessions/${encodeURIComponent(id)}`, class: "mono", text: id })
    : h("span", { class: "muted", text: "—" });
}

/** The first line that says something, for a one-line preview. */
function firstLine(text) {
  return (text || "").split("\n").map((line) => line.trim()).find(Boolean) || "";
}

/** Why a turn needs a look: an ignored turn's reason, a failed one's error. */
function reason(turn) {
  if (turn.status === "ignored") return turn.route_reason;
  if (turn.status === "failed" || turn.delivery_status === "retrying") return turn.error;
  return null;
}

/** From receipt to the provider taking the reply (the whole wait), the agent's part in the
 * title. */
function took(turn) {
  if (!turn.delivered_at) return h("span", { class: "muted", text: "—" });
  const whole = Date.parse(turn.delivered_at) - Date.parse(turn.received_at);
  const agent = turn.agent_ms === null || turn.agent_ms === undefined ? ""
    : `; the agent took ${ms(turn.agent_ms)}`;
  return h("span", { title: `received → delivered${agent}` }, ms(Math.max(whole, 0)));
}

function turnRow(turn) {
  const status = [badge(turn.status)];
  if (turn.delivery_status === "retrying") status.push(" ", badge("retrying"));
  const why = reason(turn);
  return h("tr", { "data-turn-id": turn.id, "data-status": turn.status },
    cell("Received", h("a", { href: `#/turns/${encodeURIComponent(turn.id)}`,
      "aria-label": `Turn ${turn.id}`, title: turn.id }, when(turn.received_at, { short: true }))),
    cell("From", h("span", { class: "from" },
      h("span", { text: turn.sender_name || turn.sender }),
      h("span", { class: "muted", text: " in " }),
      h("span", { class: "mono", text: turn.conversation })),
    h("span", { class: "muted small account", text: ` · ${turn.account}`,
      title: `${turn.provider} account ${turn.account}` })),
    cell("Message", h("span", { class: "preview", title: turn.text,
      text: firstLine(turn.agent_text || turn.text) }),
      why ? h("span", { class: `why why-${turn.status}`, text: why }) : null),
    cell("Status", status),
    cell("Agent", turn.agent || h("span", { class: "muted", text: "—" })),
    cell("Session", sessionLink(turn.session_id)),
    cell("Received → delivered", took(turn)));
}

// What the API's q= matches, for turns that arrive live: an exact id, or every word of the
// search among the words of the text (the server's full-text index decides for listed pages).
function searched(turn, q) {
  const query = q.trim();
  if ([turn.id, turn.session_id, turn.event_id].includes(query)) return true;
  const words = (text) => (text || "").toLowerCase().match(/[\p{L}\p{N}]+/gu) || [];
  const have = new Set(words(turn.text));
  const wanted = words(query);
  return wanted.length > 0 && wanted.every((word) => have.has(word));
}

function newer(a, b) {
  const ta = Date.parse(a.received_at);
  const tb = Date.parse(b.received_at);
  return ta !== tb ? ta > tb : a.id > b.id;
}

export async function turnsView(main, ctx) {
  const filters = Object.fromEntries(FILTERS.map((key) => [key, ctx.params.get(key) || ""]));
  const meta = await ctx.meta().catch(() => null);
  const accounts = meta ? meta.accounts.map((a) => a.name) : [];
  const agents = meta ? meta.agents.map((a) => a.name) : [];
  const providers = meta ? meta.providers.map((p) => p.name) : [];
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter turns" },
    select("status", "Status", STATUSES, filters.status),
    select("provider", "Provider", providers, filters.provider),
    select("account", "Account", accounts, filters.account),
    select("agent", "Agent", agents, filters.agent),
    input("q", "Search", filters.q, { type: "search",
      placeholder: "words of the message, or a turn, session or event id" }),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary", text: "Apply" }),
      h("button", { type: "button", text: "Clear",
        onclick: () => ctx.navigate("/turns", {}) })));
  const apply = () => ctx.navigate("/turns",
    Object.fromEntries([...new FormData(form)].map(([k, v]) => [k, String(v).trim()])));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  form.querySelectorAll("select").forEach((el) => el.addEventListener("change", apply));

  // on a phone the filters fold away (open when one is set); on a laptop they stay open
  const folded = h("details", { class: "filter-fold",
    open: window.matchMedia("(min-width: 721px)").matches
      || FILTERS.some((key) => filters[key]) },
  h("summary", { text: "Filters" }), form);
  const grid = table(HEADERS, [], { caption: "Turns, newest first",
    empty: "No turns match. New ones appear here as they arrive." });
  grid.wrap.classList.add("turns");
  const more = h("button", { type: "button", hidden: true, text: "Load older turns" });
  fill(main, h("h1", { tabindex: "-1", text: "Turns" }),
    h("p", { class: "muted", text: "Every inbound message, newest first. "
      + "New turns and changes appear as they happen." }), folded, grid.wrap, more);

  const rows = new Map();
  let cursor = null;

  function matches(turn) {
    if (filters.q && !searched(turn, filters.q)) return false;
    if (turn.status === "duplicate" && filters.status !== "duplicate") return false;
    return ["status", "provider", "account", "agent"]
      .every((key) => !filters[key] || turn[key] === filters[key]);
  }

  function place(turn, atEnd = false) {
    const old = rows.get(turn.id);
    if (!matches(turn)) {
      if (old) old.tr.remove();
      rows.delete(turn.id);
    } else if (old) {
      const tr = turnRow(turn);
      old.tr.replaceWith(tr);
      rows.set(turn.id, { turn, tr });
    } else {
      const tr = turnRow(turn);
      if (atEnd) grid.body.append(tr);
      else {
        const after = [...grid.body.children].map((el) => rows.get(el.dataset.turnId))
          .find((row) => row && newer(turn, row.turn));
        if (!after && cursor) return; // older than what is shown: it is on a later page
        if (after) after.tr.before(tr);
        else grid.body.append(tr);
        tr.classList.add("fresh");
      }
      rows.set(turn.id, { turn, tr });
    }
    grid.none.hidden = rows.size > 0;
  }

  async function load() {
    const data = await ctx.api(withQuery("/api/turns", { ...filters, cursor, limit: 50 }));
    data.turns.forEach((turn) => place(turn, true));
    cursor = data.next_cursor;
    more.hidden = !cursor;
  }
  more.addEventListener("click", () => load().catch((e) => ctx.notify(e.message, "error")));
  await load();

  const refresh = batcher((id) => ctx.api(`/api/turns/${encodeURIComponent(id)}`),
    (turn) => place(turn));
  return {
    onEvent(event) {
      if (event.name.startsWith("turn.") && event.data.turn_id) refresh(event.data.turn_id);
    },
  };
}

// --- one turn ----------------------------------------------------------------------------

const SESSION_EVENTS = { session_created: "Session created", session_resumed: "Session resumed",
  session_reopened: "Session reopened" };

/** A timeline event in words: [title, detail, tone]. */
function describe(event, turn) {
  const d = event.detail || {};
  switch (event.name) {
    case "received":
      return [`Received from ${turn.provider}`, `event ${d.event_id || turn.event_id} `
        + `on account ${turn.account}`, "info"];
    case "routed":
      return [d.agent ? `Routed to agent ${d.agent}` : "Routed",
        d.reason || (d.binding ? `binding ${d.binding}` : ""), "ok"];
    case "ignored":
      return ["Ignored", d.reason || turn.route_reason, "muted"];
    case "transferred":
      return [`Transferred to agent ${d.agent}`, `from session ${d.from_session}`, "info"];
    case "held":
      return ["Held", d.reason || "the session is paused", "warn"];
    case "refilled":
      return ["Read back into the queue", "it waited in the database while the queue was full",
        "info"];
    case "agent_replied":
      return [`Agent replied in ${ms(d.duration_ms)}`, d.model ? `model ${d.model}` : "", "ok"];
    case "agent_failed":
      return ["Agent failed", d.error, "bad"];
    case "delivered":
      return [`Delivered (attempt ${d.attempt})`,
        `${turn.provider} answered: message ${d.provider_message_id}`, "ok"];
    case "delivery_retry":
      return [`Delivery attempt ${d.attempt} failed; will retry`,
        `${turn.provider} answered: ${d.error}${d.retry_at ? ` — next try ${d.retry_at}` : ""}`,
        "warn"];
    case "delivery_failed":
      return [`Delivery attempt ${d.attempt} failed; giving up`,
        `${turn.provider} answered: ${d.error}`, "bad"];
    case "delivery_retried":
      return ["Delivery retried", `by ${d.by}`, "info"];
    case "duplicate":
      return ["Duplicate", `already received as ${d.original}`, "muted"];
    case "duplicate_received":
      return ["The provider sent it again", `recorded as duplicate ${d.duplicate}`, "muted"];
    case "command":
      return [`Chat command /${d.command}`, d.answer, "info"];
    case "recovered":
      return ["Taken over after a restart", d.from_worker ? `from ${d.from_worker}` : "", "warn"];
    case "file_received":
      return [`File ${d.name} received`, `${d.type}; to fetch from ${turn.provider}`, "info"];
    case "file_stored":
      return [`File ${d.name} stored`, `${d.type}, ${d.size} bytes`, "ok"];
    case "file_skipped":
      return [`File ${d.name} skipped`, d.reason, "warn"];
    case "file_fetch_retry":
      return [`Fetching ${d.name} failed (attempt ${d.attempt}); will retry`, d.error, "warn"];
    case "file_fetch_failed":
      return [`File ${d.name} could not be fetched`, d.reason, "bad"];
    case "file_from_agent":
      return [`The agent made ${d.name}`, d.reason || `${d.type}, ${d.size} bytes`,
        d.reason ? "bad" : "info"];
    case "file_delivered":
      return [`File ${d.name} delivered (attempt ${d.attempt})`,
        d.with_reply ? "attached to the reply" : `${turn.provider} file ${d.provider_file_id}`,
        "ok"];
    case "file_delivery_retry":
      return [`File ${d.name} attempt ${d.attempt} failed; will retry`, d.error, "warn"];
    case "file_delivery_failed":
      return [`File ${d.name} could not be delivered`, d.error, "bad"];
    case "working":
      return ["Showed that the agent is working", `as ${d.shown}`, "info"];
    case "working.failed":
      return ["Could not show that the agent is working", d.error, "warn"];
    case "stream.started":
      return [`Started showing the answer (${d.mode})`, d.refused
        ? `${turn.provider} refused streaming (${d.refused}): posting and editing instead`
        : `message ${d.message_id}`, "info"];
    case "stream.resumed":
      return ["Went on with the message a dead process started", d.how, "warn"];
    case "stream.finished":
      return [`Finished the answer shown live (${d.updates} updates)`, d.how, "ok"];
    case "stream.failed":
      return ["Showing the answer live failed", `${d.error} — ${d.fallback}`, "warn"];
    case "paced":
      return ["Paced", d.why, "info"];
    default:
      if (SESSION_EVENTS[event.name]) return [SESSION_EVENTS[event.name], null, "info"];
      return [event.name.replace(/_/g, " "), Object.keys(d).length ? json(d) : "", "info"];
  }
}

function timeline(turn) {
  const start = Date.parse(turn.received_at);
  return h("ol", { class: "timeline" }, turn.events.map((event) => {
    const [title, detail, tone] = describe(event, turn);
    const d = event.detail || {};
    const offset = Date.parse(event.at) - start;
    return h("li", { class: `step tone-${tone}`, "data-event": event.name },
      h("div", { class: "step-head" }, h("strong", { text: title }), " ",
        when(event.at), h("span", { class: "muted small", text: ` +${ms(offset)}` })),
      detail ? h("div", { class: "step-detail", text: detail }) : null,
      d.session_id ? h("div", {}, sessionLink(d.session_id)) : null);
  }));
}

function textBlock(title, text) {
  return h("section", { class: "text-block" }, h("h2", { text: title }),
    text ? h("p", { class: "message", text }) : h("p", { class: "muted", text: "—" }));
}

/** *Retry delivery* for an operator, when the reply's delivery failed. */
function retryBar(turn, ctx) {
  if (!ctx.may("operator") || turn.delivery_status !== "failed") return null;
  const retry = h("button", { type: "button", class: "action primary", "data-action": "retry",
    text: "Retry delivery", onclick: async () => {
      retry.disabled = true;
      try {
        const answer = await ctx.api(`/api/turns/${encodeURIComponent(turn.id)}/retry`,
          { method: "POST", body: {} });
        ctx.notify(answer.message);
      } catch (error) {
        retry.disabled = false;
        ctx.notify(error.message, "error");
      }
    } });
  return h("div", { class: "action-bar", role: "group", "aria-label": "Turn actions" }, retry);
}

export async function turnView(main, ctx, id) {
  async function draw() {
    const turn = await ctx.api(`/api/turns/${encodeURIComponent(id)}`);
    const received = turn.events.find((e) => e.name === "received");
    const delivered = turn.events.find((e) => e.name === "delivered");
    const total = received && delivered ? Date.parse(delivered.at) - Date.parse(received.at)
      : null;
    fill(main,
      h("p", { class: "crumbs" }, h("a", { href: "#/turns", text: "← Turns" })),
      h("h1", { tabindex: "-1" }, "Turn ", h("span", { class: "mono", text: turn.id }), " ",
        badge(turn.status)),
      retryBar(turn, ctx),
      fields([
        ["Received", when(turn.received_at)],
        ["Provider / account", `${turn.provider} · ${turn.account}`],
        ["Conversation", h("span", { class: "mono", text: turn.conversation })],
        ["Thread", turn.thread],
        ["Sender", turn.sender_name ? `${turn.sender_name} (${turn.sender})` : turn.sender],
        ["Provider event", h("span", { class: "mono", text: turn.event_id })],
        ["Why", turn.route_reason],
        ["Binding", turn.binding],
        ["Agent", turn.agent],
        ["Session", turn.session_id ? sessionLink(turn.session_id) : null],
        ["Agent time", turn.agent_ms === null ? null : ms(turn.agent_ms)],
        ["Received → delivered", total === null ? null : ms(total)],
        ["Delivery", turn.delivery_status
          ? `${turn.delivery_status} after ${turn.delivery_attempts} attempt(s)` : null],
        ["Provider message id", turn.provider_message_id],
        ["Error", turn.error ? h("span", { class: "error-text", text: turn.error }) : null],
        ["Duplicate of", turn.duplicate_of ? h("a", {
          href: `#/turns/${encodeURIComponent(turn.duplicate_of)}`, text: turn.duplicate_of })
          : null],
      ]),
      interactionCards(turn.interactions),
      fileCards(turn.files),
      h("section", { "aria-labelledby": "timeline-h" },
        h("h2", { id: "timeline-h", text: "Timeline" }), timeline(turn)),
      h("div", { class: "two" }, textBlock("Inbound text", turn.text),
        textBlock("Reply", turn.reply_text)),
      h("details", { class: "raw" }, h("summary", { text: "Raw provider payload" }),
        h("pre", { class: "json", text: json(turn.payload) })));
  }
  await draw();
  let timer = null;
  let growing = "";
  return {
    onEvent(event) {
      if (event.data.turn_id !== id) return;
      if (event.name === "generation.delta") { // the reply as it is written, no refetch
        growing += event.data.delta || "";
        const reply = [...main.querySelectorAll("section.text-block")]
          .find((block) => block.querySelector("h2")?.textContent.startsWith("Reply"));
        if (reply) fill(reply, h("h2", { text: "Reply (being written)" }),
          h("p", { class: "message", "data-growing": "", text: growing }));
        return;
      }
      clearTimeout(timer);
      timer = setTimeout(() => {
        const open = main.querySelector("details.raw")?.open;
        const focused = main.contains(document.activeElement) ? document.activeElement : null;
        draw().then(() => {
          if (open) main.querySelector("details.raw").open = true;
          if (focused) { // a live redraw keeps the keyboard on the page, not lost on <body>
            const raw = focused.closest("details.raw");
            main.querySelector(raw ? "details.raw summary" : "h1").focus();
          }
        }).catch((e) => ctx.notify(e.message, "error"));
      }, 120);
    },
    dispose: () => clearTimeout(timer),
  };
}
