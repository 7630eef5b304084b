"""The ``identity-tf`` command line.

    identity-tf train CONFIG [--set section.key=value ...] [--out DIR] [--quick] [--strategy default|mirrored|multi_worker]
    identity-tf reproduce globe_tsp|warcraft [--quick] [--seeds 0 1 2] [--out DIR] [--only NAME ...]
    identity-tf data globe_tsp --k 5 | identity-tf data warcraft --size 12
    identity-tf demo

``--data-dir`` (any command) sets where datasets are built and cached (default: ``$IDENTITY_TF_DATA_DIR`` or the
user cache directory).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys


def _configs_root(explicit: str | None) -> pathlib.Path:
    if explicit:
        return pathlib.Path(explicit)
    for candidate in (pathlib.Path.cwd() / "configs", pathlib.Path(__file__).resolve().parents[1] / "configs"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("No configs/ directory found here or next to the package; pass --configs DIR.")


def _train(args) -> int:
    from identity_tf import train

    config = train.load_config(args.config, train.parse_overrides(args.set), quick=args.quick)
    out = args.out or os.path.join("runs", pathlib.Path(args.config).stem + ("_quick" if args.quick else ""))
    print(f"identity-tf: training {config.task} -> {out}")
    metrics = train.train(config, out, strategy=args.strategy, verbose=2 if args.quiet else "auto")
    print(json.dumps(metrics["test"], indent=2))
    print(_summary(config.task, metrics["test"]) + f"  (run directory: {out})")
    return 0


def _summary(task: str, test: dict) -> str:
    """One line with the task's headline test metrics."""
    if task == "globe_tsp":
        return (
            f"Test accuracy: exact tours {100 * test['tour_accuracy']:.2f} %, "
            f"tour edges {100 * test['edge_accuracy']:.2f} %"
        )
    if task == "warcraft":
        return f"Test cost ratio x100: {test['cost_ratio']:.2f}, exact paths {100 * test['exact_path_accuracy']:.2f} %"
    if task == "dvae":
        return f"Test N-ELBO: {test['nelbo']:.2f} (BCE {test['bce']:.2f} + KL {test['kl']:.2f})"
    if task == "l2x":
        precision = f", rationale precision {test['rationale_precision']:.3f}" if "rationale_precision" in test else ""
        return f"Test MSE x100: {100 * test['mse']:.2f}{precision}"
    return "Test metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in test.items())


def _report(args, root: pathlib.Path) -> int:
    from identity_tf import report

    results = pathlib.Path(args.results or os.path.join("results", args.task))
    if args.export:
        for path in report.export(args.export, results):
            print(f"exported {path}")
    if args.report:
        table = report.table(args.task, root, results)
        print(table)
        if args.write_readme:
            report.write_readme_block("README.md", args.task, table)
            print(f"README.md: the {args.task} block was rewritten")
    return 0


def _reproduce(args) -> int:
    from identity_tf import reproduce, train

    root = _configs_root(args.configs)
    if args.report or args.export:
        return _report(args, root)
    out = pathlib.Path(args.out or os.path.join("runs", f"reproduce_{args.task}" + ("_quick" if args.quick else "")))
    table = reproduce.run(
        args.task,
        root,
        out,
        quick=args.quick,
        seeds=args.seeds,
        only=args.only,
        strategy=args.strategy,
        verbose=2 if args.quiet else 0,
        overrides=train.parse_overrides(args.set),
    )
    print(table)
    return 0


def _data(args) -> int:
    if args.dataset == "globe_tsp":
        from identity_tf.datasets import globe_tsp

        path = globe_tsp.build(
            args.k, num_train=args.num_train or 10000, num_test=args.num_test or 1000, seed=args.seed
        )
    else:
        from identity_tf.datasets import warcraft

        path = warcraft.build(
            args.size,
            num_train=args.num_train or 10000,
            num_val=args.num_val or 1000,
            num_test=args.num_test or 1000,
            seed=args.seed,
        )
    print(path)
    return 0


def _demo(args) -> int:
    from identity_tf import demo

    fields = {f.name for f in dataclasses.fields(demo.DemoConfig)}
    overrides = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set expects key=value with key in {sorted(fields)}. Received: {item!r}")
        overrides[key] = type(getattr(demo.DemoConfig(), key))(value)
    config = demo.DemoConfig(**overrides)
    print(f"identity_tf demo: learning shortest-path costs with model.fit ({config})")
    result = demo.run(config, verbose=2 if args.quiet else "auto")
    print(json.dumps(result, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="identity-tf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", help="dataset directory (default: $IDENTITY_TF_DATA_DIR or the user cache)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one config")
    p.add_argument("config", help="YAML config, e.g. configs/globe_tsp/tsp5_identity_noise0.2.yaml")
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value")
    p.add_argument("--out", help="run directory (default: runs/<config name>); rerun to resume")
    p.add_argument("--quick", action="store_true", help="the config's reduced size: minutes on 2 CPU cores")
    p.add_argument("--strategy", default="default", choices=["default", "mirrored", "multi_worker"])
    p.add_argument("--quiet", action="store_true", help="one line per epoch instead of progress bars")
    p.set_defaults(func=_train)

    p = sub.add_parser("reproduce", help="run a paper table's grid and print it beside the paper's numbers")
    p.add_argument("task", help="a folder of configs/ with a reproduce.yaml: globe_tsp, warcraft, dvae, l2x")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default: the grid's)")
    p.add_argument("--only", nargs="+", help="run only the rows with these names")
    p.add_argument(
        "--set", action="append", metavar="SECTION.KEY=VALUE", help="override a value of every row (e.g. a size)"
    )
    p.add_argument("--out")
    p.add_argument("--configs", help="configs directory (default: ./configs)")
    p.add_argument("--strategy", default="default", choices=["default", "mirrored"])
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

    p = sub.add_parser("data", help="build a dataset into the data directory")
    p.add_argument("dataset", choices=["globe_tsp", "warcraft"])
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--size", type=int, default=12)
    p.add_argument("--num-train", type=int)
    p.add_argument("--num-val", type=int)
    p.add_argument("--num-test", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_data)

    p = sub.add_parser("demo", help="train the small shortest-path demo")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_demo)
    return parser


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    if args.data_dir:
        os.environ["IDENTITY_TF_DATA_DIR"] = args.data_dir
    from identity_tf.datasets.cache import DataError
    from identity_tf.train import ConfigError, TrainingDiverged

    try:
        return args.func(args)
    except (ConfigError, DataError, FileNotFoundError) as error:
        print(f"identity-tf: error: {error}", file=sys.stderr)
        return 2
    except TrainingDiverged as error:
        print(f"identity-tf: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
