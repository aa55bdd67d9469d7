// Bindings, agents, accounts and inboxes as loaded, and "would this match?" against the
// pipeline's own matching function (POST /api/match).
import { ApiError } from "./api.js";
import { badge, cell, fill, h, table, when } from "./dom.js";

const yes = (flag) => (flag ? "yes" : "no");
const list = (items) => (items && items.length ? items.join(", ") : "—");

function bindingTable(bindings) {
  return table(["Name", "Agent", "Account", "DMs", "Mentions", "Channels", "Follows threads",
    "Allowed senders", "Allowed conversations", "Model", "Session scope"],
  bindings.map((b) => h("tr", { "data-binding": b.name },
    cell("Name", h("strong", { class: "mono", text: b.name })), cell("Agent", b.agent),
    cell("Account", b.account), cell("DMs", yes(b.dm)), cell("Mentions", yes(b.mentions)),
    cell("Channels", list(b.channels)), cell("Follows threads", yes(b.follow_threads)),
    cell("Allowed senders", list(b.allow_senders)),
    cell("Allowed conversations", list(b.allow_conversations)),
    cell("Model", b.model || "agent default"), cell("Session scope", b.session_scope))),
  { caption: "Bindings, in file order", empty: "No bindings: no message reaches an agent." });
}

function accountTable(accounts) {
  return table(["Account", "Provider", "Status", "Why", "Last inbound", "Last outbound",
    "Last error", "Rejected requests"],
  accounts.map((a) => h("tr", { "data-account": a.name },
    cell("Account", h("strong", { text: a.name })), cell("Provider", a.provider),
    cell("Status", badge(a.status, "account")),
    cell("Why", a.disabled_reason || a.error || "—"),
    cell("Last inbound", when(a.last_inbound_at)), cell("Last outbound", when(a.last_outbound_at)),
    cell("Last error", a.last_error ? h("span", {}, a.last_error, " ", when(a.last_error_at))
      : "—"),
    cell("Rejected requests", Object.entries(a.rejected || {})
      .map(([why, count]) => `${why}: ${count}`).join(", ") || "none"))),
  { caption: "Accounts and their status", empty: "No accounts configured." });
}

function agentTable(agents) {
  return table(["Agent", "Handler", "Default model"], agents.map((a) => h("tr", {},
    cell("Agent", h("strong", { text: a.name })), cell("Handler", a.handler),
    cell("Default model", a.model || "—"))), { caption: "Agents" });
}

async function inboxSection(ctx) {
  let data;
  try {
    data = await ctx.api("/api/inboxes");
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 405)) {
      return h("p", { class: "muted", text: "This server does not list inbox addresses." });
    }
    return h("p", { class: "notice error", text: `Inboxes could not be loaded: ${error.message}` });
  }
  const rows = Array.isArray(data) ? data : data.inboxes || [];
  return table(["Address", "Agent", "Account", "State", "Provisioned"], rows.map((i) => h("tr", {},
    cell("Address", h("span", { class: "mono", text: i.address || i.email_address })),
    cell("Agent", i.agent), cell("Account", i.account || "—"),
    cell("State", badge(i.active === false ? "revoked" : "active", "inbox")),
    cell("Provisioned", when(i.created_at)))),
  { caption: "Inbox addresses", empty: "No inbox is provisioned. "
    + "Provision one with `switchboard inbox provision AGENT`." }).wrap;
}

function matchForm(ctx, accounts) {
  const providers = [...new Set(accounts.map((a) => a.provider))];
  const id = (name) => `m-${name}`;
  const labelled = (name, label, control) => h("label", { class: "field", for: id(name) },
    h("span", { text: label }), control);
  const provider = h("select", { id: id("provider"), name: "provider" },
    providers.map((p) => h("option", { value: p, text: p })));
  const account = h("select", { id: id("account"), name: "account", required: true },
    accounts.map((a) => h("option", { value: a.name, text: a.name })));
  const syncProvider = () => {
    const picked = accounts.find((a) => a.name === account.value);
    if (picked) provider.value = picked.provider;
  };
  account.addEventListener("change", syncProvider);
  syncProvider();
  const kind = h("select", { id: id("kind"), name: "kind" },
    [["channel", "channel message"], ["group", "group message"], ["dm", "direct message"]]
      .map(([value, text]) => h("option", { value, text })));
  const conversation = h("input", { id: id("conversation"), name: "conversation", required: true,
    placeholder: "C0SUPPORT, a chat id, an address" });
  const sender = h("input", { id: id("sender"), name: "sender", placeholder: "U0ALICE" });
  const thread = h("input", { id: id("thread"), name: "thread", placeholder: "optional" });
  const mentioned = h("input", { id: id("mentioned"), name: "mentioned", type: "checkbox" });
  const answer = h("div", { id: "match-result", class: "match-result", role: "status",
    "aria-live": "polite" });

  const form = h("form", { class: "filters match", "aria-label": "Would this match?" },
    labelled("provider", "Provider", provider), labelled("account", "Account", account),
    labelled("kind", "Where", kind), labelled("conversation", "Conversation", conversation),
    labelled("sender", "Sender", sender), labelled("thread", "Thread", thread),
    h("label", { class: "field check", for: id("mentioned") }, mentioned,
      h("span", { text: "Mentions the bot" })),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary",
      text: "Would this match?" })));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const result = await ctx.api("/api/match", { method: "POST", body: {
        provider: provider.value, account: account.value, conversation: conversation.value.trim(),
        sender: sender.value.trim(), kind: kind.value, mentioned: mentioned.checked,
        thread: thread.value.trim() || null } });
      fill(answer,
        h("p", {}, badge(result.matched ? "matched" : "no match", "match"), " ",
          result.matched ? h("span", {}, "binding ", h("strong", { text: result.binding }),
            " → agent ", h("strong", { text: result.agent }),
            ` (one session per ${result.session_scope})`)
            : "no agent would answer this message"),
        h("p", { class: "reason", text: result.reason }));
    } catch (error) {
      fill(answer, h("p", { class: "notice error", text: error.message }));
    }
  });
  return h("div", {}, form, answer);
}

export async function bindingsView(main, ctx) {
  const data = await ctx.api("/api/bindings");
  fill(main, h("h1", { tabindex: "-1", text: "Bindings" }),
    h("p", { class: "muted", text: "What is loaded from bindings.yaml (read-only): which "
      + "conversations reach which agent, and the state of each account." }),
    h("section", { "aria-labelledby": "b-h" }, h("h2", { id: "b-h", text: "Bindings" }),
      bindingTable(data.bindings).wrap),
    h("section", { "aria-labelledby": "m-h", class: "card" },
      h("h2", { id: "m-h", text: "Would this match?" }),
      h("p", { class: "muted", text: "Describe a message; the answer comes from the same "
        + "matching function the pipeline uses." }),
      matchForm(ctx, data.accounts)),
    h("section", { "aria-labelledby": "a-h" }, h("h2", { id: "a-h", text: "Accounts" }),
      accountTable(data.accounts).wrap),
    h("section", { "aria-labelledby": "g-h" }, h("h2", { id: "g-h", text: "Agents" }),
      agentTable(data.agents).wrap),
    h("section", { "aria-labelledby": "i-h" }, h("h2", { id: "i-h", text: "Inbox addresses" }),
      await inboxSection(ctx)));
  return {
    onEvent() {},
  };
}
