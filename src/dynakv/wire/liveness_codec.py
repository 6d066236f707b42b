"""Probe peer messages <-> msgpack field lists (tags 24 and 25; wire/codec.py frames them).

A ping is `[24, seq]`, a pong `[25, seq]`. Decoding raises DecodeError only; `codec.decode_peer` turns
that into RemoteProtocolError.
"""

from __future__ import annotations

from typing import Any, Final

from dynakv.core.codec import want_int
from dynakv.core.errors import DecodeError
from dynakv.protocol.liveness import Ping, Pong

PING: Final = 24
PONG: Final = 25
LIVENESS_TAGS: Final = frozenset({PING, PONG})

_INT64_MAX: Final = (1 << 63) - 1


def liveness_fields(msg: Ping | Pong) -> list[Any]:
    return [PING if isinstance(msg, Ping) else PONG, msg.seq]


def decode_liveness(tag: int, f: list[Any]) -> Ping | Pong:
    if tag in LIVENESS_TAGS and len(f) == 1:
        seq = want_int(f[0], "seq", 0, _INT64_MAX)
        return Ping(seq) if tag == PING else Pong(seq)
    raise DecodeError(f"tag {tag} with {len(f)} fields is not a probe message")
