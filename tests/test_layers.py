"""Data flows downward: every module of the package sits in one layer, and imports only from its own layer or
the layers below (``import`` statements anywhere in the file, function-level ones included, read with ``ast``).

The layers, lowest first (a module may import from its own row and the rows above it):

    foundation    errors, limits, schema, fileio, integrity, stats, plots, devices, architectures
    parts         ran (the package: its version and errors), reservoir, recurrence, dynamics, reading,
                  decoding, injection, passes, episodes, loading, provenance, tasks.texts, tasks.memory_texts
    tasks, files  tasks (every registered task and the mix), artifact (the files of a saved model)
    model         model (the wrapped model: passes and their state)
    training      training (through the carried state), batched (a population in one batch), runtime
                  (sessions, their gate and state files)
    runs          runner, grid, harm, switches (one run: train, evaluate, measure), engine (members, records,
                  backends)
    experiments   remember, crosspass, battery, population, probes, reproduce (reports over the engine's runs)
    interface     cli, web, __main__

So a task knows episodes and predictions, not the trainer; the model knows passes, not files (it hands its
tensors to ran.artifact); nothing below the runtime imports it. A new module must be given a layer here.
docs/layers.md holds the whole graph, module by module; ``python tests/test_layers.py > docs/layers.md``
writes it again, and a test checks that it is current.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "ran"
DOC = ROOT / "docs" / "layers.md"

# layer name -> module names; "x.*" is every module of package x (the package itself included)
LAYERS: dict[str, tuple[str, ...]] = {
    "foundation": ("errors", "limits", "schema", "fileio", "integrity", "stats", "plots", "devices", "architectures",
                   "tracking"),
    "parts": ("", "reservoir", "recurrence", "dynamics", "reading", "decoding", "injection.*", "passes", "episodes",
              "loading", "provenance", "tasks.texts", "tasks.memory_texts"),
    "tasks, files": ("tasks.*", "artifact"),
    "model": ("model",),
    "training": ("training", "batched", "runtime.*"),
    "runs": ("runner", "grid", "harm", "switches", "engine.*"),
    "experiments": ("remember", "crosspass", "battery", "population.*", "probes.*", "reproduce"),
    "interface": ("cli.*", "web.*", "__main__"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in sorted(SOURCE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The index of ``module``'s layer; a module named exactly wins over a package pattern."""
    relative = module.removeprefix("ran").removeprefix(".")
    best = None
    for index, patterns in enumerate(LAYERS.values()):
        for pattern in patterns:
            if pattern == relative:
                return index
            package = pattern.removesuffix(".*")
            if pattern.endswith(".*") and (relative == package or relative.startswith(package + ".")):
                best = index
    if best is None:
        raise KeyError(module)
    return best


def imports_of(module: str) -> set[str]:
    """The ran modules ``module`` imports, at any depth of its file (``from ran import x`` names the submodule x
    where one exists, else the package)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .x import y
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in MODULES else source)
    return {name for name in found if (name == "ran" or name.startswith("ran.")) and name != module}


def test_every_module_has_a_layer():
    unplaced = []
    for module in MODULES:
        try:
            layer_of(module)
        except KeyError:
            unplaced.append(module)
    assert not unplaced, f"give these modules a layer in LAYERS: {unplaced}"


def test_no_module_imports_from_a_higher_layer():
    names = list(LAYERS)
    upward = [f"{module} ({names[layer_of(module)]}) imports {imported} ({names[layer_of(imported)]})"
              for module in MODULES for imported in sorted(imports_of(module))
              if layer_of(imported) > layer_of(module)]
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


def graph() -> str:
    """docs/layers.md: the import graph of the package, one layer at a time, lowest first."""
    lines = ["# The package's layers and its import graph", "",
             "Written by `python tests/test_layers.py > docs/layers.md`; `tests/test_layers.py` checks that no module",
             "imports from a layer above its own, and that this file is current. Each module is listed with the",
             "modules of the package it imports.", ""]
    for index, name in enumerate(LAYERS):
        lines += [f"## {index}. {name}", ""]
        for module in sorted(m for m in MODULES if layer_of(m) == index):
            lines.append(f"- `{module}` -> {', '.join(f'`{m}`' for m in sorted(imports_of(module))) or '(nothing)'}")
        lines.append("")
    return "\n".join(lines)


def test_the_graph_in_docs_is_current():
    assert DOC.read_text() == graph(), "docs/layers.md is stale: python tests/test_layers.py > docs/layers.md"


@pytest.mark.parametrize("source, imported", [
    ("from ran.training import Prediction", "ran.training"),
    ("def f():\n    from ran.runtime.gate import StateGate", "ran.runtime.gate"),
    ("from ran import model", "ran.model"),
])
def test_the_check_sees_every_kind_of_import(tmp_path, monkeypatch, source, imported):
    """A task module importing from the trainer, or the model from the runtime inside a function, is caught."""
    fake = tmp_path / "fake.py"
    fake.write_text(source + "\n")
    monkeypatch.setitem(MODULES, "ran.tasks.fake", fake)
    assert imports_of("ran.tasks.fake") == {imported}
    assert layer_of(imported) > layer_of("ran.tasks.fake")


if __name__ == "__main__":
    print(graph(), end="")
