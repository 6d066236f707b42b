"""Query parameters of object requests, validated with Riak's meanings (riak-http.md section 1.3).

Quorums are a non-negative integer or one/quorum/all/default; "default" means the bucket's setting and
maps to None, as an absent parameter does. Whether a quorum exceeds n_val is the data path's check: it
knows the bucket. Unknown parameters are ignored because the client assumes so.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl

from dynakv.api.riak_http import HttpResponse, text_response
from dynakv.core.config import Quorum

QUORUM_PARAMS: Final = ("r", "w", "dw", "rw", "pr", "pw")
QUORUM_WORDS: Final = ("one", "quorum", "all")
# Nine digits keep a quorum or timeout far from any integer overflow further down while allowing
# every sensible value (a timeout of 999,999,999 ms is eleven days).
_DIGITS: Final = re.compile(r"[0-9]{1,9}")
QUERY_FIELDS_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class ObjectParams:
    """Everything an object request may say in its query string, validated."""

    r: Quorum | None = None
    w: Quorum | None = None
    dw: Quorum | None = None
    rw: Quorum | None = None
    pr: Quorum | None = None
    pw: Quorum | None = None
    basic_quorum: bool | None = None
    notfound_ok: bool | None = None
    timeout_ms: int | None = None
    return_body: bool = False
    vtag: str | None = None


def parse_query(query: str) -> dict[str, str] | HttpResponse:
    """The first value of each parameter, as Riak's webmachine reads them."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=QUERY_FIELDS_MAX)
    except ValueError as err:
        return text_response(400, f"bad query string: {err}")
    first: dict[str, str] = {}
    for name, value in pairs:
        first.setdefault(name, value)
    return first


def parse_quorum(name: str, value: str) -> Quorum | HttpResponse | None:
    if value == "default":
        return None
    if value in QUORUM_WORDS:
        return value
    if _DIGITS.fullmatch(value):
        return int(value)
    return text_response(400, f"{name} query parameter must be an integer or one, quorum, all or default")


def parse_flag(name: str, value: str) -> bool | HttpResponse | None:
    if value == "true":
        return True
    if value == "false":
        return False
    if value == "default":
        return None
    return text_response(400, f"{name} query parameter must be true, false or default")


def parse_timeout(value: str) -> int | HttpResponse:
    if _DIGITS.fullmatch(value) and int(value) > 0:
        return int(value)
    return text_response(400, "timeout query parameter must be a positive integer of milliseconds")


def _quorums(query: Mapping[str, str], names: Iterable[str]) -> dict[str, Quorum | None] | HttpResponse:
    found: dict[str, Quorum | None] = {}
    for name in names:
        if name in query:
            parsed = parse_quorum(name, query[name])
            if isinstance(parsed, HttpResponse):
                return parsed
            found[name] = parsed
    return found


def parse_object_params(query: Mapping[str, str]) -> ObjectParams | HttpResponse:
    """Validate every parameter Riak knows for object requests, whatever the method: Riak answers 400
    for a bad r on a PUT too, so a client's mistake is never silently ignored."""
    quorums = _quorums(query, QUORUM_PARAMS)
    if isinstance(quorums, HttpResponse):
        return quorums
    flags: dict[str, bool | None] = {}
    for name in ("basic_quorum", "notfound_ok"):
        if name in query:
            flag = parse_flag(name, query[name])
            if isinstance(flag, HttpResponse):
                return flag
            flags[name] = flag
    timeout_ms: int | None = None
    if "timeout" in query:
        parsed = parse_timeout(query["timeout"])
        if isinstance(parsed, HttpResponse):
            return parsed
        timeout_ms = parsed
    return ObjectParams(
        r=quorums.get("r"),
        w=quorums.get("w"),
        dw=quorums.get("dw"),
        rw=quorums.get("rw"),
        pr=quorums.get("pr"),
        pw=quorums.get("pw"),
        basic_quorum=flags.get("basic_quorum"),
        notfound_ok=flags.get("notfound_ok"),
        timeout_ms=timeout_ms,
        return_body=query.get("returnbody") == "true",  # any other value means false (Riak)
        vtag=query.get("vtag"),
    )
