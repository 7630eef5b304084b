"""Trainer registration of the DVAE-on-MNIST task (``identity_tf.train.TASKS["dvae"]``).

The run config's ``model`` section is :class:`identity_tf.tasks.dvae.DVAEConfig` (it holds the method, projection
and noise settings of this task); the generic ``method`` section must stay at its defaults (empty), because the
DVAE's methods (Identity with Sum-of-Gamma noise, I-MLE, straight-through Gumbel) are set up by the model itself.

Splits (paper B.1: 50 000 training, 10 000 validation and 10 000 test examples): validation = the last
``val_size`` of the 60 000 MNIST training digits, training = the ones before; test = the 10 000 test digits.
"""

from __future__ import annotations

import dataclasses
import pathlib

from identity_tf.tasks import dvae

MNIST_TRAIN = 60000


@dataclasses.dataclass
class DVAEData:
    """DVAE data settings (see ``identity_tf.datasets.mnist``).

    Attributes:
        max_train, max_val, max_test: Use only the first N examples of a split (``--quick`` sizes), None = all.
        val_size: The last ``val_size`` of the 60 000 training digits are the validation set.
        data_dir: Data directory of the offline copy; None = ``$IDENTITY_TF_DATA_DIR`` or the user cache.
        path: A Keras-style ``mnist.npz`` to use instead (``~/.keras/datasets/mnist.npz`` is used when present).
    """

    max_train: int | None = None
    max_val: int | None = None
    max_test: int | None = None
    val_size: int = 10000
    data_dir: str | None = None
    path: str | None = None

    def __post_init__(self):
        if isinstance(self.val_size, bool) or not isinstance(self.val_size, int) or not 0 < self.val_size < MNIST_TRAIN:
            raise ValueError(
                f"`data.val_size` must be an integer in [1, {MNIST_TRAIN - 1}]. Received: val_size={self.val_size!r}"
            )
        for name in ("max_train", "max_val", "max_test"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`data.{name}` must be a positive integer or null. Received: {name}={value!r}")


def datasets(config):
    """``({"train", "val", "test"}: tf.data of (x, x) pairs), {"train", "val", "test"}: uint8 images)``."""
    from identity_tf.datasets import mnist

    d = config.data
    data = mnist.load(data_dir=d.data_dir, path=d.path)
    cut = len(data.x_train) - d.val_size
    images = {
        "train": data.x_train[:cut][: d.max_train],
        "val": data.x_train[cut:][: d.max_val],
        "test": data.x_test[: d.max_test],
    }
    b, seed = config.train.batch_size, config.train.seed
    splits = {split: mnist.make_dataset(x, b, shuffle=(split == "train"), seed=seed) for split, x in images.items()}
    return splits, images


def build_model(config):
    from identity_tf.tasks.common import require_default_method

    require_default_method("DVAE", config.method)
    return dvae.DiscreteVAE(config.model, seed=config.train.seed)


def plot(model, data, run_dir) -> None:
    dvae.plot_reconstructions(model, data["test"], pathlib.Path(run_dir) / "reconstructions.png")


ALIGNMENT_IMAGES = 1000


def callbacks(model, config, data):
    """Identity runs log the paper's Fig. 7 diagnostics (``grad_cosine``, ``grad_norm_ratio``) every epoch."""
    if config.model.method != "identity":
        return []
    return [dvae.GradientAlignment(data["train"][:ALIGNMENT_IMAGES], batch_size=config.train.batch_size)]


def evaluate(model, data) -> dict:
    """Identity runs: Fig. 7's ``grad_cosine`` / ``grad_norm_ratio`` of the tested weights on 1 000 test digits."""
    if model.task_config.method != "identity":
        return {}
    values = dvae.mean_gradient_alignment(model, data["test"][:ALIGNMENT_IMAGES])
    return {"grad_cosine": values["cosine"], "grad_norm_ratio": values["norm_ratio"]}


def task_spec():
    """The :class:`identity_tf.train.TaskSpec` of the DVAE task: metric ``nelbo``, monitor ``val_nelbo`` (min)."""
    from identity_tf.train import TaskSpec  # imported here: train.py imports this module at its top

    return TaskSpec(
        data_cls=DVAEData,
        model_cls=dvae.DVAEConfig,
        model_from_data={},
        build_model=build_model,
        loss=dvae.negative_elbo,
        metrics=[],  # nelbo / kl / bce are the model's own trackers (they need the KL term, which y_pred lacks)
        monitor="val_nelbo",
        mode="min",
        datasets=datasets,
        plot=plot,
        callbacks=callbacks,
        evaluate=evaluate,
    )
