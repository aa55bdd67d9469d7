"""Sender authentication: our MTA's Authentication-Results, our own DKIM check, allow-lists."""

from __future__ import annotations

import base64
import math
import random
from collections.abc import Callable

import dkim
import pytest

from inbox.auth import aligned, allow_sender, check_sender
from inbox.parse import parse_email

MX = "mx.inbox.test"


def message(*extra_headers: str, sender: str = "bob@acme.com", body: str = "Deploy now.") -> bytes:
    head = [*extra_headers, f"From: Bob <{sender}>", "To: agent@inbox.test",
            "Subject: Deploy", "Message-ID: <d1@acme.com>"]
    return ("\r\n".join(head) + "\r\n\r\n" + body + "\r\n").encode()


def results(*values: str, sender: str = "bob@acme.com") -> str | None:
    raw = message(*(f"Authentication-Results: {v}" for v in values), sender=sender)
    return check_sender(raw, parse_email(raw), "authentication-results", MX)


def test_mode_none_trusts_everyone() -> None:
    raw = message()
    assert check_sender(raw, parse_email(raw), "none", None) is None


def test_unknown_mode_and_missing_authserv_id_are_config_errors() -> None:
    raw = message()
    with pytest.raises(ValueError, match="unknown sender authentication mode"):
        check_sender(raw, parse_email(raw), "spf-only", None)
    with pytest.raises(ValueError, match="authserv-id"):
        check_sender(raw, parse_email(raw), "authentication-results", None)


@pytest.mark.parametrize(
    "value",
    [
        f"{MX}; dkim=pass header.d=acme.com header.s=sel",
        f"{MX}; dkim=pass header.d=mail.acme.com",
        f"{MX}; dkim=pass header.i=@acme.com",
        f"{MX}; spf=pass smtp.mailfrom=bounces@acme.com; dkim=none",
        f"{MX.upper()} 1; dkim=fail header.d=acme.com; dmarc=pass header.from=acme.com",
    ],
)
def test_authentication_results_pass(value: str) -> None:
    assert results(value) is None


def test_authentication_results_failures_are_named() -> None:
    assert results(f"{MX}; dkim=fail header.d=acme.com; spf=softfail smtp.mailfrom=x@acme.com") \
        == ("From bob@acme.com is not authenticated: dkim=fail (header.d=acme.com); "
            "spf=softfail (smtp.mailfrom domain acme.com)")


def test_unaligned_pass_is_not_enough() -> None:
    reason = results(f"{MX}; dkim=pass header.d=mailer.example; spf=pass smtp.mailfrom=x@evil.com")
    assert reason == (
        "From bob@acme.com is not authenticated: dkim=pass for header.d=mailer.example, which is "
        "not aligned with acme.com; spf=pass for smtp.mailfrom domain evil.com, which is not "
        "aligned with acme.com"
    )


def test_only_our_authserv_id_is_trusted() -> None:
    forged = "mx.evil.com; dkim=pass header.d=acme.com"
    assert results(forged) == (
        f"From bob@acme.com is not authenticated: no Authentication-Results from {MX}"
    )
    assert results(forged, f"{MX}; dkim=fail header.d=acme.com") == (
        "From bob@acme.com is not authenticated: dkim=fail (header.d=acme.com)"
    )
    assert results("this is not ; = parseable", f"{MX}; none") == (
        f"From bob@acme.com is not authenticated: Authentication-Results from {MX} "
        "report no dkim, spf or dmarc"
    )


def test_alignment_and_allow_list() -> None:
    assert aligned("acme.com", "acme.com")
    assert aligned("mail.acme.com", "acme.com")
    assert aligned("ACME.com.", "eu.acme.com")
    assert not aligned("notacme.com", "acme.com")
    assert not aligned("", "acme.com")
    patterns = ["ceo@acme.com", "*@partner.org"]
    assert allow_sender("CEO@Acme.com", patterns)
    assert allow_sender("anyone@PARTNER.org", patterns)
    assert not allow_sender("cfo@acme.com", patterns)
    assert not allow_sender("x@sub.partner.org", patterns)
    assert not allow_sender("x@partner.org.evil.com", patterns)


# --- DKIM, signed and verified for real with a throwaway RSA key ---------------------------


def _prime(bits: int, rng: random.Random) -> int:
    while True:
        candidate = rng.getrandbits(bits) | (3 << (bits - 2)) | 1  # n gets all its bits
        if all(candidate % p for p in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31)) and _probable(
            candidate, rng
        ):
            return candidate


def _probable(n: int, rng: random.Random, rounds: int = 24) -> bool:
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 1), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _der(tag: int, body: bytes) -> bytes:
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _int(value: int) -> bytes:
    return _der(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


@pytest.fixture(scope="module")
def rsa_key() -> tuple[bytes, bytes]:
    """A 1024-bit RSA key: (PKCS#1 PEM private key, DNS TXT record with the public key)."""
    rng = random.Random(20250303)
    e = 65537
    while True:
        p, q = _prime(512, rng), _prime(512, rng)
        phi = (p - 1) * (q - 1)
        if p != q and math.gcd(e, phi) == 1:
            break
    n, d = p * q, pow(e, -1, phi)
    private = _der(0x30, b"".join(_int(v) for v in (0, n, e, d, p, q, d % (p - 1), d % (q - 1),
                                                     pow(q, -1, p))))
    public = _der(0x30, _int(n) + _int(e))
    pem = (b"-----BEGIN RSA PRIVATE KEY-----\n" + base64.encodebytes(private)
           + b"-----END RSA PRIVATE KEY-----\n")
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def sign(raw: bytes, pem: bytes, domain: str) -> bytes:
    return dkim.sign(raw, b"sel", domain.encode(), pem, include_headers=[b"from", b"to",
                     b"subject", b"message-id"]) + raw


def dns(records: dict[str, bytes]) -> Callable[..., bytes | None]:
    def lookup(name: bytes | str, timeout: float = 5) -> bytes | None:
        key = name.decode() if isinstance(name, bytes) else name
        return records.get(key.rstrip("."))

    return lookup


def dkim_check(raw: bytes, records: dict[str, bytes]) -> str | None:
    return check_sender(raw, parse_email(raw), "dkim", None, dnsfunc=dns(records))


def test_dkim_signed_mail_passes(rsa_key: tuple[bytes, bytes]) -> None:
    pem, txt = rsa_key
    raw = sign(message(), pem, "acme.com")
    assert dkim_check(raw, {"sel._domainkey.acme.com": txt}) is None
    # a parent-domain signature is aligned with a subdomain author
    raw = sign(message(sender="bob@eu.acme.com"), pem, "acme.com")
    assert dkim_check(raw, {"sel._domainkey.acme.com": txt}) is None


def test_dkim_tampered_body_fails_with_the_reason(rsa_key: tuple[bytes, bytes]) -> None:
    pem, txt = rsa_key
    raw = sign(message(), pem, "acme.com").replace(b"Deploy now.", b"Delete everything.")
    reason = dkim_check(raw, {"sel._domainkey.acme.com": txt})
    assert reason is not None
    assert reason.startswith("From bob@acme.com is not authenticated: dkim=fail (d=acme.com: ")
    assert "body hash mismatch" in reason


def test_dkim_missing_key_unaligned_and_unsigned(rsa_key: tuple[bytes, bytes]) -> None:
    pem, txt = rsa_key
    signed = sign(message(), pem, "acme.com")
    assert dkim_check(signed, {}) == (
        "From bob@acme.com is not authenticated: dkim=fail (d=acme.com: signature does not verify)"
    )
    other = sign(message(), pem, "mailer.example")
    assert dkim_check(other, {"sel._domainkey.mailer.example": txt}) == (
        "From bob@acme.com is not authenticated: dkim=pass for d=mailer.example, which is not "
        "aligned with acme.com"
    )
    assert dkim_check(message(), {}) == "From bob@acme.com is not authenticated: no DKIM signature"


def test_dkim_any_aligned_signature_is_enough(rsa_key: tuple[bytes, bytes]) -> None:
    pem, txt = rsa_key
    raw = sign(sign(message(), pem, "acme.com"), pem, "mailer.example")
    records = {"sel._domainkey.acme.com": txt, "sel._domainkey.mailer.example": txt}
    assert dkim_check(raw, records) is None
