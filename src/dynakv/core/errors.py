"""The error types of the core.

Three kinds of failure (ARCHITECTURE.md section 6): a broken invariant is an `AssertionError` and stays
one; malformed input from outside is a `DecodeError` (or, at the wire, a protocol error); bad settings
or requests are a `ConfigError` or `LimitExceeded`. All but assertions derive from `DynakvError` so a
boundary can catch the project's own errors without catching programmer mistakes.
"""

from __future__ import annotations


class DynakvError(Exception):
    """Base of every error dynakv raises on purpose."""


class ConfigError(DynakvError, ValueError):
    """A setting or request parameter is out of its bounds; the message names the field and the bound."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class LimitExceeded(DynakvError):
    """An input is larger than an explicit limit (key, bucket, value, siblings, frame...)."""

    def __init__(self, limit: str, size: int, maximum: int) -> None:
        super().__init__(f"{limit} is {size}, over the limit of {maximum}")
        self.limit = limit
        self.size = size
        self.maximum = maximum


class DecodeError(DynakvError):
    """Bytes that should hold an encoded core value do not: random, truncated, or of another version."""


class RemoteProtocolError(DynakvError):
    """A peer or client sent bytes that break the wire protocol; the connection is closed and counted."""
