"""The L2X-on-BeerAdvocate task (paper section 4.1, B.1) for the trainer: data settings, splits, evaluation, artifacts.

The run config's ``model`` section is :class:`identity_tf.tasks.l2x.L2XConfig` (k and the network sizes;
``model.vocab_size`` is set from the data, the rows of the embedding matrix); the method is the ``method:`` section
like every task's. Configs of release 0.1 with ``method``, ``projection``, ``lam``, ``tau``, ``s``, ``noise_variant``
and ``temperature`` under ``model:`` still load (:meth:`L2XTask.migrate`, with a warning that shows the new section).

Splits (paper B.1 / the reference): training = ``reviews.aspect{A}.train.txt``; the held-out file is split 50/50
into validation and test by a permutation seeded with ``data.split_seed`` (the reference re-split it per restart:
vary ``split_seed`` together with ``train.seed`` for restarts). The checkpoint with the lowest ``val_loss`` (= the
validation MSE) is the one tested: the reported test MSE is the best-validation checkpoint's, not the last epoch's
(the old L2X code reported the last epoch's). The rationale precision on the annotation set (hard top-k of the
same checkpoint) is the test metric ``rationale_precision`` (:meth:`L2XTask.evaluate`, in ``metrics.json["test"]``).
"""

from __future__ import annotations

import dataclasses
import pathlib

from identity_tf.tasks.l2x import model as l2x
from identity_tf.tasks.legacy import migrate_model_section
from identity_tf.tasks.registry import Task, TaskData, register


@dataclasses.dataclass
class L2XData:
    """L2X data settings (see ``identity_tf.datasets.beer``).

    Attributes:
        aspect: 0..4 (appearance, aroma, palate, taste, overall); the paper: 1 (aroma).
        max_train, max_val, max_test, max_annotations: Use only the first N reviews of a split (``--quick``
            sizes), None = all.
        split_seed: Seed of the 50/50 validation/test split of the held-out reviews.
        num_train, num_heldout, num_annotations, build_seed: Size and seed of the offline generated dataset
            (ignored with ``path``).
        data_dir: Data directory of the offline build; None = ``$IDENTITY_TF_DATA_DIR`` or the user cache.
        path: A folder with the published files (``reviews.aspect{A}.{train,heldout}.txt``,
            ``review+wiki.filtered.200.txt``, ``annotations.json``); None = the offline build.
    """

    aspect: int = 1
    max_train: int | None = None
    max_val: int | None = None
    max_test: int | None = None
    max_annotations: int | None = None
    split_seed: int = 0
    num_train: int = 20000
    num_heldout: int = 2000
    num_annotations: int = 1000
    build_seed: int = 0
    data_dir: str | None = None
    path: str | None = None

    def __post_init__(self):
        if isinstance(self.aspect, bool) or not isinstance(self.aspect, int) or not 0 <= self.aspect <= 4:
            raise ValueError(f"`data.aspect` must be an integer in 0..4. Received: aspect={self.aspect!r}")
        for name in ("max_train", "max_val", "max_test", "max_annotations"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`data.{name}` must be a positive integer or null. Received: {name}={value!r}")
        for name, low in (("num_train", 1), ("num_heldout", 2), ("num_annotations", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"`data.{name}` must be an integer >= {low}. Received: {name}={value!r}")


def load_data(d: L2XData):
    """The :class:`identity_tf.datasets.beer.BeerData` of these settings (limits applied)."""
    from identity_tf.datasets import beer

    data = beer.load(
        aspect=d.aspect,
        data_dir=d.data_dir,
        path=d.path,
        seed=d.split_seed,
        num_train=d.num_train,
        num_heldout=d.num_heldout,
        num_annotations=d.num_annotations,
        build_seed=d.build_seed,
    )
    return dataclasses.replace(
        data,
        x_train=data.x_train[: d.max_train],
        y_train=data.y_train[: d.max_train],
        x_val=data.x_val[: d.max_val],
        y_val=data.y_val[: d.max_val],
        x_test=data.x_test[: d.max_test],
        y_test=data.y_test[: d.max_test],
        x_annotations=data.x_annotations[: d.max_annotations],
        y_annotations=data.y_annotations[: d.max_annotations],
        rationale=data.rationale[: d.max_annotations],
    )


@register("l2x")
class L2XTask(Task):
    """Select k words of a review with top-k, predict the aspect score from them; metric: the test MSE."""

    data_config = L2XData
    model_config = l2x.L2XConfig
    methods = l2x.METHODS
    monitor, mode = "val_loss", "min"
    description = "L2X on BeerAdvocate-format reviews: top-k word selection (paper section 4.1)"
    tiny = {
        "data.num_train": 60,
        "data.num_heldout": 42,
        "data.num_annotations": 6,
        "train.epochs": 2,
        "train.batch_size": 10,
    }

    def migrate(self, sections: dict) -> dict:
        return migrate_model_section(self.name, sections, l2x.LEGACY_METHOD_KEYS, l2x.LEGACY_DEFAULTS)

    def build_data(self, data_dir=None) -> pathlib.Path:
        from identity_tf.datasets import beer

        return beer.build(data_dir=data_dir)

    def datasets(self, config) -> TaskData:
        """``{"train", "val", "test"}``: tf.data of (ids [350], score [1]); data: the BeerData."""
        from identity_tf.datasets import beer

        data = load_data(config.data)
        b, seed = config.train.batch_size, config.train.seed
        splits = {
            split: beer.make_dataset(
                getattr(data, f"x_{split}"), getattr(data, f"y_{split}"), b, shuffle=(split == "train"), seed=seed
            )
            for split in ("train", "val", "test")
        }
        return TaskData(splits, data)

    def build_model(self, config, data: TaskData) -> l2x.L2X:
        return l2x.L2X(config.model, embeddings=data.data.embeddings, seed=config.train.seed, method=config.method)

    def evaluate(self, model, config, data: TaskData) -> dict:
        """Extra test metrics: the rationale precision of the hard top-k on the annotated reviews."""
        return {"rationale_precision": l2x.rationale_precision(model, data.data)}

    def artifacts(self, model, config, data: TaskData, run_dir) -> list[pathlib.Path]:
        """``selections.txt``: the selected words of the first 10 annotated reviews beside their rationale."""
        d = data.data
        words = l2x.selected_words(model, d.x_annotations[:10], d.vocabulary)
        lines = []
        for ids, chosen, rationale in zip(d.x_annotations[:10], words, d.rationale[:10]):
            text = " ".join(d.vocabulary[t] for t in ids if t)
            span = " ".join(d.vocabulary[t] for t, r in zip(ids, rationale) if r > 0)
            lines += [f"review:    {text}", f"rationale: {span}", f"selected:  {' '.join(chosen)}", ""]
        path = pathlib.Path(run_dir) / "selections.txt"
        path.write_text("\n".join(lines))
        return [path]

    def summary(self, test: dict) -> str:
        precision = f", rationale precision {test['rationale_precision']:.3f}" if "rationale_precision" in test else ""
        return f"Test MSE x100: {100 * test['mse']:.2f}{precision}"
