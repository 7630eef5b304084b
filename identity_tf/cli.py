"""Command-line interface: ``identity-tf demo``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys


def _demo(args) -> int:
    from identity_tf import demo

    fields = {f.name: f for f in dataclasses.fields(demo.DemoConfig)}
    overrides = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            print(f"error: --set expects key=value with key in {sorted(fields)}. Received: {item!r}", file=sys.stderr)
            return 2
        kind = type(getattr(demo.DemoConfig(), key))
        try:
            overrides[key] = kind(value)
        except ValueError:
            print(f"error: --set {key} expects a {kind.__name__}. Received: {value!r}", file=sys.stderr)
            return 2
    config = demo.DemoConfig(**overrides)
    print(f"identity_tf demo: learning shortest-path costs with model.fit ({config})")
    result = demo.run(config, verbose=2 if args.quiet else 1)
    print(json.dumps(result, indent=2))
    print(
        f"Test exact-path accuracy {result['before_exact_path_accuracy']:.3f} -> {result['exact_path_accuracy']:.3f}, "
        f"cost ratio x100 {result['before_cost_ratio_x100']:.1f} -> {result['cost_ratio_x100']:.1f}"
    )
    return 0


def main(argv=None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = argparse.ArgumentParser(prog="identity-tf", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo_parser = sub.add_parser("demo", help="train the small shortest-path demo and print test metrics")
    demo_parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a demo setting")
    demo_parser.add_argument("--quiet", action="store_true", help="one line per epoch instead of progress bars")
    args = parser.parse_args(argv)
    return _demo(args)


if __name__ == "__main__":
    sys.exit(main())
