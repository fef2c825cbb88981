"""AgentSettings: one parser for every TFBUILD_* variable, the docs table, no import cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tfbuild_agent.errors import ConfigError
from tfbuild_agent.settings import (
    NAMES,
    PATTERNS,
    TABLE_BEGIN,
    TABLE_END,
    AgentSettings,
    markdown_table,
    parse_bool,
)

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "entrypoint"


@pytest.mark.parametrize("word", ["1", "true", "YES", "on", " On "])
def test_every_true_word_is_accepted(word: str) -> None:
    assert parse_bool({"X": word}, "X", False) is True


@pytest.mark.parametrize("word", ["0", "false", "No", "off"])
def test_every_false_word_is_accepted(word: str) -> None:
    assert parse_bool({"X": word}, "X", True) is False


def test_a_word_that_is_neither_names_the_variable_and_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"TFBUILD_EVALUATOR='maybe' is not a yes/no value.*on"):
        AgentSettings.from_env({"TFBUILD_EVALUATOR": "maybe"})


def test_evaluator_accepts_on_like_every_other_flag() -> None:
    assert AgentSettings.from_env({"TFBUILD_EVALUATOR": "on"}).evaluator
    assert not AgentSettings.from_env({"TFBUILD_CONTROL": "off"}).control


def test_defaults_survive_a_10_s_stall_and_detect_a_loss_within_30_s() -> None:
    s = AgentSettings()
    assert 10.0 * 1.5 <= s.heartbeat_interval * s.heartbeat_misses <= 30.0 - s.heartbeat_interval


def test_docs_agent_md_holds_the_generated_table() -> None:
    text = (ROOT / "docs" / "agent.md").read_text()
    start, end = text.index(TABLE_BEGIN), text.index(TABLE_END) + len(TABLE_END)
    assert text[start:end] == markdown_table(), (
        "docs/agent.md's variable table is out of date: paste settings.markdown_table() in"
    )


def test_every_tfbuild_variable_the_agent_names_is_in_the_table() -> None:
    used = set()
    for path in AGENT.rglob("*.py"):
        used |= set(re.findall(r"TFBUILD_[A-Z0-9_]*[A-Z0-9]", path.read_text()))
    family = {n for n in used if any((n + "_").startswith(p) for p in PATTERNS)}
    assert used - NAMES - family == set()


def _imports(path: Path, package: str) -> set[str]:
    """Modules of the agent that `path` imports, also inside functions (a lazy import
    still ties the two modules together)."""
    tree = ast.parse(path.read_text())
    found = set()
    parts = package.split(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = parts[: len(parts) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            found.add(target)
            for alias in node.names:
                found.add(f"{target}.{alias.name}")
    return found


def test_the_agent_has_no_import_cycles() -> None:
    modules: dict[str, Path] = {}
    for path in AGENT.rglob("*.py"):
        rel = path.relative_to(AGENT).with_suffix("")
        name = ".".join(["a", *rel.parts])
        modules[name.removesuffix(".__init__")] = path
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        graph[name] = {m for m in _imports(path, package) if m in modules and m != name}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = [*trail[trail.index(nxt):], nxt] if nxt in trail else [node, nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
