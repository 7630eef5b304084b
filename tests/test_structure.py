"""The package's structure, from its import graph: core <- datasets <- tasks <- training/CLI, and no cycles.

The graph is built by walking every module's ``import`` statements (also those inside functions), so a new module
is checked without editing this file: it belongs to the layer of its first dotted component (see ``LAYER_OF``,
which must name every top-level module and package; an unknown one fails the test and asks for a decision).
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "identity_tf"
ROOT = "identity_tf"

CORE, DATA, TASKS, TRAINING = 0, 1, 2, 3
LAYER_OF = {
    # core: solvers <- gradients <- layers, and what they are built from (noise, projections, losses, metrics)
    "_utils": CORE,
    "_structured": CORE,
    "_retrieval": CORE,
    "solvers": CORE,
    "noise": CORE,
    "projections": CORE,
    "gradients": CORE,
    "layers": CORE,
    "losses": CORE,
    "metrics": CORE,
    "method": CORE,
    "execution": CORE,
    "validation": CORE,
    "plots": CORE,  # generic figures (matplotlib only); each task draws its own in tasks/<name>/plots.py
    "datasets": DATA,
    "tasks": TASKS,
    # training, reporting and the command line
    "train": TRAINING,
    "distributed": TRAINING,
    "run_dir": TRAINING,
    "backup": TRAINING,
    "run_health": TRAINING,
    "cost_collapse": TRAINING,  # pure python, shared by run_health (live runs) and report (committed histories)
    "reproduce": TRAINING,
    "report": TRAINING,
    "demo": TRAINING,
    "cli": TRAINING,
}
NAMES = {CORE: "core", DATA: "datasets", TASKS: "tasks", TRAINING: "training/cli"}
# the core's internal order: a solver never needs a gradient method or a layer, a gradient method never a layer
CORE_ORDER = {"solvers": 0, "gradients": 1, "layers": 2}


def modules() -> dict[str, pathlib.Path]:
    """``{dotted module name: path}`` of every module of the package."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: pathlib.Path, known: dict) -> set[str]:
    """The package modules ``name`` imports (``from identity_tf import layers`` -> ``identity_tf.layers``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `identity_tf.x.Y` (a name) -> module `identity_tf.x`
                target = target.rpartition(".")[0]
            # a module's own parent packages are imported before it anyway (Python's implicit edge)
            if target.startswith(ROOT) and target != ROOT and target != name and not name.startswith(target + "."):
                out.add(target)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def top(name: str) -> str:
    return name.split(".")[1]


def test_every_top_level_module_has_a_layer():
    missing = sorted({top(name) for name in modules() if name != ROOT} - set(LAYER_OF))
    assert not missing, f"new top-level modules {missing}: add them to LAYER_OF (which layer do they belong to?)"


def test_dependencies_point_one_way():
    """core <- datasets <- tasks <- training/cli; the package facade (identity_tf/__init__.py) sits above all."""
    wrong = []
    for name, targets in graph().items():
        if name == ROOT:
            continue
        for target in targets:
            if LAYER_OF[top(target)] > LAYER_OF[top(name)]:
                wrong.append(f"{name} ({NAMES[LAYER_OF[top(name)]]}) imports {target} ({NAMES[LAYER_OF[top(target)]]})")
            a, b = CORE_ORDER.get(top(name)), CORE_ORDER.get(top(target))
            if a is not None and b is not None and b > a:
                wrong.append(f"{name} imports {target} (solvers <- gradients <- layers)")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_cycles():
    """No cycle among the package's modules (parent packages' implicit imports aside)."""
    edges = graph()
    edges.pop(ROOT, None)
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if target == ROOT or target not in edges:
                continue
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target) :] + [target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "\n".join(cycles)


def test_the_engine_knows_no_task_by_name():
    """Adding a task changes no shared file: the trainer, CLI, reproduce, report and plots never name one."""
    tasks = [p.name for p in (PACKAGE / "tasks").iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    assert len(tasks) >= 4, tasks
    for module in ("train", "distributed", "cli", "reproduce", "report", "plots"):
        text = (PACKAGE / f"{module}.py").read_text()
        named = [task for task in tasks if task in text]
        assert not named, f"identity_tf/{module}.py names the task(s) {named}"


def test_the_checks_can_fail(tmp_path):
    """The graph walk sees an upward import and a cycle in a throwaway package laid out like ours."""
    pkg = tmp_path / ROOT
    (pkg / "solvers").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "solvers" / "__init__.py").write_text("from identity_tf import train\n")
    (pkg / "train.py").write_text("from identity_tf.solvers import x\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, pkg
    try:
        edges = graph()
        assert edges["identity_tf.solvers"] == {"identity_tf.train"}
        assert edges["identity_tf.train"] == {"identity_tf.solvers"}
        try:
            test_no_import_cycles()
        except AssertionError as error:
            assert "identity_tf.solvers -> identity_tf.train -> identity_tf.solvers" in str(error)
        else:
            raise AssertionError("the cycle was not found")
        try:
            test_dependencies_point_one_way()
        except AssertionError as error:
            assert "identity_tf.solvers (core) imports identity_tf.train (training/cli)" in str(error)
        else:
            raise AssertionError("the upward import was not found")
    finally:
        PACKAGE = saved
