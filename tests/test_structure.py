"""Dependency direction: solvers <- gradients <- layers <- tasks <- train/cli; the core never imports upward."""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "identity_tf"
LEVELS = [
    "solvers",
    "projections",
    "noise",
    "gradients",
    "layers",
    "losses",
    "metrics",
    "datasets",
    "tasks",
    "train",
    "cli",
]
FORBIDDEN = {
    "solvers": {"gradients", "layers", "tasks", "datasets", "train", "cli", "projections", "noise", "losses"},
    "projections": {"gradients", "layers", "tasks", "datasets", "train", "cli"},
    "noise": {"gradients", "layers", "tasks", "datasets", "train", "cli"},
    "gradients": {"layers", "tasks", "datasets", "train", "cli"},
    "layers": {"tasks", "datasets", "train", "cli"},
    "losses": {"tasks", "datasets", "train", "cli"},
}


def imported_parts(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("identity_tf."):
            yield node.module.split(".")[1]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("identity_tf."):
                    yield alias.name.split(".")[1]


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_imports_point_one_way(part):
    files = list((PACKAGE / part).rglob("*.py")) if (PACKAGE / part).is_dir() else [PACKAGE / f"{part}.py"]
    assert files
    for path in files:
        bad = set(imported_parts(path)) & FORBIDDEN[part]
        assert not bad, f"{path.relative_to(PACKAGE)} imports {sorted(bad)}"
