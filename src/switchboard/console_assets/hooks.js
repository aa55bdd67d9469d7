// Webhooks: every outbound delivery, newest first, with each attempt and the receiver's
// answer; an operator redelivers one (docs/outbound-webhooks.md).
import { withQuery } from "./api.js";
import { badge, cell, fill, h, ms, select, table, when } from "./dom.js";

const STATES = ["pending", "retrying", "delivered", "dead"];
const EVENTS = ["turn.received", "turn.delivered", "turn.failed", "session.created",
  "session.state_changed", "session.message.created", "email.received",
  "interaction.requested", "interaction.answered", "interaction.expired",
  "session.handoff_requested"];

function attempts(item) {
  if (!item.attempts.length) return h("span", { class: "muted", text: "not tried yet" });
  return h("ol", { class: "attempts" }, item.attempts.map((a) => h("li", {},
    when(a.at, { short: true }), " ",
    a.status === null ? badge("no answer", "status") : badge(String(a.status), "http"),
    " ", h("span", { class: "muted", text: ms(a.ms) }),
    a.error ? h("div", { text: a.error }) : null,
    a.body ? h("div", { class: "mono muted", text: a.body }) : null)));
}

function row(ctx, item, redeliver) {
  return h("tr", { "data-delivery": item.id },
    cell("Created", when(item.created_at, { short: true })),
    cell("Event", h("strong", { text: item.event }),
      h("div", { class: "mono muted", text: item.id })),
    cell("State", badge(item.state, "hook"),
      item.next_attempt_at ? h("div", { class: "muted" }, "next ", when(item.next_attempt_at,
        { short: true })) : null),
    cell("Receiver", h("span", { class: "mono", text: item.url })),
    cell("Attempts", attempts(item)),
    cell("Actions", ctx.may("operator") ? h("button", { type: "button", class: "link",
      text: "Redeliver", "data-action": "redeliver", onclick: () => redeliver(item) }) : "—"));
}

export async function hooksView(main, ctx) {
  const filters = { event: ctx.params.get("event") || "", state: ctx.params.get("state") || "" };
  const form = h("form", { class: "filters", role: "search",
    "aria-label": "Filter webhook deliveries" },
  select("event", "Event", EVENTS, filters.event), select("state", "State", STATES,
    filters.state));
  const apply = () => ctx.navigate("/webhooks", Object.fromEntries(new FormData(form)));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  form.querySelectorAll("select").forEach((el) => el.addEventListener("change", apply));
  const grid = table(["Created", "Event", "State", "Receiver", "Attempts", "Actions"], [],
    { caption: "Webhook deliveries, newest first",
      empty: "No deliveries: no webhook is configured, or nothing happened yet." });
  const more = h("button", { type: "button", hidden: true, text: "Load older deliveries" });
  fill(main, h("h1", { tabindex: "-1", text: "Webhooks" }),
    h("p", { class: "muted", text: "Events sent to the receivers in webhooks:, each attempt "
      + "with the receiver's answer. A delivery is retried for a day, then dead." }),
    form, grid.wrap, more);

  let cursor = null;
  async function load(reset = false) {
    const data = await ctx.api(withQuery("/api/webhooks/deliveries",
      { ...filters, cursor: reset ? null : cursor }));
    if (reset) grid.body.replaceChildren();
    data.deliveries.forEach((item) => grid.body.append(row(ctx, item, redeliver)));
    cursor = data.next_cursor;
    more.hidden = !cursor;
    grid.none.hidden = grid.body.children.length > 0;
  }

  async function redeliver(item) {
    try {
      await ctx.api(`/api/webhooks/deliveries/${encodeURIComponent(item.id)}/redeliver`,
        { method: "POST" });
      ctx.notify(`${item.event} ${item.id} is due again.`);
    } catch (error) {
      ctx.notify(error.message, "error");
    }
    await load(true);
  }

  more.addEventListener("click", () => load().catch((e) => ctx.notify(e.message, "error")));
  await load(true);
}
