"""Is the From address really the author? Checked from our MTA's verdict or by DKIM ourselves.

An agent acting on email must not take orders from a forged From; `allow_sender` then decides
whether that (authenticated) author may talk to the inbox at all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from fnmatch import fnmatchcase

import authres
import dkim

from inbox.dns import DnsFunc, txt_lookup
from inbox.errors import KeyUnavailable, SenderCheckDeferred
from inbox.parse import ParsedEmail

log = logging.getLogger(__name__)

AUTH_MODES: tuple[str, ...] = ("none", "authentication-results", "dkim")



def check_sender(
    raw: bytes,
    parsed: ParsedEmail,
    mode: str,
    authserv_id: str | None,
    dnsfunc: DnsFunc | None = None,
) -> str | None:
    """None when the From address is authenticated under `mode`, else the reason in words.

    "dkim" mode looks keys up in DNS (blocking): from async code call it via asyncio.to_thread.
    A key that cannot be fetched now raises `SenderCheckDeferred` unless another signature
    already passes.
    """
    if mode == "none":
        return None
    if mode == "authentication-results":
        if not authserv_id:
            raise ValueError("authentication-results mode needs the authserv-id of our own MTA")
        findings = _authentication_results(parsed, authserv_id.lower())
    elif mode == "dkim":
        findings = _dkim(raw, parsed.from_domain, dnsfunc or txt_lookup(None, 5.0))
    else:
        raise ValueError(f"unknown sender authentication mode {mode!r}; use one of {AUTH_MODES}")
    if findings is None:
        return None
    return f"From {parsed.from_addr} is not authenticated: {'; '.join(findings)}"


def aligned(domain: str, from_domain: str) -> bool:
    """Relaxed alignment: the same domain, or one is a subdomain of the other."""
    a, b = _clean(domain), _clean(from_domain)
    if not a or not b:
        return False
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def allow_sender(sender: str, patterns: Iterable[str]) -> bool:
    """Whether an address matches an allow-list entry: `bob@acme.com` or `*@acme.com`."""
    address = sender.strip().lower()
    return any(fnmatchcase(address, pattern.strip().lower()) for pattern in patterns)


def _clean(domain: str) -> str:
    return domain.strip().strip(".").lower()


def _authentication_results(parsed: ParsedEmail, authserv_id: str) -> list[str] | None:
    """Trust only headers stamped by our own MTA (which must strip forged ones, RFC 8601 §5)."""
    findings: list[str] = []
    trusted = 0
    for value in parsed.authentication_results:
        try:
            header = authres.AuthenticationResultsHeader.parse_value(value)
        except authres.AuthResError as exc:
            log.info("unparsable Authentication-Results %r: %s", value, exc)
            continue
        if header.authserv_id != authserv_id:
            continue
        trusted += 1
        for result in header.results:
            verdict = _judge(result, parsed.from_domain)
            if verdict is None:
                return None
            if verdict:
                findings.append(verdict)
    if not trusted:
        return [f"no Authentication-Results from {authserv_id}"]
    return findings or [f"Authentication-Results from {authserv_id} report no dkim, spf or dmarc"]


def _judge(result: authres.AuthenticationResult, from_domain: str) -> str | None:
    """None if this result authenticates From, else what it says ("" when irrelevant)."""
    method = str(result.method).lower()
    outcome = str(result.result).lower()
    if method == "dkim":
        signer = _prop(result, "header", "d") or _prop(result, "header", "i").rpartition("@")[2]
        subject = f"header.d={signer}"
    elif method == "spf":
        signer = _prop(result, "smtp", "mailfrom").rpartition("@")[2]
        subject = f"smtp.mailfrom domain {signer}"
    elif method == "dmarc":
        signer = _prop(result, "header", "from").rpartition("@")[2]
        subject = f"header.from={signer}"
    else:
        return ""
    if outcome != "pass":
        return f"{method}={outcome}" + (f" ({subject})" if signer else "")
    if aligned(signer, from_domain):
        return None
    return f"{method}=pass for {subject}, which is not aligned with {from_domain}"


def _prop(result: authres.AuthenticationResult, ptype: str, name: str) -> str:
    for prop in result.properties or []:
        if prop.type.lower() == ptype and prop.name.lower() == name and prop.value:
            return str(prop.value).lower()
    return ""


def _dkim(raw: bytes, from_domain: str, dnsfunc: DnsFunc) -> list[str] | None:
    """Verify every DKIM signature; one that passes with an aligned d= is enough."""
    try:
        verifier = dkim.DKIM(raw)
        signatures = [v for k, v in verifier.headers if k.lower() == b"dkim-signature"]
    except (dkim.DKIMException, IndexError) as exc:  # IndexError: a folded first header line
        return [f"dkim=fail (the message cannot be checked: {exc!r})"]
    if not signatures:
        return ["no DKIM signature"]
    findings: list[str] = []
    unavailable: list[str] = []
    for index in range(len(signatures)):
        try:
            verifier.domain = None
            ok = verifier.verify(idx=index, dnsfunc=dnsfunc)
            reason = "signature does not verify"
        except KeyUnavailable as exc:
            unavailable.append(f"the DKIM key of d={_decode(verifier.domain)} cannot be "
                               f"fetched now: {exc}")
            continue
        except dkim.DKIMException as exc:
            ok, reason = False, str(exc)
        signer = _decode(verifier.domain)
        if ok and aligned(signer, from_domain):
            return None
        if ok:
            findings.append(f"dkim=pass for d={signer}, which is not aligned with {from_domain}")
        else:
            findings.append(f"dkim=fail (d={signer or '?'}: {reason})")
    if unavailable:
        raise SenderCheckDeferred("; ".join(unavailable))
    return findings


def _decode(value: bytes | str | None) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").lower()
    return (value or "").lower()


def reply_address(parsed: ParsedEmail, envelope_sender: str, mode: str) -> tuple[str, list[str]]:
    """Whom a reply may go to, and what was passed over (in words).

    Only the authenticated sender is answered: the From that passed `mode`, or with mode "none"
    the envelope sender (where answers go by RFC 3834 §4), never a Reply-To, which anyone can
    write and would make the agent mail a third party.
    """
    notes: list[str] = []
    envelope = envelope_sender.strip().lower()
    answer = parsed.from_addr
    if mode == "none" and envelope:
        answer = envelope
        if parsed.from_addr != envelope:
            notes.append(f"From {parsed.from_addr} not answered: sender_auth is none, so the "
                         f"envelope sender {envelope} is answered")
    if parsed.reply_to and parsed.reply_to.lower() != answer:
        notes.insert(0, f"Reply-To {parsed.reply_to} ignored: not the authenticated sender "
                        f"{answer}")
    return answer, notes
