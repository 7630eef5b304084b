"""Graph-matching plots: image pairs side by side with the predicted and the true keypoint matches as lines."""

from __future__ import annotations

import pathlib

import numpy as np

from identity_tf.plots import subplots


def draw_pair(ax, split, pairs, index: int, predicted: np.ndarray) -> float:
    """Draws pair ``index`` on ``ax``: source left, target right, true matches as dashed green lines, predicted
    ones solid (green: correct, red: wrong); target outliers as crosses. Returns the pair's accuracy."""
    first, second = pairs.image_index[index]
    image = np.concatenate([split.images[first], split.images[second]], axis=1)
    size = split.image_size
    n, m = int(pairs.num_nodes1[index]), int(pairs.num_nodes2[index])
    source = pairs.points1[index, :n] * size
    target = pairs.points2[index, :m] * size + np.array([size, 0.0])
    truth = pairs.perm[index, :n]
    guess = np.argmax(predicted[:n, :m], axis=1)
    matched = predicted[:n, :m].max(axis=1) > 0.5
    ax.imshow(image)
    for i in range(n):
        (x0, y0), (x1, y1) = source[i], target[truth[i]]
        ax.plot([x0, x1], [y0, y1], "--", color="tab:green", lw=0.8, alpha=0.6)
        if matched[i]:
            x2, y2 = target[guess[i]]
            ax.plot([x0, x2], [y0, y2], "-", color="tab:green" if guess[i] == truth[i] else "tab:red", lw=1.2)
    outliers = np.setdiff1d(np.arange(m), truth)
    ax.scatter(source[:, 0], source[:, 1], s=10, color="yellow", zorder=3)
    ax.scatter(target[:, 0], target[:, 1], s=10, color="yellow", zorder=3)
    if len(outliers):
        ax.scatter(target[outliers, 0], target[outliers, 1], s=25, marker="x", color="tab:orange", zorder=3)
    accuracy = float(np.mean((guess == truth) & matched))
    ax.set_title(f"{split.class_names[pairs.classes[index]]}: {100 * accuracy:.0f} % matched", fontsize=9)
    ax.axis("off")
    return accuracy


def plot_matches(model, split, pairs, out_png, num_examples: int = 4) -> pathlib.Path:
    """The first ``num_examples`` pairs of a split with predicted vs true matches (see :func:`draw_pair`)."""
    from identity_tf.tasks.graph_matching.model import predict_matchings

    count = min(num_examples, len(pairs))
    predicted, _ = predict_matchings(model, split, pairs, batch_size=max(count, 1), limit=count)
    fig, axes = subplots(count, 1, (6.4, 3.4 * count))
    for index, ax in enumerate(axes[:, 0]):
        draw_pair(ax, split, pairs, index, predicted[index])
    fig.suptitle("Predicted matches (solid; red = wrong) vs true (dashed green)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    return pathlib.Path(out_png)
