// Operators (admins only): who may use this Switchboard, limited to which agents; add one,
// give one a new token, revoke one. A new token is shown once, here, and never again.
import { badge, cell, fill, h, table, when } from "./dom.js";

const ROLES = ["viewer", "operator", "admin"];

function tokenBox(name, secret) {
  return h("div", { class: "card token-once", role: "status" },
    h("p", {}, "The token of ", h("strong", { text: name }),
      ", shown only this once (only its hash is kept). Copy it now:"),
    h("p", {}, h("code", { class: "mono", id: "new-token", text: secret })));
}

function addForm(ctx, agents, done) {
  const name = h("input", { id: "op-name", name: "name", required: true,
    placeholder: "carol", autocomplete: "off", spellcheck: "false" });
  const role = h("select", { id: "op-role", name: "role" },
    ROLES.map((r) => h("option", { value: r, text: r })));
  const picks = agents.map((agent) => h("input", { type: "checkbox", name: "agents",
    value: agent, id: `op-agent-${agent}` }));
  const form = h("form", { class: "filters", "aria-label": "Add an operator" },
    h("label", { class: "field", for: "op-name" }, h("span", { text: "Name" }), name),
    h("label", { class: "field", for: "op-role" }, h("span", { text: "Role" }), role),
    h("fieldset", { class: "field" },
      h("legend", { text: "Limited to agents (none: every agent)" }),
      picks.map((box) => h("label", { class: "check", for: box.id }, box, " ", box.value))),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary", text: "Add operator" })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = picks.filter((box) => box.checked).map((box) => box.value);
    const body = { name: name.value.trim(), role: role.value };
    if (chosen.length) body.agents = chosen;
    try {
      const answer = await ctx.api("/api/operators", { method: "POST", body });
      await done(tokenBox(answer.name, answer.token));
      ctx.notify(`operator ${answer.name} is added`);
    } catch (error) {
      ctx.notify(error.message, "error");
    }
  });
  return form;
}

function rows(ctx, operators, act) {
  return operators.map((op) => h("tr", { "data-operator": op.name },
    cell("Name", h("strong", { text: op.name })), cell("Role", badge(op.role, "role")),
    cell("Agents", op.agents ? op.agents.join(", ") : "every agent"),
    cell("Kept in", op.source === "config" ? "bindings.yaml" : "database"),
    cell("Created", when(op.created_at)), cell("Rotated", when(op.rotated_at)),
    cell("Actions", op.source === "config"
      ? h("span", { class: "muted", text: "change it in bindings.yaml" })
      : h("span", { class: "actions" },
        h("button", { type: "button", "data-action": "rotate", text: "New token",
          onclick: () => act(op.name, "rotate") }),
        h("button", { type: "button", class: "danger", "data-action": "revoke", text: "Revoke",
          onclick: () => {
            if (confirm(`Revoke operator ${op.name}? Its token stops working.`)) {
              act(op.name, "revoke");
            }
          } })))));
}

export async function operatorsView(main, ctx) {
  if (!ctx.may("admin")) {
    fill(main, h("h1", { tabindex: "-1", text: "Operators" }),
      h("p", { class: "notice error", text: "Only admins manage operators." }));
    return null;
  }
  const meta = await ctx.meta().catch(() => null);
  const agents = meta ? meta.agents.map((a) => a.name) : [];
  const shown = h("div", { id: "token-shown" });

  async function draw(reveal) {
    const data = await ctx.api("/api/operators");
    fill(shown, reveal || null);
    fill(main, h("h1", { tabindex: "-1", text: "Operators" }),
      h("p", { class: "muted", text: "Operators from bindings.yaml and those kept in the "
        + "database. `switchboard operators add` does the same on the machine with the "
        + "database, without a token." }),
      shown,
      h("section", { "aria-labelledby": "o-h" }, h("h2", { id: "o-h", text: "Who may sign in" }),
        table(["Name", "Role", "Agents", "Kept in", "Created", "Rotated", "Actions"],
          rows(ctx, data.operators, act), { caption: "Operators" }).wrap),
      h("section", { "aria-labelledby": "n-h", class: "card" },
        h("h2", { id: "n-h", text: "Add an operator" }), addForm(ctx, agents, draw)));
  }

  async function act(name, action) {
    const path = `/api/operators/${encodeURIComponent(name)}`;
    try {
      if (action === "revoke") {
        const answer = await ctx.api(path, { method: "DELETE" });
        ctx.notify(answer.message);
        await draw();
      } else {
        const answer = await ctx.api(`${path}/rotate`, { method: "POST" });
        await draw(tokenBox(answer.name, answer.token));
        ctx.notify(`operator ${name} has a new token; the old one no longer works`);
      }
    } catch (error) {
      ctx.notify(error.message, "error");
    }
  }

  await draw();
  return { onEvent() {} };
}
