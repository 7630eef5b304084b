"""Maintainers: ``python -m identity_tf.datasets.warcraft [arcade wheel]`` rewrites the committed tile atlas."""

import sys

from identity_tf.datasets.warcraft._maintainer import write_tile_atlas

print(write_tile_atlas(sys.argv[1] if len(sys.argv) > 1 else None))
