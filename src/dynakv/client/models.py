"""What the client returns and raises: plain result values and one typed exception per way to fail.

Results are built from the protocol's reply messages but carry no server types, so code using the
client depends only on this module. Every exception derives from `DynakvClientError`; the ones that
come from the server keep the server's message and the fields it named (quorum, counts, input field).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dynakv.core.errors import DynakvError
from dynakv.core.objects import Content

# ---------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True, slots=True)
class Sibling:
    """One concurrent version of a value, with its metadata as the writer stored it.

    `last_modified_ms` is the timestamp the writing client put on it (milliseconds since the epoch),
    not a server clock: see `AsyncClient.put`.
    """

    value: bytes
    content_type: str
    charset: str | None = None
    content_encoding: str | None = None
    # Left out of the hash because a dict is unhashable; equality still compares it.
    usermeta: dict[str, str] = field(default_factory=dict, hash=False)
    links: tuple[tuple[str, str, str], ...] = ()  # (bucket, key, tag)
    indexes: tuple[tuple[str, str], ...] = ()  # (index name, value)
    last_modified_ms: int = 0
    deleted: bool = False  # a tombstone: a delete concurrent with the other siblings

    @classmethod
    def from_content(cls, content: Content) -> Sibling:
        return cls(
            value=content.value,
            content_type=content.content_type,
            charset=content.charset,
            content_encoding=content.content_encoding,
            usermeta=dict(content.usermeta),
            links=content.links,
            indexes=content.indexes,
            last_modified_ms=content.last_modified_ms,
            deleted=content.deleted,
        )

    def text(self, errors: str = "strict") -> str:
        """The value decoded with its charset (UTF-8 when none is given)."""
        return self.value.decode(self.charset or "utf-8", errors)


@dataclass(frozen=True, slots=True)
class GetResult:
    """The live siblings of a key and the context to write back with.

    `found` is False when no replica holds a live value (never written, or deleted); `context` is still
    meaningful then: a put with it supersedes the tombstone rather than becoming its sibling.
    `tombstones` are deletes concurrent with the live siblings (a delete raced a write): writing back
    with `context` resolves them along with the siblings.
    """

    siblings: list[Sibling]
    context: bytes
    found: bool
    tombstones: list[Sibling] = field(default_factory=list)

    @property
    def sibling(self) -> Sibling | None:
        """The only sibling; None when not found; `SiblingsError` when there are several to resolve."""
        if not self.siblings:
            return None
        if len(self.siblings) > 1:
            raise SiblingsError(len(self.siblings))
        return self.siblings[0]

    @property
    def value(self) -> bytes | None:
        """The only sibling's value; None when not found; `SiblingsError` when there are several."""
        only = self.sibling
        return None if only is None else only.value


@dataclass(frozen=True, slots=True)
class PutResult:
    """The context of the object after the put; its live siblings (and concurrent tombstones) too
    when the put asked for the body."""

    context: bytes
    siblings: list[Sibling]
    tombstones: list[Sibling] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RepairProgress:
    """How far the last repair started on the node got: partitions whose exchanges all ended, of those
    it covers; keys that node's merges changed since it began; exchanges that did not complete."""

    partitions_total: int
    partitions_done: int
    keys_repaired: int
    exchanges_failed: int
    finished: bool


@dataclass(frozen=True, slots=True)
class MemberInfo:
    """One member as the answering node sees it: reachable now or not, and the partitions it owns."""

    name: str
    reachable: bool
    partitions_owned: int
    state: str = "valid"  # joining, valid, leaving, exiting or down


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """The cluster as one node (`node`) sees it. `hints_pending` are the hints that node holds;
    `transfers_pending` the ownership moves not yet complete in its cluster state (the same on every
    node once gossip agrees; 0 when no membership change is under way); `transfers_active` the outbound
    transfers of every kind (ownership, hinted, repair) that node is running; `trees_building` counts its
    anti-entropy trees still being built after a start."""

    node: str
    members: list[MemberInfo]
    hints_pending: int
    transfers_pending: int
    partitions: int
    n_val: int
    trees_building: int
    transfers_active: int


# ---------------------------------------------------------------------------------------------------
# Exceptions


class DynakvClientError(DynakvError):
    """Base of everything the client raises on purpose."""


class SiblingsError(DynakvClientError):
    """A single value was asked for, but the key holds several concurrent siblings to resolve."""

    def __init__(self, count: int) -> None:
        super().__init__(f"the key has {count} siblings; read `siblings` and put the resolved value")
        self.count = count


class ServerError(DynakvClientError):
    """A failure the server reported for one request; the connection is still good."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unavailable(ServerError):
    """Too few replicas could take part: `needed` of them for `quorum_field` ("r", "w", "pw"...),
    `acknowledged` did."""

    def __init__(
        self, needed: int | None, acknowledged: int | None, quorum_field: str | None, message: str = ""
    ) -> None:
        super().__init__(message or f"{quorum_field}: {needed} needed, {acknowledged} acknowledged")
        self.needed = needed
        self.acknowledged = acknowledged
        self.quorum_field = quorum_field


class Timeout(ServerError):
    """No answer in time. From the server, `needed` and `acknowledged` count replicas for the quorum
    `quorum_field`; when the client itself gave up waiting for the server, all three are None."""

    def __init__(
        self,
        needed: int | None,
        acknowledged: int | None,
        message: str = "",
        quorum_field: str | None = None,
    ) -> None:
        super().__init__(message or f"{quorum_field}: {needed} needed, {acknowledged} acknowledged")
        self.needed = needed
        self.acknowledged = acknowledged
        self.quorum_field = quorum_field


class BadRequest(ServerError):
    """The request itself is wrong; `field` names the input to fix ("key", "r", "value"...)."""

    def __init__(self, field: str | None, message: str = "") -> None:
        super().__init__(message or f"{field}: refused")
        self.field = field


class Overloaded(ServerError):
    """The server reached a bound on pending work; retrying later may succeed."""


class StorageFailure(ServerError):
    """The server's storage engine failed while serving the request."""


class ConnectionFailed(DynakvClientError):
    """No address answered (connect refused, timed out, or the handshake failed)."""


class ConnectionLost(DynakvClientError):
    """The connection closed with the request in flight: it may or may not have been applied."""


class ProtocolError(DynakvClientError):
    """The server sent bytes that break the protocol (or speaks another version); the connection is
    closed and every request in flight on it fails with this."""
