"""The Warcraft shortest-path task (paper B.5) for the trainer: data settings, splits, artifacts."""

from __future__ import annotations

import dataclasses
import pathlib

from identity_tf.method import GRADIENTS, RELAXATIONS
from identity_tf.tasks.registry import DataOption, Task, TaskData, register
from identity_tf.tasks.warcraft.model import WarcraftConfig, WarcraftShortestPath


@dataclasses.dataclass
class WarcraftData:
    """Warcraft data settings (built on first use; see ``identity_tf.datasets.warcraft``).

    Attributes:
        size: Map grid size k.
        num_train, num_val, num_test: Dataset sizes (the original: 10 000 / 1 000 / 1 000).
        seed: Dataset seed.
        max_train, max_val, max_test: Use only the first N maps of a split (``--quick`` sizes), None = all.
        data_dir: Data directory; None = ``$IDENTITY_TF_DATA_DIR`` or the user cache.
    """

    size: int = 12
    num_train: int = 10000
    num_val: int = 1000
    num_test: int = 1000
    seed: int = 0
    max_train: int | None = None
    max_val: int | None = None
    max_test: int | None = None
    data_dir: str | None = None


@register("warcraft")
class WarcraftTask(Task):
    """Terrain costs from map images through a shortest-path solver; metric: the cost ratio (x100, 100 = optimal)."""

    data_config = WarcraftData
    model_config = WarcraftConfig
    model_from_data = {"size": "size"}
    methods = tuple(g for g in GRADIENTS if g not in RELAXATIONS)
    monitor, mode = "val_cost_ratio", "min"
    description = "Warcraft shortest path: map image -> terrain costs -> path (paper B.5)"
    tiny = {
        "data.size": 4,
        "data.num_train": 40,
        "data.num_val": 10,
        "data.num_test": 11,
        "train.epochs": 2,
        "train.batch_size": 10,
    }
    data_options = (
        DataOption("size", int, 12, "map grid size k (the published: 12-30)"),
        DataOption("num_train", int, 10000, "training maps"),
        DataOption("num_val", int, 1000, "validation maps"),
        DataOption("num_test", int, 1000, "test maps"),
        DataOption("seed", int, 0, "seed of the generator"),
    )

    def build_data(self, data_dir=None, size=12, num_train=10000, num_val=1000, num_test=1000, seed=0):
        from identity_tf.datasets import warcraft as data_lib

        return data_lib.build(
            size, data_dir=data_dir, num_train=num_train, num_val=num_val, num_test=num_test, seed=seed
        )

    def datasets(self, config) -> TaskData:
        from identity_tf.datasets import warcraft as data_lib

        d = config.data
        self.build_data(d.data_dir, d.size, d.num_train, d.num_val, d.num_test, d.seed)
        data = data_lib.load(d.size, data_dir=d.data_dir)
        limits = {"train": d.max_train, "val": d.max_val, "test": d.max_test}
        data = {
            split: data_lib.WarcraftSplit(
                *(array[: limits[split]] for array in (s.maps, s.shortest_paths, s.vertex_weights))
            )
            for split, s in data.items()
        }
        b, seed = config.train.batch_size, config.train.seed
        splits = {
            split: data_lib.make_dataset(data, split, b, shuffle=(split == "train"), seed=seed)
            for split in ("train", "val", "test")
        }
        return TaskData(splits, data)

    def build_model(self, config, data: TaskData) -> WarcraftShortestPath:
        return WarcraftShortestPath(config.model, config.method, seed=config.train.seed)

    def artifacts(self, model, config, data: TaskData, run_dir: pathlib.Path) -> list[pathlib.Path]:
        from identity_tf.tasks.warcraft.plots import warcraft_paths

        return [warcraft_paths(model, data.data, pathlib.Path(run_dir) / "paths.png")]

    def summary(self, test: dict) -> str:
        return f"Test cost ratio x100: {test['cost_ratio']:.2f}, exact paths {100 * test['exact_path_accuracy']:.2f} %"
