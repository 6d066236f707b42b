"""The tidy rules hold for src/dynakv, and each rule really catches what it is meant to catch."""

from __future__ import annotations

import pytest

from tests.tidy_rules import SRC, check_source, check_tree


def test_source_tree_is_tidy() -> None:
    assert SRC.is_dir()
    violations = check_tree()
    assert violations == [], "\n".join(str(v) for v in violations)


def rules(source: str, layer: str = "core") -> list[str]:
    return [v.rule for v in check_source(source, "x.py", layer)]


@pytest.mark.parametrize(
    "source",
    [
        "import socket\n",
        "import os.path\n",
        "from time import monotonic\n",
        "import asyncio as aio\n",
        "from datetime import datetime\n",
        "import uuid\n",
        "import sqlite3\n",
    ],
)
def test_io_imports_are_refused_in_core(source: str) -> None:
    assert any("imports" in r for r in rules(source, "core"))
    assert any("imports" in r for r in rules(source, "protocol"))


def test_io_imports_are_allowed_in_the_runtime() -> None:
    assert rules("import socket\nimport time\n", "runtime") == []


@pytest.mark.parametrize(
    "source",
    [
        "import random\nx = random.random()\n",
        "import random\nrandom.seed(1)\n",
        "import random\nrandom.shuffle([1])\n",
        "from random import choice\n",
    ],
)
def test_global_random_is_refused_in_core(source: str) -> None:
    assert any("random" in r for r in rules(source))


def test_injected_random_instances_are_allowed() -> None:
    assert rules("import random\n\ndef f(rng: random.Random) -> float:\n    return rng.random()\n") == []


def test_builtin_hash_is_refused_everywhere() -> None:
    assert "calls builtin hash()" in rules("x = hash(b'k')\n", "core")
    assert "calls builtin hash()" in rules("x = hash(b'k')\n", "runtime")


def test_print_is_refused_everywhere() -> None:
    assert "calls builtin print()" in rules("print('hi')\n", "cli")


def test_long_functions_and_files_are_refused() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(60))
    assert any("function f is 61 lines" in r for r in rules(f"def f():\n{body}"))
    assert rules("def f():\n" + body[: body.index("    x59")]) == []
    assert any("file is 501 lines" in r for r in rules("x = 1\n" * 501))
