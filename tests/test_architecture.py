"""The house rules of ARCHITECTURE.md, checked on the source (every import counts, also those inside functions):

- ``edge/`` imports run one way: ``cli -> build -> door -> people -> vision`` (and all of them may use the base:
  ``edge``, ``edge.errors``, ``edge.config``). Nothing outside ``edge.cli`` imports it (``edge.__main__`` is its
  entry point). ``edge/`` never imports ``train``, ``convert``, ``bench`` or TensorFlow.
- No import circle anywhere in ``edge/``, ``train/``, ``convert/`` and ``bench/``.
- No function in ``edge/`` is longer than 60 lines.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge", "train", "convert", "bench")
#: edge's rooms, lowest first; a module may import its own room and any lower one. The integrations (the Home
#: Assistant bridge, the web page) sit above the composition root and below the CLI: separate processes that talk
#: to the door through its socket.
RANK = {"base": 0, "vision": 1, "people": 2, "door": 3, "build": 4, "mqtt": 4.5, "web": 4.5, "cli": 5}
#: Network-facing rooms never share a process with the relay: they must not import these.
NETWORK_ROOMS = ("mqtt", "web")
GPIO = ("edge.door.relay", "edge.door.daemon", "gpiozero", "Jetson", "lgpio", "RPi")
MAX_FUNCTION_LINES = 60


def modules() -> dict:
    out = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = f
    return out


def imports(path: Path, known: dict) -> set:
    """The project modules ``path`` imports (resolved to the longest known module name)."""

    def resolve(name: str):
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(resolve(a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.update(resolve(f"{node.module}.{a.name}") for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import (the rules need absolute ones)")
    return {m for m in found if m}


def graph() -> dict:
    known = modules()
    return {m: imports(f, known) - {m} for m, f in known.items()}


def room(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "edge":
        return parts[0]
    if module in ("edge", "edge.errors", "edge.config"):
        return "base"
    if module == "edge.__main__":
        return "cli"
    return parts[1]


def cycles(g: dict) -> list:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_every_edge_module_is_in_a_room():
    rooms = {room(m) for m in graph() if m.startswith("edge")}
    assert rooms <= set(RANK), rooms - set(RANK)


def test_edge_imports_run_one_way():
    bad = []
    for m, deps in graph().items():
        if not m.startswith("edge"):
            continue
        for d in deps:
            if not d.startswith("edge"):
                bad.append(f"{m} -> {d} (edge/ must not import {d.split('.')[0]})")
            elif RANK[room(d)] > RANK[room(m)]:
                bad.append(f"{m} ({room(m)}) -> {d} ({room(d)})")
    assert not bad, "imports against cli -> build -> door -> people -> vision:\n" + "\n".join(sorted(bad))


def test_nothing_imports_the_cli():
    bad = [f"{m} -> {d}" for m, deps in graph().items() for d in deps
           if room(d) == "cli" and not d.startswith("edge.__main__") and room(m) != "cli"]
    assert not bad, bad


def test_network_facing_code_never_touches_gpio():
    bad = []
    for room_name in NETWORK_ROOMS:
        for f in (ROOT / "edge" / room_name).rglob("*.py") if (ROOT / "edge" / room_name).is_dir() else ():
            for node in ast.walk(ast.parse(f.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                bad += [f"{f.relative_to(ROOT)} imports {n}" for n in names if n.startswith(GPIO)]
    assert not bad, bad


def test_no_import_circles():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_edge_never_imports_tensorflow():
    for f in (ROOT / "edge").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] in ("tensorflow", "keras", "torch") for n in names), f


def test_no_function_in_edge_over_60_lines():
    long = []
    for f in (ROOT / "edge").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{f.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long
