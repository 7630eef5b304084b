"""Maintainers: regenerate the committed Warcraft tile atlas ``identity_tf/datasets/assets/warcraft_tiles.npz``.

Usage: ``python tools/warcraft_tile_atlas.py [path/to/arcade-3.3.3-py3-none-any.whl] [--out FILE]``. Without a
wheel, the pinned ``arcade==3.3.3`` wheel is fetched with ``pip download`` into the data directory. The code is
:mod:`identity_tf.datasets.warcraft._maintainer`; the runtime never imports it. A changed atlas changes the
Warcraft manifest (it records the atlas' sha256), so cached builds are regenerated.
"""

import argparse

from identity_tf.datasets.warcraft import ATLAS_PATH
from identity_tf.datasets.warcraft._maintainer import write_tile_atlas


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", nargs="?", default=None, help="the arcade==3.3.3 wheel (default: pip download)")
    parser.add_argument("--out", default=str(ATLAS_PATH), help="output file (default: the committed asset)")
    args = parser.parse_args(argv)
    print(write_tile_atlas(args.wheel, out=args.out))


if __name__ == "__main__":
    main()
