"""A child process for test_crash: writes keys forever and prints each one once it is acknowledged.

Run as `python -m tests.storage.crash_writer ENGINE PATH MODE` from the repository root. MODE is
`durable` (every write durable; some as durable batches of three) or `flush` (buffered writes, a flush
every ten, acknowledged only after the flush). Each acknowledged key number is printed on its own line
as soon as the engine call that made it durable has returned. The process stops by itself after
`MAX_SECONDS`, so a parent that dies cannot leave it running.
"""

from __future__ import annotations

import hashlib
import sys
import time

from dynakv.protocol.ports import PutOp
from dynakv.storage.registry import open_engine

MAX_SECONDS = 60.0
PARTITIONS = 4


def entry(i: int) -> tuple[int, bytes, bytes, bytes]:
    """The (partition, bucket, key, value) written for key number i; the parent checks against it."""
    digest = hashlib.sha256(b"%d" % i).digest()
    # Every 16th value is 64 KiB so that some commits span many pages when the kill lands.
    value = digest * (2048 if i % 16 == 0 else 1 + i % 8)
    return i % PARTITIONS, b"bucket-%d" % (i % 3), b"key-%08d" % i, value


def main(engine_name: str, path: str, mode: str) -> None:
    store = open_engine(engine_name, path)
    deadline = time.monotonic() + MAX_SECONDS
    i = 0
    while time.monotonic() < deadline:
        if mode == "durable" and i % 4 == 3:
            group = [i, i + 1, i + 2]
            store.write_batch([PutOp(*entry(n)) for n in group], durable=True)
        elif mode == "durable":
            group = [i]
            store.put(*entry(i), durable=True)
        else:
            group = list(range(i, i + 10))
            for n in group:
                store.put(*entry(n), durable=False)
            store.flush()
        # One write per group; stdout is a pipe, so flush at once: an acknowledgement must not wait.
        sys.stdout.write("".join(f"{n}\n" for n in group))
        sys.stdout.flush()
        i = group[-1] + 1
    store.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
