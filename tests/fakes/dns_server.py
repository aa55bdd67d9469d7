"""A DNS server on 127.0.0.1 (UDP) that serves TXT records, SERVFAILs or silence, per name.

Tests point an email account's `dns_resolver` here, so DKIM keys are fetched the way a real
resolver would be asked, and no test ever asks a real one.
"""

from __future__ import annotations

import socket
import threading

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


class FakeDNS:
    """`txt[name]` is answered, `servfail` names get SERVFAIL, `silent` names no answer at all;
    anything else is NXDOMAIN. Names are given without the trailing dot."""

    def __init__(self) -> None:
        self.txt: dict[str, bytes] = {}
        self.servfail: set[str] = set()
        self.silent: set[str] = set()
        self.queries: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        """What `dns_resolver:` takes."""
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> FakeDNS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._sock.recvfrom(4096)
            except TimeoutError:
                continue
            answer = self._answer(data)
            if answer is not None:
                self._sock.sendto(answer, peer)

    def _answer(self, data: bytes) -> bytes | None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text().rstrip(".").lower()
        self.queries.append(name)
        if name in self.silent:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name in self.txt and question.rdtype == dns.rdatatype.TXT:
            record = self.txt[name]
            # a TXT string holds at most 255 bytes: longer keys are split, as zone files do
            chunks = " ".join(f'"{record[i:i + 255].decode()}"' for i in range(0, len(record), 255))
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT", chunks))
        elif name not in self.txt:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()
