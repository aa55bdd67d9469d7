// Interaction cards: what an agent asked people in a turn or a session, and its answer (or
// expiry): prompt, kind, options, state, who may answer, the answer, by whom, via what, when.
import { badge, fields, h, when } from "./dom.js";

function by(answer) {
  const who = answer.by || {};
  if (who.operator) return `${who.operator} (operator)`;
  const name = who.name && who.name !== who.id ? `${who.name} (${who.id})` : who.id;
  return [name, who.provider].filter(Boolean).join(" · ");
}

function given(item) {
  const answer = item.answer || {};
  if (answer.text !== undefined && answer.text !== null) return answer.text;
  const option = item.options.find((o) => o.id === answer.option);
  return option ? `${option.label} (${option.id})` : answer.option;
}

function answerFields(item) {
  const answer = item.answer;
  if (!answer) return [["Answer", h("span", { class: "muted", text: "nobody answered yet" })]];
  if (answer.expired) {
    return [["Answer", `expired without an answer${answer.cause ? ` (${answer.cause})` : ""}`],
      ["When", when(answer.at)]];
  }
  return [["Answer", h("strong", { class: "answer-given", text: given(item) })],
    ["By", by(answer)], ["Via", answer.via], ["When", when(answer.at)]];
}

function card(item) {
  const turn = (id, text) => (id ? h("a", { href: `#/turns/${encodeURIComponent(id)}`,
    class: "mono small", text }) : null);
  return h("li", { class: "interaction-card", "data-interaction": item.id,
    "data-state": item.state },
  h("p", { class: "interaction-head" }, h("strong", { class: "interaction-prompt",
    text: item.prompt }), " ", badge(item.kind, "kind"), " ", badge(item.state, "state")),
  fields([
    ["Options", item.options.length ? h("ol", { class: "options" }, item.options.map((o) =>
      h("li", { "data-option": o.id, text: o.label }))) : "free text"],
    ["May answer", item.responders.length ? item.responders.join(", ")
      : "operators (console)"],
    ["Asked", when(item.created_at)],
    ["Expires", item.expires_at ? when(item.expires_at) : null],
    ...answerFields(item),
    ["Turns", h("span", {}, turn(item.turn_id, "asked"), " ",
      turn(item.answer_turn_id, "answer"))],
  ]));
}

/** The "Interactions" section of a turn or a session, or nothing when there are none. */
export function interactionCards(items) {
  if (!items || !items.length) return null;
  return h("section", { "aria-labelledby": "interactions-h" },
    h("h2", { id: "interactions-h", text: "Interactions" }),
    h("ul", { class: "interaction-cards" }, items.map(card)));
}
