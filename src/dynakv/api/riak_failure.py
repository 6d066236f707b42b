"""Failures of the node's requests as Riak answers them (riak-http.md section 1.10)."""

from __future__ import annotations

from dynakv.api.riak_http import HttpResponse, text_response
from dynakv.protocol.messages import Failure, FailureKind


def failure_response(failure: Failure) -> HttpResponse:
    """400 for the client's mistakes, 503 when replicas could not take part (Riak's reason text), 500
    only for a storage failure on our side."""
    if failure.kind is FailureKind.BAD_REQUEST:
        return text_response(400, failure.message)
    if failure.kind is FailureKind.STORAGE:
        return text_response(500, f"storage error: {failure.message}")
    reason = failure.message
    if failure.field and failure.needed is not None:
        got = failure.acknowledged if failure.acknowledged is not None else 0
        reason = f"{failure.field.upper()}-value unsatisfied: {got}/{failure.needed} ({failure.message})"
    if failure.kind is FailureKind.TIMEOUT:
        reason = f"timeout: {reason}"
    return text_response(503, reason)
