"""Where the benchmarks write their JSON: a run-specific file that git ignores, unless asked otherwise.

``benchmarks/results/<name>.json`` holds the numbers quoted in README.md and is tracked; a plain run must not
overwrite it. By default a benchmark writes ``benchmarks/results/local/<name>-<YYYYmmdd-HHMMSS>.json``
(``benchmarks/results/local/`` is in ``.gitignore``); ``--save`` writes the tracked file, ``--out PATH`` any file.
Every result records the machine's load (``os.getloadavg()``) next to the numbers, since timings on a shared
machine depend on it.

Example:
>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> add_output_arguments(parser, "demo")
>>> output_path(parser.parse_args([]), "demo").parent.name
'local'
>>> output_path(parser.parse_args(["--save"]), "demo").name
'demo.json'
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

#: Tracked results (README's numbers).
RESULTS_DIR = pathlib.Path(__file__).resolve().parent / "results"
#: Default, git-ignored destination of a run.
LOCAL_DIR = RESULTS_DIR / "local"


def add_output_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """Adds the mutually exclusive ``--out PATH`` and ``--save`` options."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--out",
        help=f"JSON output path (default: benchmarks/results/local/{name}-<time>.json, ignored by git)",
    )
    group.add_argument(
        "--save",
        action="store_true",
        help=f"write the tracked benchmarks/results/{name}.json (the numbers README quotes)",
    )


def output_path(args: argparse.Namespace, name: str) -> pathlib.Path:
    """``--out``, else the tracked file with ``--save``, else a new file under :data:`LOCAL_DIR`."""
    if getattr(args, "out", None):
        return pathlib.Path(args.out)
    if getattr(args, "save", False):
        return RESULTS_DIR / f"{name}.json"
    return LOCAL_DIR / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"


def machine() -> dict:
    """CPU count, load averages (1, 5, 15 min) and platform, recorded with every result.

    Example:
    >>> sorted(machine())
    ['cpu_count', 'loadavg', 'platform']
    """
    try:
        load = [round(value, 2) for value in os.getloadavg()]
    except OSError:  # not available on this platform
        load = None
    return {"cpu_count": os.cpu_count(), "loadavg": load, "platform": platform.platform()}


def write(path: pathlib.Path, result: dict) -> pathlib.Path:
    """Writes ``result`` (plus :func:`machine`'s fields, unless given) as JSON to ``path`` and says where."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**machine(), **result}, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"\nwrote {path}")
    return path
