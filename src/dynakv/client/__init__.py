"""L4: the Python client for the native protocol (imports no server code).

    from dynakv.client import Client

    with Client(["127.0.0.1:8087", "127.0.0.1:8088"]) as client:
        client.put("users", "alice", b"...", content_type="application/json", w=2)
        got = client.get("users", "alice")
        client.put("users", "alice", resolve(got.siblings), context=got.context)

`AsyncClient` is the same API for asyncio, with many requests in flight on one connection.
"""

from dynakv.client.async_client import AsyncClient
from dynakv.client.models import (
    BadRequest,
    ClusterStatus,
    ConnectionFailed,
    ConnectionLost,
    DynakvClientError,
    GetResult,
    MemberInfo,
    Overloaded,
    ProtocolError,
    PutResult,
    RepairProgress,
    ServerError,
    Sibling,
    SiblingsError,
    StorageFailure,
    Timeout,
    Unavailable,
)
from dynakv.client.sync_client import Client

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "ClusterStatus",
    "ConnectionFailed",
    "ConnectionLost",
    "DynakvClientError",
    "GetResult",
    "MemberInfo",
    "Overloaded",
    "ProtocolError",
    "PutResult",
    "RepairProgress",
    "ServerError",
    "Sibling",
    "SiblingsError",
    "StorageFailure",
    "Timeout",
    "Unavailable",
]
