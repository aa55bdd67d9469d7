"""DKIM key lookups through dnspython, telling "there is no such key" from "no answer now".

dkimpy's own lookup turns a timeout into a failed signature and a SERVFAIL into a missing key,
so a DNS hiccup would look like a forgery. Here both raise `KeyUnavailable`, which dkimpy lets
through, and `sender_auth: dkim` answers the mail 451 so that the sender retries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from inbox.errors import KeyUnavailable

DnsFunc = Callable[..., bytes | None]



def parse_resolver(text: str) -> tuple[str, int]:
    """`127.0.0.1`, `127.0.0.1:5353`, `::1` or `[::1]:5353` as (address, port)."""
    value = text.strip()
    host, port = value, "53"
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif value.count(":") == 1:
        host, port = value.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address: dns_resolver takes the resolver's IP "
                         "address and optional port, like 127.0.0.1:5353 or [::1]:53") from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{port!r} is not a port number (1 to 65535) in {text!r}")
    return host, int(port)


def txt_lookup(resolver: str | None, timeout: float) -> DnsFunc:
    """A dkimpy `dnsfunc` asking `resolver` (IP[:port]; None: the system's resolvers) with
    `timeout` seconds for the whole lookup."""
    chosen: list[dns.resolver.Resolver] = []

    def ask() -> dns.resolver.Resolver:
        if not chosen:
            if resolver is None:
                made = dns.resolver.Resolver()  # /etc/resolv.conf
            else:
                made = dns.resolver.Resolver(configure=False)
                made.nameservers = [dns.nameserver.Do53Nameserver(*parse_resolver(resolver))]
            made.timeout = made.lifetime = timeout
            chosen.append(made)
        return chosen[0]

    def get_txt(name: bytes | str, timeout: float = 0) -> bytes | None:
        """The TXT record at `name`; None when the name or the record does not exist."""
        try:
            text = name.decode("ascii") if isinstance(name, bytes) else name
            qname = dns.name.from_text(text)
        except (UnicodeDecodeError, dns.exception.DNSException):  # no such name can exist
            return None
        where = resolver or "the system's resolver"
        try:
            answer = ask().resolve(qname, dns.rdatatype.TXT, raise_on_no_answer=False,
                                   search=False)
        except dns.resolver.NXDOMAIN:
            return None
        except dns.exception.Timeout as error:
            raise KeyUnavailable(f"{where} did not answer for {text} in time") from error
        except dns.resolver.NoNameservers as error:  # SERVFAIL, REFUSED from every server
            raise KeyUnavailable(f"{where} could not look up {text} (SERVFAIL)") from error
        except dns.resolver.NoResolverConfiguration as error:
            raise KeyUnavailable(f"no DNS resolver is configured ({error}); "
                                 "set dns_resolver on the account") from error
        except dns.exception.DNSException as error:
            raise KeyUnavailable(f"{where} failed to look up {text}: {error}") from error
        if answer.rrset is None:
            return None
        for record in answer.rrset:
            return b"".join(record.strings)  # type: ignore[attr-defined]
        return None

    return get_txt
