"""The layering of docs/architecture.md, checked on the source: who may import whom.

tools -> {apis, deployment, benchmarking, cli} -> {models, datasets, engine, evaluation}
-> visualization -> structures -> ops (deployment and benchmarking may use apis, apis
neither; datasets may use evaluation). Every import of ``mmdet_like.<package>`` is read
from the syntax tree (function-level imports too), so a lazy import cannot hide a
dependency. The table of docs/architecture.md is this file's ``FORBIDDEN``: a test keeps
the two equal.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mmdet_like"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
# modules at the bottom that every layer may use
BASE = {"errors", "registry", "version", "checkpoint_file"}
# deployment (export) sits beside apis, on top: only tools and benchmarks may import it;
# cli (the mmdet-like command) runs the tools
TOP = {"apis", "benchmarking", "deployment", "cli"}
FORBIDDEN = {
    "models": {"datasets", "engine", "evaluation"} | TOP,
    "datasets": {"models", "engine"} | TOP,
    "engine": {"models", "datasets", "evaluation"} | TOP,
    "evaluation": {"models", "datasets", "engine"} | TOP,
    "structures": {"models", "datasets", "engine", "evaluation", "visualization"} | TOP,
    # drawing (boxes, masks, labels, keypoints): beside the middle layers, on structures
    "visualization": {"models", "datasets", "engine", "evaluation"} | TOP,
    "ops": {"models", "datasets", "engine", "evaluation", "structures", "visualization"} | TOP,
    "apis": {"deployment", "benchmarking"},
}


def imported_packages(path):
    """The ``mmdet_like`` sub-packages / modules that a source file imports."""
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "mmdet_like" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer):
    offences = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for package in imported_packages(path) & FORBIDDEN[layer]:
            offences.append(f"{path.relative_to(PACKAGE.parent)} imports mmdet_like.{package}")
    assert not offences, "\n".join(offences)


def test_base_modules_import_no_layer():
    layers = set(FORBIDDEN) | TOP
    for name in BASE:
        path = PACKAGE / f"{name}.py"
        assert path.is_file(), path
        assert not imported_packages(path) & layers, name


def test_the_check_sees_lazy_imports(tmp_path):
    source = tmp_path / "lazy.py"
    source.write_text("def f():\n    from mmdet_like.engine.checkpoint import x\n")
    assert imported_packages(source) == {"engine"}


def documented_rules():
    """The "layer | must not import" table of docs/architecture.md as a dict of sets."""
    lines = ARCHITECTURE.read_text().splitlines()
    start = lines.index("| layer | must not import |")
    rules = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        layer, forbidden = (cell.strip() for cell in line.strip("|").split("|"))
        rules[layer] = {name.strip() for name in forbidden.split(",")}
    return rules


def test_the_architecture_document_states_these_rules():
    assert documented_rules() == FORBIDDEN
