"""Engines by name: what `dynakv node --storage NAME` and the tests open.

`open_engine(name, path, **options)` returns a `StorageEngine`; `path` is a directory the engine owns
(created if missing; the memory engine ignores it). Options are engine-specific keyword arguments (see
each engine's class docstring); an unknown name or option is a `ConfigError`. The default engine, and
why, is recorded in docs/adr/0002-default-storage-engine.md.
"""

from __future__ import annotations

from typing import Any

from dynakv.core.errors import ConfigError
from dynakv.protocol.ports import StorageEngine
from dynakv.storage.lmdb import LmdbEngine
from dynakv.storage.memory import MemoryEngine
from dynakv.storage.sqlite import SqliteEngine

DEFAULT_ENGINE = "sqlite"
ENGINES: tuple[str, ...] = ("sqlite", "lmdb", "memory")
DISK_ENGINES: tuple[str, ...] = ("sqlite", "lmdb")


def open_engine(name: str, path: str | None, **options: Any) -> StorageEngine:
    """Open (creating if needed) the engine `name` with its files in the directory `path`."""
    if name not in ENGINES:
        raise ConfigError("storage_engine", f"unknown engine {name!r}; choose one of {', '.join(ENGINES)}")
    if name == "memory":
        if options:
            raise ConfigError("storage_options", f"the memory engine takes no options, got {sorted(options)}")
        return MemoryEngine()
    if path is None:
        raise ConfigError("storage_path", f"the {name} engine needs a directory path")
    factory: type[SqliteEngine] | type[LmdbEngine] = SqliteEngine if name == "sqlite" else LmdbEngine
    try:
        return factory(path, **options)
    except TypeError as e:
        raise ConfigError("storage_options", f"bad option for the {name} engine: {e}") from e
