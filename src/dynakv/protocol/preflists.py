"""A key's preference list as Riak 2.1 serves it (GET /buckets/B/keys/K/preflist).

While every primary is reachable the answer is the n_val primaries in walk order. When this node
counts some primary as down it gives Riak's annotated form: the reachable primaries, then one fallback
per unreachable primary, marked primary=False. Like Riak's vnode index, a fallback's partition is the
one of the primary it stands in for: the fallback keeps that partition's replica while it is away.
"""

from __future__ import annotations

from dynakv.core.preflist import preference_list, walk
from dynakv.protocol.data_path import DataPath
from dynakv.protocol.messages import Failure, PreflistEntry, PreflistReply, PreflistRequest
from dynakv.protocol.requests import check_names


def preflist_reply(data: DataPath, request: PreflistRequest) -> PreflistReply | Failure:
    data.counters[f"requests.{type(request).__name__}"] += 1
    failure = check_names(request.bucket, request.key, data.limits)
    if failure is not None:
        return failure
    n_val = data.props_for(request.bucket).n_val
    partition = data.ring.partition_for_key(request.bucket, request.key)
    # A node never counts itself as down.
    unreachable = frozenset(node for node in data.down if node != data.name)
    where = {node: index for index, node in walk(data.ring, partition)}
    entries = tuple(
        PreflistEntry(
            where[entry.stands_in_for] if entry.stands_in_for is not None else entry.partition,
            entry.node,
            entry.primary,
        )
        for entry in preference_list(data.ring, partition, n_val, unreachable)
    )
    return PreflistReply(entries)
