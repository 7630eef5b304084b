"""Maintainers: audit the BeerAdvocate word exclusion list ``identity_tf/datasets/assets/excluded_words.sha256``.

Usage:

* ``python tools/beer_excluded_words.py audit [--data-dir DIR]``: how the list splits the VADER lexicon's candidate
  words (counts per category, remaining negative / positive words; no word is printed);
* ``python tools/beer_excluded_words.py check WORD [WORD ...]``: whether each word is excluded.

The code is :mod:`identity_tf.datasets.beer._maintainer`; the runtime never imports it.
"""

import argparse
import json

from identity_tf.datasets.beer import is_excluded
from identity_tf.datasets.beer._maintainer import audit


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    audit_parser = commands.add_parser("audit", help="counts of the candidate words the list excludes")
    audit_parser.add_argument("--data-dir", default=None, help="data directory holding downloads/")
    check_parser = commands.add_parser("check", help="whether words are excluded")
    check_parser.add_argument("words", nargs="+")
    args = parser.parse_args(argv)
    if args.command == "audit":
        print(json.dumps(audit(args.data_dir), indent=2))
    else:
        for word in args.words:
            print(f"{word}\t{'excluded' if is_excluded(word) else 'kept'}")


if __name__ == "__main__":
    main()
