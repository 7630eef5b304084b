"""The ``identity-tf`` command line (``identity-tf --help``; each command has its own ``--help``).

Exit codes: 0 done; 1 training diverged (NaN/inf, see identity_tf.run_health); 2 bad input (config, arguments,
data, run directory, disk); 3 the run finished but collapsed (its metrics are those of a constant model).
TensorFlow is imported only by the commands that need it, so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import re
import sys
import tempfile

EXIT_DIVERGED, EXIT_USAGE, EXIT_COLLAPSED = 1, 2, 3

DESCRIPTION = """\
Train and reproduce the experiments of "Backpropagation through Combinatorial Algorithms: Identity with
Projection Works" (Sahoo et al., ICLR 2023) with TensorFlow / Keras 3.

commands:
  train CONFIG      train one config (a YAML file under configs/<task>/) into a run directory
  reproduce TASK    run a paper table's grid (configs/<TASK>/reproduce.yaml) and print it beside the paper
  data TASK         build a task's dataset into the data directory (also done on first use)
  demo              train a small shortest-path model on generated data (no download)

examples (TASK: {tasks}):
  identity-tf train configs/TASK/ROW.yaml --quick
  identity-tf train configs/TASK/ROW.yaml --set train.epochs=50 --out runs/my_run
  identity-tf reproduce TASK --seeds 0 1 2
  identity-tf data TASK --help
  identity-tf demo --set epochs=5

exit codes: 0 done, 1 training diverged, 2 bad input (config, argument, data, run directory, full disk),
3 the run finished but collapsed (constant predictions or solver inputs; see metrics.json).
The data directory is --data-dir, else $IDENTITY_TF_DATA_DIR, else ~/.cache/identity_tf.
"""

RUN_DIRECTORY_HELP = """\
run directory (--out): config.yaml, history.csv, metrics.json, best.weights.h5, model.keras and plots.
  Run the same command again after an interruption: training resumes at the first unfinished epoch.
  A finished run of the same config is not trained again (its metrics are printed).
  A directory holding a run of another config is refused, unless --overwrite (which deletes that run).
  Two trainings on one directory at once are refused (run.lock).
"""

# TensorFlow's C++ libraries print these to stderr while loading, before absl logging reads TF_CPP_MIN_LOG_LEVEL
_NATIVE_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] .*"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.)\s*$"
)


@contextlib.contextmanager
def _quiet_native_logs():
    """Captures file descriptor 2 while TensorFlow loads and passes on every line but its INFO/WARNING start-up noise."""
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    if "tensorflow" in sys.modules or not (level.isdigit() and int(level) >= 2):  # asked for the logs
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines(keepends=True):
                if not _NATIVE_NOISE.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def _load_tensorflow() -> None:
    """Imports TensorFlow with its start-up log lines filtered out.

    Devices are not initialised here: ``MultiWorkerMirroredStrategy`` must be created before they are.
    """
    with _quiet_native_logs():
        import tensorflow  # noqa: F401


def _configs_root(explicit: str | None) -> pathlib.Path:
    if explicit:
        return pathlib.Path(explicit)
    for candidate in (pathlib.Path.cwd() / "configs", pathlib.Path(__file__).resolve().parents[1] / "configs"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("No configs/ directory found here or next to the package; pass --configs DIR.")


def _grids() -> list[str]:
    """Tasks with a ``configs/<task>/reproduce.yaml`` (for the help text)."""
    try:
        root = _configs_root(None)
    except FileNotFoundError:
        return []
    return sorted(p.parent.name for p in root.glob("*/reproduce.yaml"))


def _status_line(metrics: dict) -> str | None:
    if metrics.get("status") != "collapsed":
        return None
    collapse = metrics.get("collapse", {})
    return (
        f"identity-tf: COLLAPSED: from epoch {collapse.get('epoch')} to the end ({collapse.get('check')}); the "
        'test metrics are those of a collapsed model (metrics.json: "status": "collapsed").'
    )


def _cost_collapse_line(metrics: dict) -> str | None:
    shrink = metrics.get("cost_collapse")
    if not shrink:
        return None
    return (
        f"identity-tf: WARNING: the costs collapsed: the solver inputs' std fell from {shrink['peak']:.3g} (epoch "
        f"{shrink['peak_epoch']}) to {shrink['final']:.3g}, below "
        f"{100 * shrink['ratio']:.0f} % of its peak from epoch {shrink['epoch']} to the end (paper section 3.6; "
        "metrics.json: cost_collapse). A margin kept on (method.alpha > 0 with method.noise_epochs covering the "
        "run) or the projection P_std (method.projection: std) counters it."
    )


def _train(args) -> int:
    _load_tensorflow()
    from identity_tf import train

    config = train.load_config(args.config, train.parse_overrides(args.set), quick=args.quick)
    out = args.out or os.path.join("runs", pathlib.Path(args.config).stem + ("_quick" if args.quick else ""))
    print(f"identity-tf: training {config.task} -> {out}", flush=True)
    metrics = train.train(
        config, out, strategy=args.strategy, verbose=2 if args.quiet else "auto", overwrite=args.overwrite
    )
    if metrics.get("reused"):
        print(
            f"identity-tf: {out} already holds the finished run of this config; nothing was trained "
            "(--overwrite trains it again)."
        )
    print(json.dumps(metrics["test"], indent=2))
    print(_summary(config.task, metrics["test"]) + f"  (run directory: {out})")
    warning = _cost_collapse_line(metrics)
    if warning:
        print(warning, file=sys.stderr)
    status = _status_line(metrics)
    if status:
        print(status, file=sys.stderr)
        return EXIT_COLLAPSED
    return 0


def _summary(task: str, test: dict) -> str:
    """One line with the task's headline test metrics (the task's own :meth:`~identity_tf.tasks.Task.summary`)."""
    from identity_tf.tasks import registry

    return registry.get(task).summary(test)


def _report(args, root: pathlib.Path) -> int:
    from identity_tf import report

    results = pathlib.Path(args.results or os.path.join("results", args.task))
    if args.export:
        for path in report.export(args.export, results):
            print(f"exported {path}")
    if args.report:
        table = report.table(args.task, root, results)
        print(table)
        for path in report.draw_figures(report.load_grid(args.task, root), results, "docs/figures", f"{args.task}_"):
            print(f"figure: {path}")
        if args.write_readme:
            report.write_readme_block("README.md", args.task, table)
            print(f"README.md: the {args.task} block was rewritten")
    return 0


def _reproduce(args) -> int:
    root = _configs_root(args.configs)
    if args.report or args.export:
        return _report(args, root)
    _load_tensorflow()
    from identity_tf import reproduce, train

    out = pathlib.Path(args.out or os.path.join("runs", f"reproduce_{args.task}" + ("_quick" if args.quick else "")))
    overrides = train.parse_overrides(args.set)
    table = reproduce.run(
        args.task,
        root,
        out,
        quick=args.quick,
        seeds=args.seeds,
        only=args.only,
        strategy=args.strategy,
        verbose=2 if args.quiet else 0,
        overrides=overrides,
    )
    print(table)
    return 0


def _data_parser(task) -> argparse.ArgumentParser:
    """The flags of ``identity-tf data <task>`` (the task's :attr:`~identity_tf.tasks.Task.data_options`)."""
    parser = argparse.ArgumentParser(
        prog=f"identity-tf data {task.name}", description=task.description, exit_on_error=False
    )
    for option in task.data_options:
        parser.add_argument(
            f"--{option.name.replace('_', '-')}",
            type=option.type,
            default=option.default,
            help=f"{option.help} (default {option.default})",
        )
    return parser


def _data(args) -> int:
    _load_tensorflow()
    from identity_tf.tasks import registry
    from identity_tf.validation import ConfigError

    try:
        task = registry.get(args.dataset)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    parser = _data_parser(task)
    flags = ", ".join(f"--{o.name.replace('_', '-')}" for o in task.data_options) or "none"
    try:
        known, unknown = parser.parse_known_args(args.options)
    except argparse.ArgumentError as error:
        raise ConfigError(f"`identity-tf data {task.name}`: {error}. Received: {' '.join(args.options)}") from None
    if unknown:
        raise ConfigError(f"`identity-tf data {task.name}` takes the flags: {flags}. Received: {' '.join(unknown)}")
    options = vars(known)
    for name, value in options.items():
        if isinstance(value, int) and value < (0 if name == "seed" else 1):
            raise ConfigError(f"--{name.replace('_', '-')} must be >= {0 if name == 'seed' else 1}. Received: {value}")
    print(task.build_data(**options))
    return 0


def _demo(args) -> int:
    _load_tensorflow()
    from identity_tf import demo

    config = demo.config_from_overrides(args.set or [])
    print(f"identity_tf demo: learning shortest-path costs with model.fit ({config})")
    result = demo.run(config, verbose=2 if args.quiet else "auto")
    print(json.dumps(result, indent=2))
    return 0


def _demo_keys() -> str:
    """``grid=12, features=8, ...``: the demo's settings with their defaults (no TensorFlow import)."""
    import ast

    source = (pathlib.Path(__file__).parent / "demo.py").read_text()
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "DemoConfig":
            items = [
                f"{stmt.target.id}={ast.literal_eval(stmt.value)!r}"
                for stmt in node.body
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None
            ]
            return ", ".join(items)
    return ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="identity-tf",
        description=DESCRIPTION.replace("{tasks}", ", ".join(_grids()) or "see configs/"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", help="dataset directory (default: $IDENTITY_TF_DATA_DIR or ~/.cache/identity_tf)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,reproduce,data,demo}")

    p = sub.add_parser(
        "train",
        help="train one config into a run directory",
        description="Train one config and write its run directory (resumable).",
        epilog=RUN_DIRECTORY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="YAML config, configs/TASK/ROW.yaml")
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override a config value (repeatable), e.g. --set train.epochs=5; sections: data, model, method, train",
    )
    p.add_argument("--out", help="run directory (default: runs/<config name>[_quick])")
    p.add_argument(
        "--overwrite", action="store_true", help="delete the run in --out first (also one of another config)"
    )
    p.add_argument(
        "--quick", action="store_true", help="the config's reduced size (its quick: block): minutes on a CPU"
    )
    p.add_argument(
        "--strategy",
        default="default",
        choices=["default", "mirrored", "multi_worker"],
        help="default: one device; mirrored: all GPUs (or logical CPU devices) of this machine; multi_worker: one "
        "process per worker, each started with its TF_CONFIG",
    )
    p.add_argument("--quiet", action="store_true", help="one line per epoch instead of progress bars")
    p.set_defaults(func=_train)

    grids = _grids()
    p = sub.add_parser(
        "reproduce",
        help="run a paper table's grid and print it beside the paper's numbers",
        description="Run the rows of configs/<TASK>/reproduce.yaml over seeds; finished runs are reused, so an "
        "interrupted grid resumes. Writes <out>/table.md, table.json and curves.png.",
    )
    p.add_argument("task", help=f"a task with a grid: {', '.join(grids) or 'see configs/*/reproduce.yaml'}")
    p.add_argument("--quick", action="store_true", help="every row at its config's reduced (quick:) size")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (restarts) to run (default: the grid's)")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only the rows with these names")
    p.add_argument(
        "--set", action="append", metavar="SECTION.KEY=VALUE", help="override a value of every row (e.g. a size)"
    )
    p.add_argument("--out", help="output directory (default: runs/reproduce_<task>[_quick])")
    p.add_argument("--configs", help="configs directory (default: ./configs, else the one next to the package)")
    p.add_argument("--strategy", default="default", choices=["default", "mirrored"], help="as for train")
    p.add_argument("--quiet", action="store_true", help="one line per epoch")
    p.add_argument(
        "--report",
        action="store_true",
        help="train nothing: print the table generated from the committed result files (--results)",
    )
    p.add_argument("--results", help="result files of --report/--export (default: ./results/<task>)")
    p.add_argument("--write-readme", action="store_true", help="with --report: replace README.md's block of the task")
    p.add_argument(
        "--export", metavar="RUNS_DIR", help="copy the small files of finished runs in RUNS_DIR to --results"
    )
    p.set_defaults(func=_reproduce)

    p = sub.add_parser(
        "data",
        help="build a task's dataset into the data directory",
        description="Build a task's offline dataset in the published format (downloads are verified by checksum). "
        "The flags are the task's: `identity-tf data TASK --help` lists them.",
    )
    p.add_argument("dataset", metavar="TASK", help=f"a task: {', '.join(_grids()) or 'see configs/'}")
    p.add_argument("options", nargs=argparse.REMAINDER, help="the task's flags (identity-tf data TASK --help)")
    p.set_defaults(func=_data)

    p = sub.add_parser(
        "demo",
        help="train the small shortest-path demo (generated data, no download)",
        description="Learn shortest-path costs from features with model.fit (Identity + P_norm + margin noise, or "
        "Blackbox) on generated grids and print the test metrics before and after training. Settings (--set "
        f"KEY=VALUE): {_demo_keys()}.",
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="change a demo setting, e.g. --set epochs=5")
    p.add_argument("--quiet", action="store_true", help="one line per epoch")
    p.set_defaults(func=_demo)
    return parser


def _error(message) -> None:
    print(f"identity-tf: error: {message}", file=sys.stderr)


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    if args.data_dir:
        os.environ["IDENTITY_TF_DATA_DIR"] = args.data_dir
    try:
        return args.func(args)
    except KeyboardInterrupt:
        _error("interrupted (run the same command again to resume)")
        return 130
    except Exception as error:  # mapped to exit codes below; IDENTITY_TF_TRACEBACK=1 shows the traceback
        if os.environ.get("IDENTITY_TF_TRACEBACK"):
            raise
        from identity_tf.run_dir import RunDirError

        if type(error).__name__ == "TrainingDiverged":
            print(f"identity-tf: {error}", file=sys.stderr)
            return EXIT_DIVERGED
        if isinstance(error, (ValueError, RunDirError)):  # ConfigError, DataError, the run directory
            _error(error)
            return EXIT_USAGE
        if isinstance(error, OSError):  # a file or directory that cannot be read or written
            _error(f"{type(error).__name__}: {error} (IDENTITY_TF_TRACEBACK=1 shows where)")
            return EXIT_USAGE
        raise


if __name__ == "__main__":
    sys.exit(main())
