"""The deep graph matching task (paper 4.2 / B.2) for the trainer: data settings, splits, evaluation, artifacts."""

from __future__ import annotations

import dataclasses
import pathlib

import keras
import numpy as np

from identity_tf.tasks.graph_matching.model import (
    BackboneScaledAdam,
    GraphMatchingConfig,
    GraphMatchingNet,
    accuracy_per_class,
    predict_matchings,
)
from identity_tf.tasks.registry import DataOption, Task, TaskData, register

SOURCES = ("auto", "offline", "voc", "spair")  # identity_tf.datasets.graph_matching.SOURCE_NAMES (imported lazily)


@dataclasses.dataclass
class GraphMatchingData:
    """Graph-matching data settings (see ``identity_tf.datasets.graph_matching``).

    Attributes:
        source: "offline" (pairs from scikit-image's photos, built on first use), "voc" (Pascal VOC with the
            Berkeley keypoints under ``<data_dir>/graph_matching/PascalVOC``), "spair" (SPair-71k under
            ``<data_dir>/graph_matching/SPair-71k``) or "auto" (the first of voc, spair that is present, else
            offline).
        image_size: Side of the square images (BB-GM: 256).
        train_instances, val_instances, test_instances: Offline: warped instances per class per split.
        train_pairs, val_pairs, test_pairs: Offline: pairs per class per split; real data: pairs per class
            sampled when the format has no pair list (VOC).
        num_outliers: Offline: outlier points per target image.
        jitter: Offline: keypoint jitter (standard deviation in image sides).
        num_stereo: Offline: pairs of the real stereo evaluation split (0: none).
        seed: Seed of the build, the pair sampling and the target order.
        max_train, max_val, max_test: Use only the first N pairs of a split (``--quick`` sizes); None = all.
        data_dir: Data directory; None = ``$IDENTITY_TF_DATA_DIR`` or the user cache.
    """

    source: str = "auto"
    image_size: int = 256
    train_instances: int = 40
    val_instances: int = 10
    test_instances: int = 20
    train_pairs: int = 250
    val_pairs: int = 25
    test_pairs: int = 100
    num_outliers: int = 2
    jitter: float = 0.005
    num_stereo: int = 20
    seed: int = 0
    max_train: int | None = None
    max_val: int | None = None
    max_test: int | None = None
    data_dir: str | None = None

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"`data.source` must be one of {SOURCES}. Received: source={self.source!r}")


@register("graph_matching")
class GraphMatchingTask(Task):
    """Keypoint matching between image pairs through a graph-matching solver; metric: matching accuracy."""

    data_config = GraphMatchingData
    model_config = GraphMatchingConfig
    methods = ("identity", "blackbox")
    monitor, mode = "val_matching_accuracy", "max"
    description = "Deep graph matching: image pair -> keypoint costs -> node matching (paper 4.2, BB-GM)"
    tiny = {
        "data.source": "offline",
        "data.image_size": 32,
        "data.train_instances": 3,
        "data.val_instances": 2,
        "data.test_instances": 2,
        "data.train_pairs": 1,
        "data.val_pairs": 1,
        "data.test_pairs": 1,
        "data.num_stereo": 1,
        "model.width": 2,
        "model.kernel_size": 2,
        "model.solver_kicks": 0,
        "train.epochs": 2,
        "train.batch_size": 4,
    }
    data_options = (
        DataOption("image_size", int, 256, "side of the square images"),
        DataOption("seed", int, 0, "seed of the build"),
    )

    def build_data(self, data_dir=None, image_size=256, seed=0, **options):
        from identity_tf.datasets import graph_matching as data_lib

        return data_lib.build(data_dir, image_size=image_size, seed=seed, **options)

    def datasets(self, config) -> TaskData:
        from identity_tf.datasets import graph_matching as data_lib

        d = config.data
        splits = data_lib.load_source(
            d.source,
            d.data_dir,
            image_size=d.image_size,
            instances={"train": d.train_instances, "val": d.val_instances, "test": d.test_instances},
            pairs={"train": d.train_pairs, "val": d.val_pairs, "test": d.test_pairs},
            num_outliers=d.num_outliers,
            jitter=d.jitter,
            num_stereo=d.num_stereo,
            seed=d.seed,
        )
        limits = {"train": d.max_train, "val": d.max_val, "test": d.max_test}
        splits = {name: split.limit(limits.get(name)) for name, split in splits.items()}
        n = max(data_lib.pair_sizes(s)[0] for s in splits.values())
        m = max(data_lib.pair_sizes(s)[1] for s in splits.values())
        pairs = {name: data_lib.assemble(s, d.seed, n, m) for name, s in splits.items()}
        b, seed = config.train.batch_size, config.train.seed
        batched = {
            name: data_lib.make_dataset(splits[name], pairs[name], b, shuffle=(name == "train"), seed=seed)
            for name in ("train", "val", "test")
        }
        return TaskData(batched, {"splits": splits, "pairs": pairs})

    def build_model(self, config, data: TaskData) -> GraphMatchingNet:
        return GraphMatchingNet(config.model, config.method, seed=config.train.seed)

    def compile(self, model, optimizer, jit_compile: bool) -> None:
        """Adam with the backbone's learning rate times ``model.backbone_lr_factor`` (:class:`BackboneScaledAdam`)."""
        factor = model.task_config.backbone_lr_factor
        if isinstance(optimizer, keras.optimizers.Adam):
            lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
            optimizer = BackboneScaledAdam(learning_rate=lr, backbone_factor=factor)
        elif factor != 1.0:
            raise ValueError(
                "`model.backbone_lr_factor` is applied by the Adam optimizer only; set it to 1.0 for "
                f"{type(optimizer).__name__}. Received: backbone_lr_factor={factor!r}"
            )
        model.compile(optimizer=optimizer, jit_compile=jit_compile)

    def evaluate(self, model, config, data: TaskData) -> dict[str, float]:
        """The class-mean test accuracy (the paper's number), each class's, and the stereo split's accuracy."""
        from identity_tf.datasets import graph_matching as data_lib

        out = {}
        for name in ("test", data_lib.STEREO):
            if name not in data.data["splits"]:
                continue
            split, pairs = data.data["splits"][name], data.data["pairs"][name]
            x, truth = predict_matchings(model, split, pairs, config.train.batch_size)
            per_class = accuracy_per_class(x, truth, pairs.classes, len(split.class_names))
            if name == "test":
                out["accuracy_class_mean"] = float(np.nanmean(per_class))
                out.update({f"accuracy_{c}": float(v) for c, v in zip(split.class_names, per_class) if v == v})
            else:
                out["stereo_accuracy"] = float(per_class[0])
        return out

    def artifacts(self, model, config, data: TaskData, run_dir: pathlib.Path) -> list[pathlib.Path]:
        from identity_tf.tasks.graph_matching.plots import plot_matches

        splits, pairs = data.data["splits"], data.data["pairs"]
        paths = [plot_matches(model, splits["test"], pairs["test"], pathlib.Path(run_dir) / "matches.png")]
        if "stereo" in splits:
            paths.append(
                plot_matches(model, splits["stereo"], pairs["stereo"], pathlib.Path(run_dir) / "matches_stereo.png")
            )
        return paths

    def summary(self, test: dict) -> str:
        extra = f", class mean {100 * test['accuracy_class_mean']:.2f} %" if "accuracy_class_mean" in test else ""
        stereo = f", stereo {100 * test['stereo_accuracy']:.2f} %" if "stereo_accuracy" in test else ""
        return f"Test matching accuracy {100 * test['matching_accuracy']:.2f} %{extra}{stereo}"

    def describe_method(self, config) -> str:
        m = config.method
        how = f"{m.gradient}" + (f" (lambda {m.lam:g})" if m.gradient == "blackbox" else "")
        margin = f", {config.model.margin} margin alpha {m.alpha:g}" if m.alpha else ""
        return f"{how}, projection {m.projection}{margin}"
