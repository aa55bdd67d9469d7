// Pairing: the codes strangers were given under `dm_policy: pairing`, and the senders
// approved or denied; operators approve, deny or revoke (the same routes as the CLI's).
import { badge, cell, fill, h, table, when } from "./dom.js";

function actions(ctx, p, redraw) {
  if (!ctx.may("operator")) return "—";
  const act = (label, path, method, done) => h("button", { type: "button", class: "link",
    text: label, "data-action": label.toLowerCase(), onclick: async () => {
      try {
        await ctx.api(path, { method });
        ctx.notify(done);
      } catch (error) {
        ctx.notify(error.message, "error");
      }
      redraw();
    } });
  const sender = `/api/pairing/${encodeURIComponent(p.account)}/${encodeURIComponent(p.sender)}`;
  const revoke = act("Revoke", sender, "DELETE", `${p.sender} may pair again.`);
  if (p.status !== "pending") return revoke;
  const code = encodeURIComponent(p.code);
  return h("span", {},
    act("Approve", `/api/pairing/${code}/approve`, "POST", `${p.sender} is in; they are told so.`),
    " ", act("Deny", `/api/pairing/${code}/deny`, "POST", `${p.sender} is denied.`),
    " ", revoke);
}

export async function pairingView(main, ctx) {
  const redraw = async () => {
    const data = await ctx.api("/api/pairing");
    const rows = data.pairings.map((p) => h("tr", { "data-sender": p.sender },
      cell("Code", h("strong", { class: "mono", text: p.code || "—" })),
      cell("Status", badge(p.status, "pairing")), cell("Account", p.account),
      cell("Sender", p.sender_name ? `${p.sender} (${p.sender_name})` : p.sender),
      cell("Expires", p.status === "pending" ? when(p.expires_at) : "—"),
      cell("Decided", p.decided_by ? h("span", {}, p.decided_by, " ", when(p.decided_at))
        : "—"),
      cell("Actions", actions(ctx, p, redraw))));
    fill(main, h("h1", { tabindex: "-1", text: "Pairing" }),
      h("p", { class: "muted", text: "Strangers who sent a direct message to an account with "
        + "dm_policy: pairing got a code; approve the code they give you." }),
      table(["Code", "Status", "Account", "Sender", "Expires", "Decided", "Actions"], rows,
        { caption: "Pairings", empty: "No pairing codes: nobody is waiting." }).wrap);
  };
  await redraw();
  return {
    onEvent(event) {
      if (event.event === "turn.routed" && event.data && event.data.status === "ignored") {
        redraw();
      }
    },
  };
}
