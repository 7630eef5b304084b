"""Globe TSP plots: true vs predicted tours over the capitals."""

from __future__ import annotations

import pathlib

import numpy as np

from identity_tf.plots import subplots


def _edges(adjacency):
    i, j = np.nonzero(np.triu(np.asarray(adjacency) > 0.5, 1))
    return list(zip(i.tolist(), j.tolist()))


def globe_tours(model, data, out_png, num_examples: int = 4) -> pathlib.Path:
    """True (green) vs predicted (red, dashed) tours over the capitals, equirectangular longitude/latitude map."""
    indices, tours = data.test_indices[:num_examples], data.test_tours[:num_examples]
    flags = data.flags[indices].astype(np.float32) / 255.0  # [n, k, 20, 40, 3]
    predicted = model.predict(flags, verbose=0)
    columns = min(2, len(indices))
    rows = -(-len(indices) // columns)
    fig, axes = subplots(rows, columns, (6.0 * columns, 3.2 * rows))
    for ax in axes.ravel()[len(indices) :]:
        ax.axis("off")
    for ax, example, true, pred in zip(axes.ravel(), indices, tours, predicted):
        lon, lat = data.gps[example, 0], data.gps[example, 1]
        for i, j in _edges(true):
            ax.plot([lon[i], lon[j]], [lat[i], lat[j]], color="tab:green", lw=3, alpha=0.6)
        for i, j in _edges(pred):
            ax.plot([lon[i], lon[j]], [lat[i], lat[j]], color="tab:red", lw=1.5, ls="--")
        ax.scatter(lon, lat, color="black", zorder=3, s=12)
        for n, c in enumerate(example):
            ax.annotate(str(data.names[c])[:12], (lon[n], lat[n]), fontsize=6)
        correct = np.array_equal(np.round(pred), true)
        ax.set_title("correct tour" if correct else "wrong tour", fontsize=9)
        ax.set_xlim(-180, 180)
        ax.set_ylim(-90, 90)
        ax.set_xlabel("longitude")
        ax.set_ylabel("latitude")
        ax.grid(alpha=0.3)
    fig.suptitle("Globe TSP: true tour (green) vs predicted (red, dashed); distances are great-circle", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    return pathlib.Path(out_png)
