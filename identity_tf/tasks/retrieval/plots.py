"""Retrieval plots: query images of the held-out classes with their top-K retrieved images, correct ones marked."""

from __future__ import annotations

import pathlib

import numpy as np

from identity_tf.plots import subplots


def top_k(embeddings: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """``[len(queries), k]`` positions (into ``embeddings``) of each query's most similar other images.

    Ties by position, as :class:`identity_tf.solvers.Ranking` breaks them.

    Example:
    >>> e = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    >>> top_k(e, np.array([0]), k=2).tolist()
    [[1, 2]]
    """
    scores = embeddings[queries] @ embeddings.T  # [q, N]
    scores[np.arange(len(queries)), queries] = -np.inf  # a query does not retrieve itself
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def query_positions(labels: np.ndarray, num_queries: int) -> np.ndarray:
    """Positions of ``num_queries`` queries from different classes, spread over the split (deterministic)."""
    first = np.unique(labels, return_index=True)[1]
    step = max(1, len(first) // max(1, num_queries))
    return np.sort(first)[::step][:num_queries]


def draw_retrievals(images, labels, embeddings, queries, k: int, out_png=None, title: str = ""):
    """A figure: one row per query (left), then its top-``k`` images, green frame = same class, red = other.

    Returns:
        ``(figure, hits)`` with ``hits [len(queries), k]`` booleans (retrieved image of the query's class).
    """
    ranked = top_k(np.asarray(embeddings, np.float64), np.asarray(queries), k)
    hits = labels[ranked] == labels[np.asarray(queries)][:, None]
    fig, axes = subplots(len(queries), k + 1, (1.3 * (k + 1), 1.45 * len(queries)))
    for row, query in enumerate(queries):
        axes[row, 0].imshow(images[query])
        axes[row, 0].set_title("query", fontsize=8)
        for column, (position, hit) in enumerate(zip(ranked[row], hits[row]), 1):
            ax = axes[row, column]
            ax.imshow(images[position])
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:green" if hit else "tab:red")
                spine.set_linewidth(3)
            ax.set_title(f"{column}", fontsize=8, color="tab:green" if hit else "tab:red")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"Top-{k} retrieved (green: same class, red: other)", fontsize=9)
    fig.tight_layout()
    if out_png is not None:
        fig.savefig(out_png, dpi=100)
    return fig, hits


def retrieval_examples(model, splits, out_png, num_queries: int = 5, k: int = 6) -> pathlib.Path:
    """The test classes' queries with their top-``k`` retrievals by ``model`` (all test images as the database)."""
    from identity_tf.tasks.retrieval.model import embed_split

    images, labels = splits.data.images[splits.test], splits.data.labels[splits.test]
    embeddings = embed_split(model, splits.data.images, splits.test)
    queries = query_positions(labels, num_queries)
    draw_retrievals(images, labels, embeddings, queries, min(k, len(labels) - 1), out_png)
    return pathlib.Path(out_png)
