"""A hand-driven cluster of anti-entropy modules over memory engines, for the anti-entropy tests.

Every message goes through the real wire codec (encoded, measured, decoded) on its way, so the tests
count true bytes and exercise the codec in the loop. Nothing is delivered unless the test says so.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from dynakv.core.claim import claim
from dynakv.core.config import Limits
from dynakv.core.objects import Content, StoredObject, encode_object
from dynakv.protocol.ae_peer import storage_merge
from dynakv.protocol.anti_entropy import AeSettings, AntiEntropy
from dynakv.protocol.effects import Effect, Send
from dynakv.protocol.messages import AeKeysReply, AeKeysRequest, AeNodesReply, AeNodesRequest, AeObjects
from dynakv.protocol.replica import EMPTY
from dynakv.storage.memory import MemoryEngine
from dynakv.wire import codec

AeMsg = AeNodesRequest | AeNodesReply | AeKeysRequest | AeKeysReply | AeObjects


def obj(actor: str, value: bytes, base: StoredObject = EMPTY, now_ms: int = 1) -> StoredObject:
    """A write of `value` by `actor` over `base` (its context covers base's siblings)."""
    return base.update(base.context(), actor, Content(value, last_modified_ms=now_ms), now_ms)


def blob(actor: str, value: bytes) -> bytes:
    return encode_object(obj(actor, value))


@dataclass
class Sent:
    src: str
    dst: str
    msg: AeMsg
    size: int


@dataclass
class Cluster:
    nodes: list[str]
    partitions: int = 8
    n_val: int | None = None
    settings: AeSettings = field(
        default_factory=lambda: AeSettings(enabled=False, interval_ms=1_000, timeout_ms=5_000)
    )
    limits: Limits = field(default_factory=Limits)
    now_ms: int = 0
    queue: list[Sent] = field(default_factory=list)
    log: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        n_val = self.n_val or len(self.nodes)
        self.n_val = n_val
        self.ring = claim(self.nodes, self.partitions, n_val)
        self.storage: dict[str, MemoryEngine] = {}
        self.ae: dict[str, AntiEntropy] = {}
        for node in self.nodes:
            self.restart(node, MemoryEngine())

    def restart(self, node: str, storage: MemoryEngine) -> None:
        """A fresh module on `storage` (a new engine models a wiped data dir); trees rebuild."""
        assert self.n_val is not None
        self.storage[node] = storage
        self.ae[node] = AntiEntropy(
            node,
            self.ring,
            self.n_val,
            storage,
            storage_merge(storage),
            settings=self.settings,
            limits=self.limits,
            counters=Counter(),
        )
        self.ae[node].start()

    # -- data ---------------------------------------------------------------------------------------

    def write(self, node: str, partition: int, bucket: bytes, key: bytes, value: bytes | None) -> None:
        """A local write as the data path will make it: store, then tell the trees."""
        storage = self.storage[node]
        old = storage.get(partition, bucket, key)
        if value is None:
            storage.delete(partition, bucket, key)
        else:
            storage.put(partition, bucket, key, value)
        self.ae[node].on_write(partition, bucket, key, old, value)

    def everywhere(self, partition: int, bucket: bytes, key: bytes, value: bytes) -> None:
        for node in self.nodes:
            self.write(node, partition, bucket, key, value)

    def data(self, node: str, partition: int) -> list[tuple[bytes, bytes, bytes]]:
        return self.storage[node].scan(partition)

    # -- driving ------------------------------------------------------------------------------------

    def _post(self, src: str, out: list[Effect]) -> None:
        for effect in out:
            assert isinstance(effect, Send)
            assert isinstance(effect.msg, AeMsg)
            frame = codec.encode_peer(effect.msg)
            decoded = codec.decode_peer(frame)
            assert decoded == effect.msg
            assert isinstance(decoded, AeMsg)
            sent = Sent(src, effect.dst, decoded, len(frame))
            self.queue.append(sent)
            self.log.append(sent)

    def tick(self, advance_ms: int = 100, only: str | None = None) -> None:
        self.now_ms += advance_ms
        for node in self.nodes if only is None else [only]:
            out: list[Effect] = []
            self.ae[node].on_tick(self.now_ms, out)
            self._post(node, out)

    def deliver_all(self, *, duplicate: bool = False) -> None:
        """Deliver queued messages (and the ones they cause) in order, each twice with `duplicate`."""
        while self.queue:
            sent = self.queue.pop(0)
            for _ in range(2 if duplicate else 1):
                out: list[Effect] = []
                self.ae[sent.dst].on_message(sent.src, sent.msg, self.now_ms, out)
                self._post(sent.dst, out)

    def build_trees(self) -> None:
        """Tick (delivering nothing new: no exchange is forced) until every tree is built."""
        while any(ae.trees.building() for ae in self.ae.values()):
            for ae in self.ae.values():
                ae.trees.step(self.settings.build_entries_per_tick, self.now_ms)

    def repair(self, node: str, partition: int | None = None, *, duplicate: bool = False) -> list[Sent]:
        """Run `node`'s forced repair to the end; return the messages it took."""
        start = len(self.log)
        self.ae[node].repair(partition)
        while not self.ae[node].progress().finished:
            self.tick()
            self.deliver_all(duplicate=duplicate)
        return self.log[start:]

    def converged(self, partition: int) -> bool:
        first = self.data(self.nodes[0], partition)
        return all(self.data(node, partition) == first for node in self.nodes[1:])
