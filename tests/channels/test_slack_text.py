"""Slack's markup as an agent reads it (issue 20, item 9)."""

from __future__ import annotations

import pytest

from channels.slack.text import readable


@pytest.mark.parametrize(("raw", "agent_reads"), [
    ("<@UBOT> hello", "hello"),
    ("<@UBOT>: hello", "hello"),
    ("hey <@UBOT> can you look", "hey can you look"),
    ("ask <@U0BOB|bob> in <#C0GEN|general>", "ask @bob in #general"),
    ("ask <@U0BOB> in <#C0GEN>", "ask @U0BOB in #C0GEN"),
    ("<!here> <!subteam^S1|@ops> see <https://x.test/a|the docs> or <https://x.test>",
     "@here @ops see the docs (https://x.test/a) or https://x.test"),
    ("a &lt;b&gt; &amp; c", "a <b> & c"),
    ("no markup at all", "no markup at all"),
])
def test_the_agent_reads_the_text_without_the_bots_mention(raw, agent_reads):
    assert readable(raw, "UBOT") == agent_reads


def test_another_bots_mention_is_kept():
    assert readable("<@UOTHER> hi", "UBOT") == "@UOTHER hi"
