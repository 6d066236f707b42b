"""The 300 Multiple Choices answers for siblings (riak-http.md section 1.7).

The client splits the body on `\\r?\\n--B(--)?\\r?\\n` and drops the first and last pieces, so the body
must start with CRLF before the first boundary (else the first sibling is lost) and end with
`CRLF --B-- CRLF`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

from dynakv.api.riak_headers import (
    base62,
    content_headers,
    context_etag,
    encode_vclock,
    http_date,
    vtag,
)
from dynakv.api.riak_http import HttpResponse
from dynakv.core.objects import Content

CRLF: Final = b"\r\n"
VARY: Final = "Accept, Accept-Encoding"


def boundary_for(context: bytes, values: Sequence[bytes]) -> str:
    """A boundary derived from the context (so a response is reproducible) that no value contains.

    A value containing `--B` could be mistaken for a delimiter by the client's split, so the boundary
    is re-derived until it appears in none of them.
    """
    attempt = 0
    while True:
        seed = context + attempt.to_bytes(4, "big")
        boundary = base62(hashlib.blake2b(seed, digest_size=16).digest())
        marker = b"--" + boundary.encode("ascii")
        if not any(marker in value for value in values):
            return boundary
        attempt += 1


def multipart_body(bucket: bytes, siblings: Sequence[Content], boundary: str) -> bytes:
    delimiter = b"--" + boundary.encode("ascii")
    out = bytearray()
    for content in siblings:
        out += CRLF + delimiter + CRLF
        for name, value in content_headers(bucket, content, etag_quoted=False):
            out += f"{name}: {value}".encode() + CRLF
        out += CRLF + content.value
    out += CRLF + delimiter + b"--" + CRLF
    return bytes(out)


def multipart_response(bucket: bytes, siblings: Sequence[Content], context: bytes) -> HttpResponse:
    """300 multipart/mixed; the top-level vclock is the merged clock, so writing with it resolves."""
    boundary = boundary_for(context, [c.value for c in siblings])
    newest = max(c.last_modified_ms for c in siblings)
    headers = (
        ("Content-Type", f"multipart/mixed; boundary={boundary}"),
        ("X-Riak-Vclock", encode_vclock(context)),
        ("ETag", f'"{context_etag(context)}"'),
        ("Last-Modified", http_date(newest)),
        ("Vary", VARY),
    )
    return HttpResponse(300, headers, multipart_body(bucket, siblings, boundary))


def text_siblings_response(siblings: Sequence[Content], context: bytes) -> HttpResponse:
    """Riak's text/plain 300: `Siblings:` then one vtag a line, for clients that refuse multipart."""
    body = "Siblings:\n" + "".join(vtag(c) + "\n" for c in siblings)
    headers = (
        ("Content-Type", "text/plain"),
        ("X-Riak-Vclock", encode_vclock(context)),
        ("Vary", VARY),
    )
    return HttpResponse(300, headers, body.encode("ascii"))


def _media_ranges(accept: str) -> dict[str, float]:
    """Each media range of an Accept header with its quality (unparseable qualities count as 0)."""
    ranges: dict[str, float] = {}
    for item in accept.split(","):
        media, *params = item.split(";")
        quality = next((p.split("=", 1)[1].strip() for p in params if p.strip().startswith("q=")), "1")
        try:
            q = float(quality)
        except ValueError:
            q = 0.0
        ranges[media.strip().lower()] = q
    return ranges


def _quality(ranges: dict[str, float], media: str) -> float:
    """The quality the client gives `media`: that of the most specific range matching it."""
    kind = media.split("/", 1)[0]
    for candidate in (media, f"{kind}/*", "*/*"):
        if candidate in ranges:
            return ranges[candidate]
    return 0.0


def wants_multipart(accept: str | None) -> bool:
    """Whether siblings go out as multipart/mixed rather than Riak's text/plain list of vtags.

    Riak offers text/plain first and multipart/mixed second, so a client that accepts both equally
    (no Accept header, `*/*`: curl's default) gets text/plain, and one that prefers multipart (the
    reference client sends `multipart/mixed, application/json, */*;q=0.5`) gets multipart. Where Riak
    would answer 406 (neither acceptable), dynakv sends multipart, which carries the values."""
    ranges = _media_ranges(accept or "*/*")
    text, multipart = _quality(ranges, "text/plain"), _quality(ranges, "multipart/mixed")
    if text <= 0 and multipart <= 0:
        return True
    return multipart > text
