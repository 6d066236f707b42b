"""A put's object against the limits before it is stored, and the quorums a put waits for.

Moved out of data_path.py to keep that file under the size cap; the data path is their only user.
"""

from __future__ import annotations

from dynakv.core.config import Limits
from dynakv.core.errors import LimitExceeded
from dynakv.core.objects import StoredObject, encode_object
from dynakv.protocol.coordinator import Need, Target
from dynakv.protocol.messages import Failure
from dynakv.protocol.requests import bad_request


class Refused(Exception):
    """A put refused before anything was stored (a limit); carries the client's failure."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def encode_checked(obj: StoredObject, limits: Limits) -> bytes:
    """The object's encoding, or Refused when it has too many siblings or too many bytes."""
    if len(obj.siblings) > limits.siblings_max:
        raise Refused(
            bad_request(
                "siblings",
                f"the put would leave {len(obj.siblings)} siblings, over the limit of "
                f"{limits.siblings_max}; read, resolve and write back with the context",
            )
        )
    try:
        data = encode_object(obj)
    except LimitExceeded as err:
        raise Refused(bad_request(err.limit, str(err))) from None
    if len(data) > limits.object_bytes_max:
        raise Refused(
            bad_request(
                "object",
                f"the object would be {len(data)} bytes, over the limit of {limits.object_bytes_max}",
            )
        )
    return data


def put_needs(targets: tuple[Target, ...], quorums: dict[str, int]) -> tuple[Need, ...]:
    """The w, dw and pw quorums of a put (those above zero)."""
    every = frozenset(t.node for t in targets)
    prims = frozenset(t.node for t in targets if t.primary)
    needs = [
        Need("w", quorums["w"], every),
        Need("dw", quorums["dw"], every),
        Need("pw", quorums["pw"], prims),
    ]
    return tuple(n for n in needs if n.count > 0)
