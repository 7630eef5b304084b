"""Warcraft plots: test maps with the true and the predicted shortest path."""

from __future__ import annotations

import pathlib

import numpy as np

from identity_tf.plots import subplots


def warcraft_paths(model, data, out_png, num_examples: int = 4) -> pathlib.Path:
    """Test maps with the true path (green) and the predicted path (red)."""
    from identity_tf.datasets import warcraft as data_lib

    batch = next(iter(data_lib.make_dataset(data, "test", batch_size=num_examples)))
    predicted = model.predict(batch[0], verbose=0)
    test = data["test"]
    fig, axes = subplots(1, len(predicted), (3.2 * len(predicted), 3.4))
    for n, ax in enumerate(axes[0]):
        image = test.maps[n]
        k = test.shortest_paths.shape[-1]
        cell = image.shape[0] / k
        ax.imshow(image)
        for path, color, size in ((test.shortest_paths[n], "tab:green", 40), (predicted[n], "tab:red", 12)):
            rows, cols = np.nonzero(np.asarray(path) > 0.5)
            ax.scatter((cols + 0.5) * cell, (rows + 0.5) * cell, s=size, color=color, alpha=0.8)
        weights = test.vertex_weights[n]
        ratio = float((weights * predicted[n]).sum() / (weights * test.shortest_paths[n]).sum())
        ax.set_title(f"cost ratio {100 * ratio:.1f}", fontsize=9)
        ax.axis("off")
    fig.suptitle("Warcraft: true path (green) vs predicted (red)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    return pathlib.Path(out_png)
