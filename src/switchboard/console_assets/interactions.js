// Waiting for people: the interactions agents asked (approvals, choices, questions) that
// nobody answered yet, oldest first; an operator answers one here. Below them, the sessions
// whose agent asked for a person (a handoff), to be taken over from the session's page.
import { badge, cell, fill, h, table, when } from "./dom.js";

function answerControls(ctx, item, answer) {
  if (!ctx.may("operator")) return h("span", { class: "muted", text: "operators answer" });
  if (item.kind === "input") {
    const id = `answer-${item.id}`;
    const field = h("input", { id, name: "text", required: true, autocomplete: "off",
      "aria-label": `Answer to: ${item.prompt}` });
    return h("form", { class: "actions", onsubmit: (event) => {
      event.preventDefault();
      answer(item, { text: field.value });
    } }, field, h("button", { type: "submit", class: "primary", text: "Answer" }));
  }
  return h("span", { class: "actions", role: "group", "aria-label": `Answer: ${item.prompt}` },
    item.options.map((option) => h("button", { type: "button", "data-option": option.id,
      class: option.id === "reject" ? "danger" : "primary", text: option.label,
      onclick: () => answer(item, { option: option.id }) })));
}

function rows(ctx, items, answer) {
  return items.map((item) => h("tr", { "data-interaction": item.id },
    cell("Since", when(item.created_at)),
    cell("Asks", h("strong", { text: item.prompt }), " ", badge(item.kind, "kind")),
    cell("Agent", item.agent),
    cell("Session", h("a", { href: `#/sessions/${encodeURIComponent(item.session_id)}`,
      class: "mono", text: item.session_id })),
    cell("May answer", item.responders.length ? item.responders.join(", ") : "operators"),
    cell("Expires", when(item.expires_at)),
    cell("Answer", answerControls(ctx, item, answer))));
}

function handoffRows(sessions) {
  return sessions.map((s) => h("tr", { "data-handoff": s.id },
    cell("Since", when(s.handoff.at)),
    cell("Reason", h("strong", { text: s.handoff.reason })),
    cell("Agent", s.agent),
    cell("Session", h("a", { href: `#/sessions/${encodeURIComponent(s.id)}`,
      class: "mono", text: s.id })),
    cell("User", s.user_name || s.user_id || "—"),
    cell("Taken over by", s.taken_over_by || h("span", { class: "muted", text: "nobody yet" }))));
}

export async function waitingView(main, ctx) {
  async function draw() {
    const [data, handed] = await Promise.all([ctx.api("/api/interactions?state=pending"),
      ctx.api("/api/handoffs")]);
    fill(main, h("h1", { tabindex: "-1", text: "Waiting for people" }),
      h("p", { class: "muted", text: "Requests agents made to people that nobody answered "
        + "yet, oldest first. The first answer wins, wherever it comes from." }),
      table(["Since", "Asks", "Agent", "Session", "May answer", "Expires", "Answer"],
        rows(ctx, data.interactions, answer), { caption: "Pending interactions",
          empty: "Nobody is waited for." }).wrap,
      h("h2", { text: "Conversations handed to people" }),
      h("p", { class: "muted", text: "Sessions whose agent asked for a person: open one to "
        + "take it over, reply as the bot, and hand it back." }),
      table(["Since", "Reason", "Agent", "Session", "User", "Taken over by"],
        handoffRows(handed.sessions), { caption: "Conversations handed to people",
          empty: "No agent asked for a person." }).wrap);
  }

  async function answer(item, body) {
    try {
      const done = await ctx.api(`/api/interactions/${encodeURIComponent(item.id)}/answer`,
        { method: "POST", body });
      const given = done.answer.option || done.answer.text;
      ctx.notify(`answered "${item.prompt}": ${given}`);
    } catch (error) {
      ctx.notify(error.message, "error");
    }
    await draw();
  }

  await draw();
  return {
    onEvent(event) {
      if (event.name && (event.name.startsWith("interaction.")
        || event.name.startsWith("session."))) draw().catch(() => {});
    },
  };
}
