"""Checking a client request before any work: sizes against Limits, quorums against n_val.

Every refusal is a `Failure` of kind BAD_REQUEST naming the field, so a client sees which input to fix.
"""

from __future__ import annotations

from dynakv.core.config import DEFAULT_QUORUM, BucketProps, Limits, Quorum, resolve_quorum
from dynakv.core.errors import ConfigError
from dynakv.protocol.messages import (
    ClientRequest,
    DeleteRequest,
    Failure,
    FailureKind,
    GetRequest,
    PutRequest,
)


def bad_request(field: str, message: str) -> Failure:
    return Failure(FailureKind.BAD_REQUEST, message, field=field)


def check_bucket(bucket: bytes, limits: Limits) -> Failure | None:
    if not bucket:
        return bad_request("bucket", "bucket: must not be empty")
    if len(bucket) > limits.bucket_bytes_max:
        size, limit = len(bucket), limits.bucket_bytes_max
        return bad_request("bucket", f"bucket is {size} bytes, over the limit of {limit}")
    return None


def check_names(bucket: bytes, key: bytes, limits: Limits) -> Failure | None:
    """Bucket and key against the limits; shared by object requests and the service requests."""
    if not bucket:
        return bad_request("bucket", "bucket: must not be empty")
    if not key:
        return bad_request("key", "key: must not be empty")
    if (failure := check_bucket(bucket, limits)) is not None:
        return failure
    if len(key) > limits.key_bytes_max:
        size, limit = len(key), limits.key_bytes_max
        return bad_request("key", f"key is {size} bytes, over the limit of {limit}")
    return None


def check_timeout(timeout: int | None) -> Failure | None:
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1):
        return bad_request("timeout_ms", f"timeout_ms: {timeout!r} is not a positive integer")
    return None


def check_sizes(request: ClientRequest, limits: Limits) -> Failure | None:
    if (failure := check_names(request.bucket, request.key, limits)) is not None:
        return failure
    if isinstance(request, PutRequest) and len(request.content.value) > limits.value_bytes_max:
        size, limit = len(request.content.value), limits.value_bytes_max
        return bad_request("value", f"value is {size} bytes, over the limit of {limit}")
    return check_timeout(request.timeout_ms)


def _resolve(name: str, value: Quorum | None, default: Quorum, n_val: int) -> int:
    minimum = 1 if name in ("r", "w") else 0
    # A request's "default" is Riak's too: the bucket's value, like leaving the quorum out.
    chosen = default if value is None or value == DEFAULT_QUORUM else value
    return resolve_quorum(name, chosen, n_val, minimum=minimum)


def resolve_quorums(request: ClientRequest, props: BucketProps) -> dict[str, int] | Failure:
    """The request's quorums as integers (falling back on the bucket's), or the BAD_REQUEST naming
    the first one out of range."""
    n_val = props.n_val
    if isinstance(request, GetRequest):
        asked: dict[str, Quorum | None] = {"r": request.r, "pr": request.pr}
    else:
        assert isinstance(request, PutRequest | DeleteRequest)
        asked = {"w": request.w, "dw": request.dw, "pw": request.pw}
    try:
        return {name: _resolve(name, value, getattr(props, name), n_val) for name, value in asked.items()}
    except ConfigError as err:
        return bad_request(err.field, str(err))
