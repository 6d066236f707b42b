"""Seeds given by address: learn each seed's node name by a Hello exchange (the gossip machine deals in
names only, protocol/gossip.py).

`dynakv node --seed HOST:PORT`: the runtime connects to the seed's cluster port, says Hello (with its
own cluster address, so the seed can open its link back), reads the seed's Hello, and closes. The
name goes to the Node as a seed and the address to the peer links. A seed that cannot be reached is
retried with backoff until it answers: a node started with a seed and nothing else waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Final

from dynakv.core.errors import RemoteProtocolError
from dynakv.runtime.backoff import Backoff
from dynakv.runtime.framed import HELLO_TIMEOUT_S, make_hello
from dynakv.runtime.framed import Host as FramedHost
from dynakv.runtime.node_state import Address
from dynakv.wire.codec import decode_hello
from dynakv.wire.framing import HEADER, encode_frame

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 2.0


async def hello_name(host: FramedHost, address: Address, local_host: str) -> str | None:
    """The node name the peer at `address` gives in its Hello; None when it cannot be had."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(address.host, address.port, local_addr=(local_host, 0)), CONNECT_TIMEOUT_S
        )
    except (OSError, TimeoutError) as err:
        log.info("seed %s: cannot connect: %s", address, err)
        return None
    try:
        writer.write(encode_frame(make_hello(host), host.frame_bytes_max))
        header = await asyncio.wait_for(reader.readexactly(HEADER.size), HELLO_TIMEOUT_S)
        (size,) = HEADER.unpack(header)
        if not 0 < size <= host.frame_bytes_max:
            return None
        hello = decode_hello(await asyncio.wait_for(reader.readexactly(size), HELLO_TIMEOUT_S))
    except (OSError, TimeoutError, asyncio.IncompleteReadError, RemoteProtocolError) as err:
        log.info("seed %s: no hello: %s", address, err)
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    if hello.role != "node" or hello.cluster != host.cluster_name or hello.name == host.name:
        log.warning("seed %s is %s %r of cluster %r: ignored", address, hello.role, hello.name, hello.cluster)
        return None
    return hello.name


async def resolve_seed(
    host: FramedHost, address: Address, local_host: str, found: Callable[[str, Address], None]
) -> None:
    """Ask `address` for its name until it answers, then report it with `found(name, address)`."""
    backoff = Backoff(random.Random(str(address)))
    while True:
        name = await hello_name(host, address, local_host)
        if name is not None:
            found(name, address)
            return
        await asyncio.sleep(backoff.next_delay_ms() / 1000)
