"""Fixtures shared by the storage tests: every engine, opened fresh in a temporary directory.

`engine` is parameterized over every registered engine, so each conformance test runs once per engine;
`disk_engine_name` covers only the engines that keep data across a close and reopen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dynakv.protocol.ports import StorageEngine
from dynakv.storage.registry import DISK_ENGINES, ENGINES, open_engine

Opener = Callable[[], StorageEngine]


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(params=DISK_ENGINES)
def disk_engine_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def engine(engine_name: str, tmp_path: Path) -> Iterator[StorageEngine]:
    store = open_engine(engine_name, str(tmp_path / "store"))
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def reopen(disk_engine_name: str, tmp_path: Path) -> Iterator[Opener]:
    """Opens the disk engine at one fixed path, as often as asked; closes whatever is left open."""
    opened: list[StorageEngine] = []

    def open_again() -> StorageEngine:
        store = open_engine(disk_engine_name, str(tmp_path / "store"))
        opened.append(store)
        return store

    try:
        yield open_again
    finally:
        for store in opened:
            store.close()
