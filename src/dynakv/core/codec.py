"""msgpack encoding of core values, with a format version and a type tag.

Every encoded core value is the msgpack array `[FORMAT_VERSION, tag, payload]`. Decoding accepts only
bytes this module could have written: any other input (random, truncated, another version, another
tag, a payload of the wrong shape) raises `DecodeError` and nothing else. The `want_*` helpers check
the shape of a decoded payload field by field, so that the decoders of the value types stay short.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import msgpack

from dynakv.core.errors import DecodeError

FORMAT_VERSION = 1

# Bounds handed to msgpack so that a hostile length prefix cannot make it allocate gigabytes.
_MAX_CONTAINER_LEN = 1 << 20
_MAX_BLOB_LEN = 64 << 20

T = TypeVar("T")


def pack(payload: Any) -> bytes:
    """Encode a plain payload (ints, bytes, str, bool, None, lists, dicts)."""
    data: bytes = msgpack.packb(payload, use_bin_type=True)
    return data


def unpack(data: bytes) -> Any:
    """Decode one msgpack value that fills `data` exactly; anything else is a `DecodeError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=False,
            max_str_len=_MAX_BLOB_LEN,
            max_bin_len=_MAX_BLOB_LEN,
            max_array_len=_MAX_CONTAINER_LEN,
            max_map_len=_MAX_CONTAINER_LEN,
            max_ext_len=0,
        )
    # msgpack signals bad input with several unrelated exception types (ExtraData, FormatError,
    # StackError, ValueError, UnicodeDecodeError, TypeError for unhashable map keys); the caller
    # must see one.
    except Exception as exc:
        raise DecodeError(f"not a valid msgpack value: {exc.__class__.__name__}: {exc}") from None


def encode(tag: str, payload: Any) -> bytes:
    """Encode `payload` as a core value of type `tag`."""
    return pack([FORMAT_VERSION, tag, payload])


def decode(data: bytes, tag: str) -> Any:
    """Return the payload of an encoded core value of type `tag`; raise `DecodeError` otherwise."""
    envelope = unpack(data)
    version, found_tag, payload = want_tuple(envelope, "envelope", 3)
    if version != FORMAT_VERSION:
        raise DecodeError(f"format version {version!r} is not supported (expected {FORMAT_VERSION})")
    if found_tag != tag:
        raise DecodeError(f"expected a {tag!r} value, found {found_tag!r}")
    return payload


def want_int(value: Any, field: str, lo: int | None = None, hi: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise DecodeError(f"{field}: expected an integer, got {type(value).__name__}")
    if lo is not None and value < lo:
        raise DecodeError(f"{field}: {value} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise DecodeError(f"{field}: {value} is above the maximum {hi}")
    return value


def want_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise DecodeError(f"{field}: expected a boolean, got {type(value).__name__}")
    return value


def want_str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise DecodeError(f"{field}: expected a string, got {type(value).__name__}")
    return value


def want_bytes(value: Any, field: str) -> bytes:
    if not isinstance(value, bytes):
        raise DecodeError(f"{field}: expected bytes, got {type(value).__name__}")
    return value


def want_list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise DecodeError(f"{field}: expected a list, got {type(value).__name__}")
    return value


def want_tuple(value: Any, field: str, length: int) -> list[Any]:
    """A list of exactly `length` items (msgpack has no tuples)."""
    items = want_list(value, field)
    if len(items) != length:
        raise DecodeError(f"{field}: expected {length} items, got {len(items)}")
    return items


def want_optional(value: Any, field: str, want: Callable[[Any, str], T]) -> T | None:
    return None if value is None else want(value, field)


def want_list_of(value: Any, field: str, want: Callable[[Any, str], T]) -> list[T]:
    return [want(item, f"{field}[{i}]") for i, item in enumerate(want_list(value, field))]
