"""Riak's object headers, both ways: request headers into `Content` fields, `Content` into response
headers (riak-http.md sections 1.4, 1.5 and 2).

Responses respect what Python's http.client can read (section 0.7): at most 100 header lines, so all
links are folded into one `Link` line and repeated metadata or index names into one line each.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from email.utils import formatdate
from typing import Final
from urllib.parse import quote_plus, unquote_plus

from dynakv.api.riak_http import Headers, HttpResponse, text_response
from dynakv.core import codec
from dynakv.core.objects import Content, content_to_payload

META_PREFIX: Final = "X-Riak-Meta-"
INDEX_PREFIX: Final = "X-Riak-Index-"
BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# `<url>; riaktag="tag"` or `<url>; rel="up"`, then a comma or the end. The client sends the tag
# unescaped (it cannot contain a double quote) and quote_plus-encodes bucket and key.
_LINK: Final = re.compile(r'\s*<([^<>]*)>\s*;\s*(riaktag|rel)\s*=\s*"([^"]*)"\s*(?:,|$)')
_LINK_TARGET: Final = re.compile(r"/buckets/([^/]+)/keys/([^/]+)|/riak/([^/]+)/([^/]+)")
_INT_VALUE: Final = re.compile(r"-?[0-9]{1,20}")
# Characters that cannot appear in an HTTP header line; stored metadata may come from the native
# protocol, which allows anything, and a CR/LF in a value would split the response.
_UNSAFE: Final = re.compile(r"[\x00-\x1f\x7f]")
_NOT_TOKEN: Final = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")


# ---------------------------------------------------------------------------------------------------
# Request headers


def parse_content_type(value: str | None) -> tuple[str, str | None] | HttpResponse:
    """(content type without its charset, charset). Riak: missing -> 400, no `/` in the type -> 415.

    Other parameters stay in the content type so that it is echoed as the client gave it.
    """
    if value is None or not value.strip():
        return text_response(400, "Content-Type header is required to store an object")
    media, *params = value.split(";")
    if "/" not in media:
        return text_response(415, f"unsupported media type {media.strip()!r}")
    kept, charset = [media.strip()], None
    for param in params:
        name, _, arg = param.partition("=")
        if name.strip().lower() == "charset" and charset is None:
            charset = arg.strip().strip('"')
        elif param.strip():
            kept.append(param.strip())
    return "; ".join(kept), charset or None


def parse_vclock(value: str | None) -> bytes | HttpResponse:
    """The context of an X-Riak-Vclock header: standard base64 with padding, nothing else."""
    if value is None or not value.strip():
        return b""
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return text_response(400, "X-Riak-Vclock is not standard base64 with padding")


def _link_target(url: str) -> tuple[str, str] | None:
    match = _LINK_TARGET.fullmatch(url)
    if match is None:
        return None
    bucket, key = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
    try:
        return unquote_plus(bucket, errors="strict"), unquote_plus(key, errors="strict")
    except UnicodeDecodeError:
        return None


def parse_links(values: Iterable[str]) -> tuple[tuple[str, str, str], ...] | HttpResponse:
    """Links from every Link line (the client splits long ones over several); `rel` entries are
    ignored because the `up` link is derived from the bucket, never stored."""
    links: list[tuple[str, str, str]] = []
    for value in values:
        pos = 0
        while pos < len(value) and value[pos:].strip():
            match = _LINK.match(value, pos)
            if match is None:
                return text_response(400, 'bad Link header: expected </buckets/B/keys/K>; riaktag="T"')
            pos = match.end()
            if match.group(2) == "rel":
                continue
            target = _link_target(match.group(1))
            if target is None:
                return text_response(400, f"bad Link header: cannot link to {match.group(1)!r}")
            links.append((target[0], target[1], match.group(3)))
    return tuple(links)


def parse_usermeta(headers: Headers) -> tuple[tuple[str, str], ...]:
    return tuple((name, value.strip()) for name, value in headers.with_prefix(META_PREFIX) if name)


def parse_indexes(headers: Headers) -> tuple[tuple[str, str], ...] | HttpResponse:
    """`X-Riak-Index-<name>_bin|_int: a, b`; Riak refuses other suffixes and non-integer _int values."""
    indexes: list[tuple[str, str]] = []
    for raw_name, raw_values in headers.with_prefix(INDEX_PREFIX):
        name = raw_name.lower()
        if not name.endswith(("_bin", "_int")) or len(name) <= 4:
            return text_response(400, f"index {raw_name!r} must be named <field>_bin or <field>_int")
        for value in (v.strip() for v in raw_values.split(",")):
            if not value:
                continue
            if name.endswith("_int") and not _INT_VALUE.fullmatch(value):
                return text_response(400, f"index {raw_name!r} takes integers, not {value!r}")
            indexes.append((name, value))
    return tuple(indexes)


# ---------------------------------------------------------------------------------------------------
# Response headers


def base62(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits)) or "0"


def vtag(content: Content) -> str:
    """A stable tag of one sibling: the same sibling has the same vtag on every node and every read,
    so `?vtag=` from one response works against any node. URL-safe, so it needs no quoting."""
    digest = hashlib.blake2b(codec.pack(content_to_payload(content)), digest_size=16).digest()
    return base62(digest)


def context_etag(context: bytes) -> str:
    return base62(hashlib.blake2b(context, digest_size=16).digest())


def encode_vclock(context: bytes) -> str:
    return base64.b64encode(context).decode("ascii")


def http_date(ms: int) -> str:
    """RFC 1123 in GMT, the only form the client's parser accepts (section 0.8)."""
    return formatdate(ms / 1000, usegmt=True)


def safe_value(value: str) -> str:
    return _UNSAFE.sub(" ", value)


def content_type_line(content: Content) -> str:
    if content.charset:
        return safe_value(f"{content.content_type}; charset={content.charset}")
    return safe_value(content.content_type)


def link_line(bucket: bytes, links: Iterable[tuple[str, str, str]]) -> str:
    """All links on one line, the bucket's `up` link first, everything quote_plus-encoded."""
    parts = [f'</buckets/{quote_plus(bucket)}>; rel="up"']
    parts += [
        f'</buckets/{quote_plus(b)}/keys/{quote_plus(k)}>; riaktag="{quote_plus(t)}"' for b, k, t in links
    ]
    return ", ".join(parts)


def _folded(prefix: str, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """One header line per name, repeated names joined by ", " (the 100-line cap of http.client)."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        clean = _NOT_TOKEN.sub("", name)
        if clean:
            grouped.setdefault(clean, []).append(safe_value(value))
    return [(prefix + name, ", ".join(values)) for name, values in grouped.items()]


def content_headers(bucket: bytes, content: Content, *, etag_quoted: bool = True) -> list[tuple[str, str]]:
    """The headers describing one sibling, for a 200 response or one part of a multipart 300.

    A multipart part carries `Etag: <vtag>` unquoted, a whole response `ETag: "<vtag>"` (section 1.7).
    """
    headers = [("Content-Type", content_type_line(content))]
    if content.content_encoding:
        headers.append(("Content-Encoding", safe_value(content.content_encoding)))
    headers.append(("Link", link_line(bucket, content.links)))
    headers.append(("ETag", f'"{vtag(content)}"') if etag_quoted else ("Etag", vtag(content)))
    headers.append(("Last-Modified", http_date(content.last_modified_ms)))
    if content.deleted:
        headers.append(("X-Riak-Deleted", "true"))
    headers += _folded(META_PREFIX, content.usermeta)
    headers += _folded(INDEX_PREFIX, content.indexes)
    return headers
