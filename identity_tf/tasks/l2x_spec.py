"""Trainer registration of the L2X-on-BeerAdvocate task (``identity_tf.train.TASKS["l2x"]``).

The run config's ``model`` section is :class:`identity_tf.tasks.l2x.L2XConfig` (method, projection, k, noise and
temperature settings); the generic ``method`` section must stay at its defaults (empty). ``model.vocab_size`` is
set from the data (the rows of the embedding matrix).

Splits (paper B.1 / the reference): training = ``reviews.aspect{A}.train.txt``; the held-out file is split 50/50
into validation and test by a permutation seeded with ``data.split_seed`` (the reference re-split it per restart:
vary ``split_seed`` together with ``train.seed`` for restarts). The checkpoint with the lowest ``val_loss`` (= the
validation MSE) is the one tested: the reported test MSE is the best-validation checkpoint's, not the last epoch's
(the old L2X code reported the last epoch's). The rationale precision on the annotation set (hard top-k of the
same checkpoint) is the test metric ``rationale_precision`` (:func:`evaluate`, in ``metrics.json["test"]``).
"""

from __future__ import annotations

import dataclasses
import pathlib

from identity_tf.tasks import l2x


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


def _load(d: L2XData):
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


def _key(d: L2XData):
    return tuple(dataclasses.asdict(d).items())


_CACHE: dict = {}  # one entry: datasets() and build_model() of a run share the loaded data


def load_data(d: L2XData):
    """The :class:`identity_tf.datasets.beer.BeerData` of these settings (limits applied), cached per settings."""
    key = _key(d)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = _load(d)
    return _CACHE[key]


def datasets(config):
    """``({"train", "val", "test"}: tf.data of (ids [350], score [1])), BeerData)``."""
    from identity_tf.datasets import beer

    data = load_data(config.data)
    b, seed = config.train.batch_size, config.train.seed
    splits = {
        split: beer.make_dataset(
            getattr(data, f"x_{split}"), getattr(data, f"y_{split}"), b, shuffle=(split == "train"), seed=seed
        )
        for split in ("train", "val", "test")
    }
    return splits, data


def build_model(config):
    from identity_tf.tasks.common import require_default_method

    require_default_method("L2X", config.method)
    data = load_data(config.data)
    return l2x.L2X(config.model, embeddings=data.embeddings, seed=config.train.seed)


def evaluate(model, data) -> dict:
    """Extra test metrics: the rationale precision of the hard top-k on the annotated reviews."""
    return {"rationale_precision": l2x.rationale_precision(model, data)}


def plot(model, data, run_dir) -> None:
    """Writes ``selections.txt``: the selected words of the first 10 annotated reviews beside their rationale."""
    run_dir = pathlib.Path(run_dir)
    words = l2x.selected_words(model, data.x_annotations[:10], data.vocabulary)
    lines = []
    for ids, chosen, rationale in zip(data.x_annotations[:10], words, data.rationale[:10]):
        text = " ".join(data.vocabulary[t] for t in ids if t)
        span = " ".join(data.vocabulary[t] for t, r in zip(ids, rationale) if r > 0)
        lines += [f"review:    {text}", f"rationale: {span}", f"selected:  {' '.join(chosen)}", ""]
    (run_dir / "selections.txt").write_text("\n".join(lines))


def task_spec():
    """The :class:`identity_tf.train.TaskSpec` of the L2X task: loss/metric ``mse``, monitor ``val_loss`` (min)."""
    from identity_tf.train import TaskSpec  # imported here: train.py imports this module at its top

    return TaskSpec(
        data_cls=L2XData,
        model_cls=l2x.L2XConfig,
        model_from_data={},
        build_model=build_model,
        loss=l2x.mse,
        metrics=[l2x.mse],
        monitor="val_loss",
        mode="min",
        datasets=datasets,
        plot=plot,
        evaluate=evaluate,
    )
