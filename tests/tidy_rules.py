"""The project rules that import-linter cannot see, checked on the AST of `src/dynakv`.

ARCHITECTURE.md section 2: the pure layers (core, protocol) touch no I/O, clock or global randomness;
placement never uses the builtin `hash()` (salted per process, so nodes would disagree); `src` never
prints (output goes through the CLI's writers or logging); files and functions stay small.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "dynakv"
PURE_LAYERS = ("core", "protocol")
BANNED_IN_PURE = frozenset(
    {
        "asyncio", "socket", "selectors", "threading", "multiprocessing", "subprocess", "time",
        "datetime", "uuid", "os", "sqlite3", "lmdb", "aiohttp", "uvloop", "secrets",
    }
)
# random.Random(seed) instances are how randomness is injected; every other name in the module
# draws from (or reseeds) the hidden global generator.
ALLOWED_RANDOM_NAMES = frozenset({"Random"})
FILE_LINES_MAX = 500
FUNCTION_LINES_MAX = 60


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


def banned_imports(tree: ast.AST, banned: frozenset[str]) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in banned:
                    yield node.lineno, f"imports {alias.name}"
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and node.module.split(".")[0] in banned
        ):
            yield node.lineno, f"imports from {node.module}"


def global_random_uses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "random":
            for alias in node.names:
                if alias.name not in ALLOWED_RANDOM_NAMES:
                    yield node.lineno, f"imports random.{alias.name} (inject a random.Random instead)"
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "random"
            and node.attr not in ALLOWED_RANDOM_NAMES
        ):
            yield node.lineno, f"uses random.{node.attr} (inject a random.Random instead)"


def builtin_calls(tree: ast.AST, name: str) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name:
            yield node.lineno, f"calls builtin {name}()"


def long_functions(tree: ast.AST, limit: int) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > limit:
                yield node.lineno, f"function {node.name} is {length} lines (max {limit})"


def check_source(source: str, path: str, layer: str) -> list[Violation]:
    """All rule violations of one module; `layer` is its top-level package under dynakv."""
    tree = ast.parse(source, filename=path)
    found: list[tuple[int, str]] = []
    if layer in PURE_LAYERS:
        found += banned_imports(tree, BANNED_IN_PURE)
        found += global_random_uses(tree)
    found += builtin_calls(tree, "hash")
    found += builtin_calls(tree, "print")
    found += long_functions(tree, FUNCTION_LINES_MAX)
    lines = source.count("\n") + (0 if source.endswith("\n") or not source else 1)
    if lines > FILE_LINES_MAX:
        found.append((1, f"file is {lines} lines (max {FILE_LINES_MAX})"))
    return [Violation(path, line, rule) for line, rule in sorted(found)]


def check_tree(root: Path = SRC) -> list[Violation]:
    violations: list[Violation] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        layer = rel.parts[0] if len(rel.parts) > 1 else ""
        violations += check_source(path.read_text(encoding="utf-8"), str(rel), layer)
    return violations
