"""The README's commands are the ones that are really run."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ci_runs_the_readme_test_command_exactly() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    command = ci_lines[-1]
    assert command.startswith("python3 -m venv .venv")
    assert command in (ROOT / "README.md").read_text()


def test_readme_main_command_installs_and_starts_a_cluster() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "pip install -q -e . && .venv/bin/dynakv dev --nodes 3 --data ./data" in readme
