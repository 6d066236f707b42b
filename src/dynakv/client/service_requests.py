"""Building the service requests of the client's API (listings, bucket props, repair) from its arguments.

Checked here, as protocol.py checks the object requests: the server closes a connection on a frame it
cannot decode, so one bad argument must fail one call, not every request in flight beside it.
"""

from __future__ import annotations

from collections.abc import Mapping

from dynakv.core.errors import DecodeError
from dynakv.protocol.admin_messages import RepairRequest
from dynakv.protocol.messages import ListKeysRequest, PropValue, SetBucketProps
from dynakv.wire.service_codec import json_value

from .models import BadRequest
from .protocol import as_bytes, check_timeout

_INT64_MAX = (1 << 63) - 1


def list_keys_request(bucket: str | bytes, timeout_ms: int | None) -> ListKeysRequest:
    return ListKeysRequest(as_bytes(bucket, "bucket"), check_timeout(timeout_ms))


def repair_request(partition: int | None) -> RepairRequest:
    if partition is not None and (isinstance(partition, bool) or not isinstance(partition, int)):
        raise TypeError(f"partition: expected an integer or None, got {partition!r}")
    if partition is not None and not 0 <= partition <= _INT64_MAX:
        raise BadRequest("partition", f"partition: {partition} is out of range")
    return RepairRequest(partition)


def set_props_request(bucket: str | bytes, props: Mapping[str, object]) -> SetBucketProps:
    """Props by their Riak names, values as Riak's JSON gives them; checked here because the server
    closes the connection on a value it cannot decode (a float, bytes, a nested None...)."""
    checked: dict[str, PropValue] = {}
    for name, value in props.items():
        if not isinstance(name, str):
            raise TypeError(f"props: names must be str, got {name!r}")
        try:
            plain = json_value(value, name)
        except DecodeError as err:
            raise BadRequest(name, f"{name}: not a property value: {err}") from None
        if not isinstance(plain, bool | int | str | list | dict):
            raise BadRequest(name, f"{name}: a property value cannot be null")
        checked[name] = plain
    if not checked:
        raise BadRequest("props", "props: name at least one property to set")
    return SetBucketProps(as_bytes(bucket, "bucket"), checked)
