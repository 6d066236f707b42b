"""The plain HTTP values the Riak mapping works on: a response, and request headers as a multi-dict.

Pure data, no server: the HTTP server (api/http_server.py) turns its framework's request into
these and writes an `HttpResponse` back unchanged, so everything Riak-specific is testable without sockets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

HeaderPairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete answer. Header order is kept, and a name may repeat (the server must not merge them)."""

    status: int
    headers: HeaderPairs = ()
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of `name` (case-insensitive), for tests and the server's logging."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)


def text_response(status: int, message: str, headers: HeaderPairs = ()) -> HttpResponse:
    """A text/plain answer; Riak's errors are text/plain reasons and the client shows them verbatim."""
    body = (message.rstrip("\n") + "\n").encode("utf-8", "replace")
    return HttpResponse(status, (("Content-Type", "text/plain"), *headers), body)


@dataclass(frozen=True, slots=True)
class Headers:
    """Request headers as a case-insensitive multi-dict; a name may repeat (Link, X-Riak-Index-*)."""

    pairs: HeaderPairs = field(default=())

    @classmethod
    def of(cls, raw: Headers | Mapping[str, str] | Iterable[tuple[str, str]]) -> Headers:
        if isinstance(raw, Headers):
            return raw
        items = raw.items() if isinstance(raw, Mapping) else raw
        return cls(tuple((str(k), str(v)) for k, v in items))

    def get_all(self, name: str) -> list[str]:
        wanted = name.lower()
        return [v for k, v in self.pairs if k.lower() == wanted]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None

    def with_prefix(self, prefix: str) -> list[tuple[str, str]]:
        """(suffix, value) for every header whose name starts with `prefix`, case-insensitively."""
        low = prefix.lower()
        return [(k[len(prefix) :], v) for k, v in self.pairs if k.lower().startswith(low)]
