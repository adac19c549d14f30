"""The layers of the code: who may import whom, read from every import statement (function-level ones too).

Top folders, lowest first: ``trainables`` < ``analysis``, ``search_spaces`` < ``study`` < ``tools`` <
``benchmarks``; a folder imports only lower ones (and itself). Inside ``trainables`` the layers of its
docstring: ``spec`` < ``core`` < ``integration`` < ``run`` < ``launch``, where ``spec`` imports no torch,
Ray or MLflow and ``core`` no Ray or MLflow. No module imports itself back through a circle.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"trainables": 0, "analysis": 1, "search_spaces": 1, "study": 2, "tools": 3, "benchmarks": 4}
LAYERS = ("spec", "core", "integration", "run", "launch")
FORBIDDEN = {
    "spec": ("torch", "torchvision", "ray", "mlflow", "optuna", "pandas"),
    "core": ("ray", "mlflow", "optuna"),
}


def module_name(path: str) -> str:
    parts = list(Path(path).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(source: str, modules: set[str]) -> set[str]:
    """Every module an import statement of ``source`` names; ``from a import b`` names ``a.b`` where that is a module."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in modules}
    return found


def import_graph(root: Path = REPO) -> dict[str, set[str]]:
    """Module -> the modules it imports, over the project's own code (tests left out)."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"], cwd=root,
                           capture_output=True, text=True, check=True).stdout.split()
    files = [f for f in files if f.split("/")[0] in FOLDERS and (root / f).exists()]
    modules = {module_name(f) for f in files}
    return {module_name(f): imported((root / f).read_text(), modules) for f in files}


def own(module: str, graph: dict[str, set[str]]) -> str | None:
    """The project module that an imported name is (or lies in), None for a third-party one."""
    while module and module not in graph:
        module = module.rpartition(".")[0]
    return module or None


def violations(graph: dict[str, set[str]]) -> list[str]:
    found = []
    for module, targets in sorted(graph.items()):
        top, *rest = module.split(".")
        layer = rest[0] if top == "trainables" and rest and rest[0] in LAYERS else None
        for target in sorted(targets):
            t_top, *t_rest = target.split(".")
            if layer and t_top in FORBIDDEN.get(layer, ()):
                found.append(f"{module} imports {target}: trainables.{layer} imports none of {', '.join(FORBIDDEN[layer])}")
            if t_top not in FOLDERS or t_top == top:
                if layer and t_top == "trainables" and t_rest and t_rest[0] in LAYERS and LAYERS.index(t_rest[0]) > LAYERS.index(layer):
                    found.append(f"{module} imports {target}: {layer} lies below {t_rest[0]}")
                continue
            if FOLDERS[t_top] >= FOLDERS[top]:
                found.append(f"{module} imports {target}: {top}/ may import only folders below it")
    return found


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    edges = {m: {own(t, graph) for t in ts} - {None, m} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_import_runs_down_the_layers() -> None:
    assert violations(import_graph()) == []


def test_no_module_imports_itself_back_through_a_circle() -> None:
    assert circles(import_graph()) == []


def test_every_module_of_trainables_lies_in_a_layer() -> None:
    stray = [m for m in import_graph() if m.startswith("trainables.") and m.split(".")[1] not in LAYERS]
    assert stray == []


@pytest.mark.parametrize(
    ("path", "source", "expected"),
    [
        ("trainables/spec/probe.py", "import torch\n", "trainables.spec.probe imports torch: trainables.spec imports none of"),
        ("trainables/core/probe.py", "def f():\n    from mlflow import MlflowClient\n", "trainables.core.probe imports mlflow"),
        ("trainables/core/probe.py", "from trainables.run import pretrain\n", "core lies below run"),
        ("analysis/probe.py", "import study.cli\n", "analysis/ may import only folders below it"),
        ("tools/probe.py", "from benchmarks.common import record\n", "tools/ may import only folders below it"),
    ],
)
def test_the_rules_can_fail(tmp_path: Path, path: str, source: str, expected: str) -> None:
    """Each rule above finds a planted import that breaks it, in a module-level or function-level import."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_text(source)
    assert any(expected in v for v in violations(import_graph(tmp_path)))


def test_a_planted_circle_is_found(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "a.py").write_text("from study.b import x\n")
    (tmp_path / "study" / "b.py").write_text("def x():\n    from study import a\n")
    assert circles(import_graph(tmp_path)) == [["study.a", "study.b"]]


def test_every_file_the_readme_layout_names_exists() -> None:
    """The README's Layout section names files that are there: in its table each under its row's folder
    (or the repository root), in its prose each path as written."""
    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Layout\n", 1)[1].split("\n## ", 1)[0]
    missing, named = [], 0
    for line in section.splitlines():
        row = re.match(r"^\| `([\w/]+/)` \| (.*) \|$", line)
        folder, text = row.groups() if row else ("", line)
        for name in re.findall(r"`([\w./-]+)`", text):
            if not re.search(r"\.(py|md|css|yaml)$|/$", name) or (not row and "/" not in name):
                continue
            named += 1
            if not ((REPO / folder / name).exists() or (REPO / name).exists()):
                missing.append(f"{folder}{name}")
    assert named > 50 and missing == []
