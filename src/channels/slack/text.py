"""Slack's message markup made readable for an agent: the bot's own mention removed (it is how
the person addressed the bot, not what they said), other references shown by name where the
markup carries it, entities unescaped.

https://docs.slack.dev/messaging/formatting-message-text: `<@U123>` or `<@U123|name>` for a
user, `<#C123|name>` for a channel, `<!here>`, `<!subteam^S123|@team>` for special mentions,
`<https://…|label>` for links; `&`, `<` and `>` arrive as `&amp;`, `&lt;`, `&gt;`.
"""

from __future__ import annotations

import re

_REFERENCE = re.compile(r"<([@#!])([^>|]+)(?:\|([^>]*))?>|<([^>|]+)(?:\|([^>]*))?>")


def readable(text: str, bot_user_id: str | None) -> str:
    """The text as the person meant it: without `<@BOT>`, with `@name`, `#channel`, `@here`
    and `label (url)` for the markup."""

    def replace(found: re.Match[str]) -> str:
        sigil, ref, label, url, url_label = found.groups()
        if sigil is None:
            return f"{url_label} ({url})" if url_label and url_label != url else url
        if sigil == "@":
            return "" if ref == bot_user_id else f"@{label or ref}"
        if sigil == "#":
            return f"#{label or ref}"
        if label:  # <!subteam^S123|@team>, <!date^…|fallback>
            return label
        return f"@{ref.split('^', 1)[0]}"  # <!here>, <!channel>, <!everyone>

    out = _REFERENCE.sub(replace, text)
    out = re.sub(r"[ \t]{2,}", " ", out).strip()
    out = re.sub(r"^[,:;]\s*", "", out)  # "<@BOT>: hello" → "hello"
    return out.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


__all__ = ["readable"]
