"""The DVAE-on-MNIST task (paper section 4.1, B.1) for the trainer: data settings, splits, diagnostics, artifacts.

The run config's ``model`` section is :class:`identity_tf.tasks.dvae.DVAEConfig` (``k``, ``projection_scope``);
the method (Identity with Sum-of-Gamma noise, I-MLE, straight-through Gumbel) is the ``method:`` section like every
task's. Configs of release 0.1 that kept ``method``, ``projection``, ``lam``, ``tau``, ``s``, ``noise_variant``,
``temperature`` and ``eval_noise`` under ``model:`` still load: :meth:`DVAETask.migrate` moves them, with a warning
that shows the new section.

Splits (paper B.1: 50 000 training, 10 000 validation and 10 000 test examples): validation = the last
``val_size`` of the 60 000 MNIST training digits, training = the ones before; test = the 10 000 test digits.
"""

from __future__ import annotations

import dataclasses
import pathlib

from identity_tf.tasks.dvae import model as dvae
from identity_tf.tasks.legacy import migrate_model_section
from identity_tf.tasks.registry import Task, TaskData, register

MNIST_TRAIN = 60000
ALIGNMENT_IMAGES = 1000


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


@register("dvae")
class DVAETask(Task):
    """Discrete VAE on MNIST with 20 groups of 10-hot latents through top-k; metric: the test N-ELBO."""

    data_config = DVAEData
    model_config = dvae.DVAEConfig
    methods = dvae.METHODS
    monitor, mode = "val_nelbo", "min"
    description = "DVAE on MNIST: 20 x top-10 latents (paper section 4.1)"
    tiny = {"data.max_train": 41, "data.max_val": 20, "data.max_test": 21, "train.epochs": 2, "train.batch_size": 10}

    def migrate(self, sections: dict) -> dict:
        return migrate_model_section(self.name, sections, dvae.LEGACY_METHOD_KEYS, dvae.LEGACY_DEFAULTS)

    def build_data(self, data_dir=None) -> pathlib.Path:
        from identity_tf.datasets import mnist

        return mnist.build(data_dir=data_dir)

    def datasets(self, config) -> TaskData:
        """``{"train", "val", "test"}``: tf.data of (x, x) pairs; data: ``{"train", "val", "test"}`` uint8 images."""
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
        return TaskData(splits, images)

    def build_model(self, config, data: TaskData) -> dvae.DiscreteVAE:
        return dvae.DiscreteVAE(config.model, seed=config.train.seed, method=config.method)

    def callbacks(self, model, config, data: TaskData) -> list:
        """Identity runs log the paper's Fig. 7 diagnostics (``grad_cosine``, ``grad_norm_ratio``) every epoch."""
        if config.method.gradient != "identity":
            return []
        return [dvae.GradientAlignment(data.data["train"][:ALIGNMENT_IMAGES], batch_size=config.train.batch_size)]

    def evaluate(self, model, config, data: TaskData) -> dict:
        """Identity runs: Fig. 7's ``grad_cosine`` / ``grad_norm_ratio`` of the tested weights on 1 000 test digits."""
        if config.method.gradient != "identity":
            return {}
        values = dvae.mean_gradient_alignment(model, data.data["test"][:ALIGNMENT_IMAGES])
        return {"grad_cosine": values["cosine"], "grad_norm_ratio": values["norm_ratio"]}

    def artifacts(self, model, config, data: TaskData, run_dir) -> list[pathlib.Path]:
        path = pathlib.Path(run_dir) / "reconstructions.png"
        dvae.plot_reconstructions(model, data.data["test"], path)
        return [path]

    def summary(self, test: dict) -> str:
        return f"Test N-ELBO: {test['nelbo']:.2f} (BCE {test['bce']:.2f} + KL {test['kl']:.2f})"
