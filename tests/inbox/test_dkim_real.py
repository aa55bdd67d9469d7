"""DKIM as it is checked in production: ed25519 (RFC 8463) and keys fetched by dnspython from a
DNS server, here one the test runs on 127.0.0.1; a lookup that fails now is not a forgery."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator

import dkim
import nacl.signing
import pytest

from fakes.dns_server import FakeDNS
from inbox.auth import check_sender
from inbox.dns import parse_resolver, txt_lookup
from inbox.errors import SenderCheckDeferred
from inbox.parse import parse_email

# Thunderbird's layout of a plain message
MESSAGE = (
    "Message-ID: <5a1f3c2e-7d4b-4c1e-9b8a-2f6d0e1c9a77@example.com>\r\n"
    "Date: Tue, 4 Mar 2025 09:12:44 +0100\r\n"
    "MIME-Version: 1.0\r\n"
    "User-Agent: Mozilla Thunderbird\r\n"
    "Content-Language: en-US\r\n"
    "To: agent@inbox.test\r\n"
    "From: Bob Example <bob@{domain}>\r\n"
    "Subject: Deploy the release\r\n"
    "Content-Type: text/plain; charset=UTF-8; format=flowed\r\n"
    "Content-Transfer-Encoding: 7bit\r\n"
    "\r\n"
    "Please deploy 2.4.1 to production tonight.\r\n"
    "\r\n"
    "Bob\r\n"
)


@pytest.fixture
def fake_dns() -> Iterator[FakeDNS]:
    with FakeDNS() as server:
        yield server


def ed25519_key() -> tuple[bytes, bytes]:
    key = nacl.signing.SigningKey.generate()
    return base64.b64encode(bytes(key)), base64.b64encode(bytes(key.verify_key))


def sign(raw: bytes, private: bytes, domain: str, selector: str = "sel") -> bytes:
    return dkim.sign(raw, selector.encode(), domain.encode(), private,
                     signature_algorithm=b"ed25519-sha256",
                     include_headers=[b"from", b"to", b"subject", b"date", b"message-id"]) + raw


def message(domain: str = "example.com") -> bytes:
    return MESSAGE.format(domain=domain).encode()


def verdict(raw: bytes, dns: FakeDNS, timeout: float = 1.0) -> str | None:
    return check_sender(raw, parse_email(raw), "dkim", None,
                        dnsfunc=txt_lookup(dns.address, timeout))


def test_an_ed25519_signature_verifies_with_the_key_from_dns(fake_dns: FakeDNS) -> None:
    private, public = ed25519_key()
    # a key record over 255 bytes comes as several TXT strings, joined again
    fake_dns.txt["sel._domainkey.example.com"] = (
        b"v=DKIM1; k=ed25519; n=" + b"rotated-2025-03" * 20 + b"; p=" + public)
    raw = sign(message(), private, "example.com")
    assert verdict(raw, fake_dns) is None
    assert fake_dns.queries == ["sel._domainkey.example.com"]
    tampered = raw.replace(b"tonight", b"right now")
    reason = verdict(tampered, fake_dns)
    assert reason is not None and reason.startswith(
        "From bob@example.com is not authenticated: dkim=fail (d=example.com: ")


@pytest.mark.parametrize("trouble", ["servfail", "silent"])
def test_a_key_that_cannot_be_fetched_is_a_temporary_failure(fake_dns: FakeDNS,
                                                             trouble: str) -> None:
    private, _ = ed25519_key()
    getattr(fake_dns, trouble).add("sel._domainkey.example.com")
    raw = sign(message(), private, "example.com")
    started = time.monotonic()
    with pytest.raises(SenderCheckDeferred) as deferred:
        verdict(raw, fake_dns, timeout=0.5)
    assert time.monotonic() - started < 3
    words = str(deferred.value)
    assert words.startswith("the DKIM key of d=example.com cannot be fetched now: ")
    assert ("SERVFAIL" if trouble == "servfail" else "did not answer") in words
    assert fake_dns.address in words


def test_a_key_that_does_not_exist_is_an_answer(fake_dns: FakeDNS) -> None:
    private, _ = ed25519_key()
    raw = sign(message(), private, "example.com")
    assert verdict(raw, fake_dns) == ("From bob@example.com is not authenticated: dkim=fail "
                                      "(d=example.com: signature does not verify)")


def test_one_aligned_pass_is_enough_even_when_another_key_cannot_be_fetched(fake_dns: FakeDNS
                                                                            ) -> None:
    private, public = ed25519_key()
    fake_dns.txt["sel._domainkey.example.com"] = b"v=DKIM1; k=ed25519; p=" + public
    fake_dns.txt["sel._domainkey.esp.example"] = b"v=DKIM1; k=ed25519; p=" + public
    fake_dns.servfail.add("sel._domainkey.mailer.example")
    both = sign(sign(message(), private, "example.com"), private, "mailer.example")
    assert verdict(both, fake_dns) is None
    # an unaligned pass does not authenticate From; the unfetched key still might
    other = sign(sign(message(), private, "esp.example"), private, "mailer.example")
    with pytest.raises(SenderCheckDeferred):
        verdict(other, fake_dns)


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1", ("127.0.0.1", 53)),
    ("127.0.0.1:5353", ("127.0.0.1", 5353)),
    ("::1", ("::1", 53)),
    ("[::1]:5353", ("::1", 5353)),
])
def test_resolver_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_resolver(text) == expected


@pytest.mark.parametrize(("text", "words"), [
    ("dns.example.com", "is not an IP address"),
    ("127.0.0.1:0", "is not a port number"),
    ("127.0.0.1:dns", "is not a port number"),
])
def test_bad_resolver_addresses(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_resolver(text)
