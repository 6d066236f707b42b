"""The real `riak` 2.7.0 Python client on Python 3.11, for tests only.

The client (2016) imports ABCs such as `collections.Iterable` that Python 3.10 moved to
`collections.abc` only, and `riak.codecs` calls `collections.namedtuple(..., verbose=False)`, a keyword
Python 3.7 removed. `riak_module()` applies those two shims (to the `collections` module of the test
process: extra aliases, and a namedtuple that drops `verbose`), then imports riak; `riak_client()`
returns a client speaking HTTP to one node. Nothing in src/ is patched.
"""

from __future__ import annotations

import collections
import collections.abc
import functools
import importlib
import warnings
from typing import Any

IO_TIMEOUT_S = 30.0

_ABC_NAMES = (
    "Callable",
    "Container",
    "Hashable",
    "ItemsView",
    "Iterable",
    "Iterator",
    "KeysView",
    "Mapping",
    "MappingView",
    "MutableMapping",
    "MutableSequence",
    "MutableSet",
    "Sequence",
    "Set",
    "Sized",
    "ValuesView",
)


def _apply_shims() -> None:
    for name in _ABC_NAMES:
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    namedtuple = collections.namedtuple
    if getattr(namedtuple, "_dynakv_shim", False):
        return

    @functools.wraps(namedtuple)
    def without_verbose(*args: Any, verbose: bool = False, **kw: Any) -> Any:
        del verbose
        return namedtuple(*args, **kw)

    without_verbose._dynakv_shim = True  # type: ignore[attr-defined]
    collections.namedtuple = without_verbose  # type: ignore[assignment]


def riak_module() -> Any:
    """The `riak` package, imported after the shims."""
    _apply_shims()
    with warnings.catch_warnings():  # distutils' LooseVersion, cgi: the client's age, not our concern
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module("riak")


def riak_client(http_port: int, timeout_s: float = IO_TIMEOUT_S) -> Any:
    """A `riak.RiakClient` speaking HTTP to 127.0.0.1:`http_port`; no socket wait exceeds `timeout_s`."""
    riak = riak_module()
    return riak.RiakClient(
        protocol="http",
        nodes=[{"host": "127.0.0.1", "http_port": http_port}],
        transport_options={"timeout": timeout_s},
    )


def close_client(client: Any) -> None:
    """Close every connection of `client` without waiting for claimed ones.

    `RiakClient.close()` (also run by its `__del__`) waits until every pooled connection is released.
    The 2.7.0 client never releases the connection of a streamed listing whose first answer is not a
    200 (`_stream_with_retry` closes only a stream it got), so after such a failure `close()` would
    block forever. This closes the sockets directly and marks the client closed.
    """
    pool = client._http_pool
    if pool is not None:
        with pool.lock:
            resources = list(pool.resources)
        for resource in resources:
            resource.object.close()
    client._closed = True
