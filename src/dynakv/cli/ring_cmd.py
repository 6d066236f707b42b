"""`dynakv ring ...` (placeholder until `ring plan` lands)."""

from __future__ import annotations

import argparse
from typing import Any


def register(commands: Any) -> None:
    ring = commands.add_parser("ring", help="ring placement tools")
    ring.set_defaults(run=lambda args: 0)


def _unused(_: argparse.Namespace) -> int:
    return 0
