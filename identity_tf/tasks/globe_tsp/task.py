"""The Globe TSP task (paper section 4.4, B.4) for the trainer: data settings, splits, label corruption, artifacts."""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np

from identity_tf.method import GRADIENTS, RELAXATIONS
from identity_tf.tasks.globe_tsp.model import GlobeTSP, GlobeTSPConfig, cost_norm_callback
from identity_tf.tasks.registry import DataOption, Task, TaskData, register


@dataclasses.dataclass
class GlobeTSPData:
    """Globe TSP data settings (the dataset is built on first use; see ``identity_tf.datasets.globe_tsp``).

    Attributes:
        k: Countries per example.
        num_train, num_test: Dataset sizes (the paper: 10 000 training examples).
        seed: Dataset seed (sampling of the k-subsets).
        val_fraction: Last fraction of the training examples held out for checkpoint selection.
        label_corruption: rho of the paper's robustness study: training labels get entries flipped with
            probability rho / k (fixed, seeded, symmetric).
        max_train, max_test: Use only the first N examples of the built dataset (``--quick`` sizes), None = all.
        data_dir: Data directory; None = ``$IDENTITY_TF_DATA_DIR`` or the user cache.
    """

    k: int = 5
    num_train: int = 10000
    num_test: int = 1000
    seed: int = 0
    val_fraction: float = 0.1
    label_corruption: float = 0.0
    max_train: int | None = None
    max_test: int | None = None
    data_dir: str | None = None

    def __post_init__(self):
        train = min(self.num_train, self.max_train or self.num_train)
        val = int(round(self.val_fraction * train))
        if not 1 <= val < train:
            raise ValueError(
                f"The validation split of {train} training examples at data.val_fraction={self.val_fraction:g} has "
                f"{val} examples; it needs at least 1 and must leave training examples. Received: "
                f"num_train={self.num_train}, max_train={self.max_train}, val_fraction={self.val_fraction}"
            )


def corrupt_labels(tours: np.ndarray, rho: float, seed: int) -> np.ndarray:
    """Flips each off-diagonal entry of each ``[k, k]`` label with probability ``rho / k`` (mirrored, fixed)."""
    if rho <= 0:
        return tours
    k = tours.shape[-1]
    rng = np.random.default_rng(seed)
    flips = np.triu(rng.random(tours.shape) < rho / k, 1)
    flips = flips | np.swapaxes(flips, -1, -2)
    return np.where(flips, 1 - tours, tours).astype(tours.dtype)


@register("globe_tsp")
class GlobeTSPTask(Task):
    """Learn where capitals lie from their flags through a TSP solver; metric: exact tours (``tour_accuracy``)."""

    data_config = GlobeTSPData
    model_config = GlobeTSPConfig
    model_from_data = {"k": "k"}
    methods = tuple(g for g in GRADIENTS if g not in RELAXATIONS)
    monitor, mode = "val_tour_accuracy", "max"
    description = "Globe TSP: flags -> capitals -> TSP tour (paper section 4.4)"
    tiny = {"data.k": 5, "data.num_train": 60, "data.num_test": 21, "train.epochs": 2, "train.batch_size": 10}
    data_options = (
        DataOption("k", int, 5, "countries per example (the paper: 5, 10, 20)"),
        DataOption("num_train", int, 10000, "training examples"),
        DataOption("num_test", int, 1000, "test examples"),
        DataOption("seed", int, 0, "seed of the sampling"),
    )

    def build_data(self, data_dir=None, k=5, num_train=10000, num_test=1000, seed=0) -> pathlib.Path:
        from identity_tf.datasets import globe_tsp as data_lib

        return data_lib.build(k, data_dir=data_dir, num_train=num_train, num_test=num_test, seed=seed)

    def datasets(self, config) -> TaskData:
        from identity_tf.datasets import globe_tsp as data_lib

        d = config.data
        self.build_data(d.data_dir, k=d.k, num_train=d.num_train, num_test=d.num_test, seed=d.seed)
        data = data_lib.load(d.k, data_dir=d.data_dir)
        data = dataclasses.replace(
            data,
            train_indices=data.train_indices[: d.max_train],
            train_tours=data.train_tours[: d.max_train],
            test_indices=data.test_indices[: d.max_test],
            test_tours=data.test_tours[: d.max_test],
        )
        if d.label_corruption > 0:  # corrupt the training part only (validation keeps clean labels)
            cut = len(data.train_tours) - int(round(d.val_fraction * len(data.train_tours)))
            tours = data.train_tours.copy()
            tours[:cut] = corrupt_labels(tours[:cut], d.label_corruption, seed=d.seed + 1)
            data = dataclasses.replace(data, train_tours=tours)
        b, seed = config.train.batch_size, config.train.seed
        splits = {
            split: data_lib.make_dataset(
                data, split, b, shuffle=(split == "train"), seed=seed, val_fraction=d.val_fraction
            )
            for split in ("train", "val", "test")
        }
        return TaskData(splits, data)

    def build_model(self, config, data: TaskData) -> GlobeTSP:
        return GlobeTSP(config.model, config.method, seed=config.train.seed)

    def callbacks(self, model, config, data: TaskData) -> list:
        return [cost_norm_callback(data.data)]  # paper Fig. 4c

    def artifacts(self, model, config, data: TaskData, run_dir: pathlib.Path) -> list[pathlib.Path]:
        from identity_tf.tasks.globe_tsp.plots import globe_tours

        return [globe_tours(model, data.data, pathlib.Path(run_dir) / "tours.png")]

    def summary(self, test: dict) -> str:
        return (
            f"Test accuracy: exact tours {100 * test['tour_accuracy']:.2f} %, "
            f"tour edges {100 * test['edge_accuracy']:.2f} %"
        )
