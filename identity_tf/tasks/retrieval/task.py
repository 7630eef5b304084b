"""The image retrieval task (paper section 4.3, B.3) for the trainer: data settings, episodes, R@K, artifacts."""

from __future__ import annotations

import dataclasses
import math
import pathlib

import keras
import numpy as np
import tensorflow as tf

from identity_tf import metrics
from identity_tf.tasks.registry import DataOption, Task, TaskData, register
from identity_tf.tasks.retrieval.model import RetrievalAdam, RetrievalConfig, RetrievalModel, embed_split

RECALL_KS = (1, 2, 4, 8)


@dataclasses.dataclass
class RetrievalData:
    """Retrieval data settings.

    Attributes:
        source: "icons" (built from Debian icon themes on first use), "cub" (the official ``CUB_200_2011/``
            folder at ``data_dir``) or "auto" (CUB when ``data_dir`` holds it, else icons).
        image_size: Side of the square images (icons are built at this size; CUB is resized to it).
        classes_per_episode, images_per_class: One episode (a training example) is ``P`` classes x ``K`` images.
        episodes_per_epoch: Training episodes per epoch; None = as many as cover the training images once
            (rounded up to whole batches).
        augment: Random horizontal flips and crops (shifts of up to 1/8 of the side) of the training images.
        val_fraction: Fraction of the training classes held out (seeded) to select the checkpoint.
        max_train_classes, max_test_classes: Use only the first N classes of a split (``--quick`` / tiny sizes).
        seed: Seed of the validation classes and the episodes.
        data_dir: Data directory; None = ``$IDENTITY_TF_DATA_DIR`` or the user cache.
    """

    source: str = "auto"
    image_size: int = 64
    classes_per_episode: int = 16
    images_per_class: int = 4
    episodes_per_epoch: int | None = None
    augment: bool = False
    val_fraction: float = 0.1
    max_train_classes: int | None = None
    max_test_classes: int | None = None
    seed: int = 0
    data_dir: str | None = None

    def __post_init__(self):
        from identity_tf.datasets.retrieval import SOURCES

        if self.source not in SOURCES:
            raise ValueError(f"`data.source` must be one of {SOURCES}. Received: source={self.source!r}")
        if self.classes_per_episode < 2:
            raise ValueError(f"`data.classes_per_episode` must be >= 2. Received: {self.classes_per_episode!r}")
        if self.images_per_class < 2:
            raise ValueError(
                f"`data.images_per_class` must be >= 2 (a query needs a positive). Received: {self.images_per_class!r}"
            )
        if not isinstance(self.augment, bool):
            raise ValueError(f"`data.augment` must be true or false. Received: augment={self.augment!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"`data.val_fraction` must be in (0, 1). Received: val_fraction={self.val_fraction!r}")


@dataclasses.dataclass
class Splits:
    """The loaded data and its three class-disjoint splits (image indices)."""

    data: object
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    last_epoch: dict | None = None  # test R@K of the last epoch's weights (set by LastEpochRecall)


def split_indices(data, val_fraction: float, seed: int, max_train_classes=None, max_test_classes=None) -> Splits:
    """Training classes minus ``val_fraction`` of them (seeded; at least 2) / validation / test image indices."""
    train_classes = np.asarray(data.train_classes)[:max_train_classes]
    test_classes = np.asarray(data.test_classes)[:max_test_classes]
    num_val = max(2, int(round(val_fraction * len(train_classes))))
    if len(train_classes) - num_val < 2 or len(test_classes) < 2:
        raise ValueError(
            f"The splits need >= 2 classes each: {len(train_classes)} training classes leave {len(train_classes) - num_val} "
            f"after {num_val} validation classes, and there are {len(test_classes)} test classes. "
            f"Received: max_train_classes={max_train_classes}, max_test_classes={max_test_classes}, val_fraction={val_fraction}"
        )
    order = np.random.default_rng(seed).permutation(len(train_classes))
    val_classes = np.sort(train_classes[order[:num_val]])
    fit_classes = np.sort(train_classes[order[num_val:]])
    return Splits(data, data.indices("", fit_classes), data.indices("", val_classes), data.indices("", test_classes))


def recall_at_ks(embeddings: np.ndarray, labels: np.ndarray, ks=RECALL_KS) -> dict[str, float]:
    """R@K of a whole split: every image queries all the other images (cosine similarity of unit embeddings)."""
    e = tf.convert_to_tensor(embeddings, tf.float32)
    scores = tf.linalg.matmul(e, e, transpose_b=True)
    labels = tf.convert_to_tensor(labels)
    relevance = tf.cast(tf.equal(labels[:, None], labels[None, :]), tf.float32)
    valid = ~tf.eye(tf.shape(e)[0], dtype=tf.bool)
    return {f"recall_at_{k}": float(metrics.recall_at_k(relevance, scores, k=k, valid=valid)) for k in ks}


class ValidationRecall(keras.callbacks.Callback):
    """Adds ``val_recall_at_1`` (R@1 over all validation images, each querying the others) and
    ``val_mean_similarity`` (mean cosine similarity of two different validation images: 1 when the embeddings
    collapse to one point, the failure of Identity without projection) to the epoch's logs."""

    def __init__(self, images, labels, indices):
        super().__init__()
        self.images, self.labels, self.indices = images, labels, indices

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            embeddings = embed_split(self.model, self.images, self.indices)
            logs["val_recall_at_1"] = recall_at_ks(embeddings, self.labels[self.indices], ks=(1,))["recall_at_1"]
            n = len(embeddings)
            total = np.square(embeddings.sum(axis=0, dtype=np.float64)).sum() - n  # sum over pairs i != j of <e_i, e_j>
            logs["val_mean_similarity"] = float(total / max(n * (n - 1), 1))


class LastEpochRecall(keras.callbacks.Callback):
    """At the end of training, before the best-validation weights are restored for testing, measures the test
    R@K of the *last* epoch's weights into ``splits.last_epoch`` (reported as ``last_epoch_recall_at_K``). A method
    whose embeddings collapse peaks early, so the checkpoint selection hides the collapse that a run reporting its
    final weights (as the paper's table may) shows."""

    def __init__(self, splits: Splits):
        super().__init__()
        self.splits = splits

    def on_train_end(self, logs=None):
        s = self.splits
        embeddings = embed_split(self.model, s.data.images, s.test)
        s.last_epoch = {f"last_epoch_{k}": v for k, v in recall_at_ks(embeddings, s.data.labels[s.test]).items()}


@register("retrieval")
class RetrievalTask(Task):
    """Image retrieval with a recall loss on ranks (Identity / BB); metric: R@1, 2, 4, 8 on held-out classes."""

    data_config = RetrievalData
    model_config = RetrievalConfig
    model_from_data = {"image_size": "image_size"}
    methods = ("identity", "blackbox")
    monitor, mode = "val_recall_at_1", "max"
    description = "Image retrieval: images -> embeddings -> ranking -> recall loss (paper section 4.3)"
    tiny = {
        "data.image_size": 16,
        "data.classes_per_episode": 3,
        "data.images_per_class": 2,
        "data.episodes_per_epoch": 4,
        "data.max_train_classes": 10,
        "data.max_test_classes": 6,
        "data.val_fraction": 0.3,
        "model.width": 4,
        "model.embedding_dim": 8,
        "train.epochs": 2,
        "train.batch_size": 2,
    }
    data_options = (
        DataOption("image_size", int, 64, "side of the square icon images"),
        DataOption("seed", int, 0, "seed of the half/half class split"),
    )

    def check_method(self, method) -> None:
        super().check_method(method)
        if method.noise != "none" or method.gradient_noise:
            raise ValueError(
                "The retrieval task takes no perturbation noise or gradient noise (use method.alpha for a margin). "
                f"Received: noise={method.noise!r}, gradient_noise={method.gradient_noise!r}"
            )

    def build_data(self, data_dir=None, image_size=64, seed=0) -> pathlib.Path:
        from identity_tf.datasets import retrieval as data_lib

        return data_lib.build(data_dir, image_size=image_size, seed=seed)

    def load(self, config) -> Splits:
        from identity_tf.datasets import retrieval as data_lib

        d = config.data
        data = data_lib.load(d.source, d.image_size, d.data_dir)
        return split_indices(data, d.val_fraction, d.seed, d.max_train_classes, d.max_test_classes)

    def datasets(self, config) -> TaskData:
        from identity_tf.datasets.retrieval.pipeline import ClassTable, make_dataset

        d, b = config.data, config.train.batch_size
        splits = self.load(config)
        images, labels = splits.data.images, splits.data.labels
        out = {}
        for offset, name in enumerate(("train", "val", "test")):
            table = ClassTable.from_labels(labels, getattr(splits, name))
            training = name == "train"
            p = d.classes_per_episode if training else min(d.classes_per_episode, len(table.classes))
            k = d.images_per_class if training else min(d.images_per_class, table.min_count)
            if training and d.episodes_per_epoch is not None:
                episodes = d.episodes_per_epoch
            else:
                episodes = max(1, math.ceil(len(getattr(splits, name)) / (p * k)))
            if training:
                episodes = max(b, episodes - episodes % b + (b if episodes % b else 0))  # whole batches
            seed = d.seed + 1000 * offset + (config.train.seed if training else 0)
            out[name] = make_dataset(
                images, labels, table, p, k, episodes, b, seed=seed, training=training, augmented=training and d.augment
            )
        return TaskData(out, splits)

    def build_model(self, config, data: TaskData) -> RetrievalModel:
        model = RetrievalModel(config.model, config.method, seed=config.train.seed, batch_size=config.train.batch_size)
        model.load_pretrained()
        return model

    def compile(self, model, optimizer, jit_compile: bool) -> None:
        if not isinstance(optimizer, keras.optimizers.Adam):
            raise ValueError(
                f"The retrieval task trains with Adam (train.optimizer: adam). Received: {type(optimizer).__name__}"
            )
        c = model.task_config
        optimizer = RetrievalAdam(
            learning_rate=float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
            weight_decay_l2=c.weight_decay,
            lr_multipliers={"embedding": c.embedding_lr_multiplier},
        )
        model.compile(optimizer=optimizer, jit_compile=jit_compile)

    def callbacks(self, model, config, data: TaskData) -> list:
        splits = data.data
        return [ValidationRecall(splits.data.images, splits.data.labels, splits.val), LastEpochRecall(splits)]

    def evaluate(self, model, config, data: TaskData) -> dict[str, float]:
        splits = data.data
        embeddings = embed_split(model, splits.data.images, splits.test)
        return {**recall_at_ks(embeddings, splits.data.labels[splits.test]), **(splits.last_epoch or {})}

    def artifacts(self, model, config, data: TaskData, run_dir: pathlib.Path) -> list[pathlib.Path]:
        from identity_tf.tasks.retrieval.plots import retrieval_examples

        return [retrieval_examples(model, data.data, pathlib.Path(run_dir) / "retrieval.png")]

    def summary(self, test: dict) -> str:
        return "Test recall (held-out classes): " + ", ".join(
            f"R@{k} {100 * test[f'recall_at_{k}']:.1f} %" for k in RECALL_KS if f"recall_at_{k}" in test
        )

    def describe_method(self, config) -> str:
        m = config.method
        margin = f", {config.model.margin} margin alpha {m.alpha:g}" if m.alpha else ""
        return f"{m.gradient}, projection {m.projection}{margin}"
