"""Notices: what the node wants an operator to read in its log, handed to the driver.

Protocol code does no I/O, so it cannot log; it adds a line here and the driver drains the list after
each `handle` and logs it at WARNING (a hint dropped at a bound, hints expired). Bounded: past
`max_lines` the oldest lines go, and how many went is counted, so a storm of drops cannot grow memory.
"""

from __future__ import annotations

from collections import Counter, deque


class Notices:
    def __init__(self, counters: Counter[str], max_lines: int = 1_000) -> None:
        self.counters = counters
        self._lines: deque[str] = deque(maxlen=max_lines)

    def add(self, line: str) -> None:
        if len(self._lines) == self._lines.maxlen:
            self.counters["notices.lost"] += 1
        self._lines.append(line)

    def take(self) -> list[str]:
        """The lines added since the last call, oldest first."""
        lines = list(self._lines)
        self._lines.clear()
        return lines

    def __len__(self) -> int:
        return len(self._lines)
