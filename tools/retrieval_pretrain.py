"""Pretrains the retrieval task's small CNN as a cosine-softmax classifier of the training classes.

The paper fine-tunes an ImageNet-pretrained ResNet50 (CUB R@1 60-63 %); offline there are no ImageNet weights, and
the icon set's small CNN trained from random weights reaches only about the level of this classifier. This tool
gives the offline runs a pretrained start and the table a reference row:

* It trains ``small_cnn -> Dense(embedding_dim) -> L2-normalise -> 16 cos(e, w_c)`` with softmax cross-entropy
  over the *training* classes of the config's split (the validation and test classes are never seen), Adam,
  batches of 64 images, optionally with the task's flips and crops (``--augment``).
* The epoch with the best validation R@1 (the held-out training classes, as the task selects its checkpoint) is
  kept: its backbone weights go to ``--weights`` (the embedding layer is not kept: the task's starts fresh, as the
  paper's does), its test R@1, 2, 4, 8 to ``--result``.

A retrieval run then starts from it with ``--set model.weights=<the weights file>``; see the "(pretrained ...)"
rows of ``configs/retrieval/reproduce.yaml``.

Usage::

    python tools/retrieval_pretrain.py --quick --epochs 80 --augment \\
        --weights runs/retrieval_pretrain/quick_backbone.weights.h5 --result results/retrieval/classifier_reference.json
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from identity_tf import train  # noqa: E402
from identity_tf.datasets.retrieval.pipeline import augment  # noqa: E402
from identity_tf.tasks import registry  # noqa: E402
from identity_tf.tasks.retrieval.model import small_cnn  # noqa: E402
from identity_tf.tasks.retrieval.task import recall_at_ks  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCALE = 16.0  # logit scale of the cosine classifier


def classifier(image_size: int, width: int, embedding_dim: int, num_classes: int, seed: int):
    keras.utils.set_random_seed(seed)
    backbone = small_cnn(image_size, width)
    inputs = keras.Input((image_size, image_size, 3))
    embeddings = keras.layers.UnitNormalization()(keras.layers.Dense(embedding_dim, name="embedding")(backbone(inputs)))
    weights = keras.layers.Dense(
        num_classes, use_bias=False, kernel_constraint=keras.constraints.UnitNorm(axis=0), name="classes"
    )
    logits = keras.layers.Rescaling(SCALE)(weights(embeddings))
    return backbone, keras.Model(inputs, embeddings), keras.Model(inputs, logits)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs/retrieval/identity_std.yaml"))
    parser.add_argument("--quick", action="store_true", help="the config's quick sizes (32 px, width 16, 128-d)")
    parser.add_argument("--epochs", type=int, default=80)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--augment", action="store_true", help="random flips and crops of the training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", required=True, help="output: the backbone's weights (.weights.h5)")
    parser.add_argument("--result", help="output: JSON with the test R@K of the best validation epoch")
    args = parser.parse_args(argv)
    if not args.weights.endswith(".weights.h5"):
        parser.error(f"--weights must end with .weights.h5. Received: {args.weights!r}")
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1. Received: {args.epochs}")

    config = train.load_config(args.config, quick=args.quick)
    task = registry.get("retrieval")
    splits = task.load(config)
    images, labels = splits.data.images, splits.data.labels
    classes, targets = np.unique(labels[splits.train], return_inverse=True)
    m = config.model
    backbone, embedder, model = classifier(config.data.image_size, m.width, m.embedding_dim, len(classes), args.seed)
    model.compile(
        keras.optimizers.Adam(args.learning_rate), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    rng = np.random.default_rng(args.seed)
    weights_path = pathlib.Path(args.weights)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    best, start = None, time.time()
    for epoch in range(args.epochs):
        order = rng.permutation(len(splits.train))
        x = images[splits.train][order]
        x = augment(x, rng) if args.augment else x
        model.fit(x, targets[order], batch_size=64, epochs=1, verbose=0)
        val = recall_at_ks(embedder.predict(images[splits.val], verbose=0), labels[splits.val], ks=(1,))
        if best is None or val["recall_at_1"] > best["val_recall_at_1"]:
            test = recall_at_ks(embedder.predict(images[splits.test], verbose=0), labels[splits.test])
            best = {"epoch": epoch, "val_recall_at_1": val["recall_at_1"], "test": test}
            backbone.save_weights(weights_path)
        print(
            f"epoch {epoch + 1}/{args.epochs}: val R@1 {100 * val['recall_at_1']:.1f} % "
            f"(best {100 * best['val_recall_at_1']:.1f} % at epoch {best['epoch'] + 1})",
            flush=True,
        )
    print(
        f"Test R@K at the best validation epoch {best['epoch'] + 1}: "
        + ", ".join(f"{k} {100 * v:.1f} %" for k, v in best["test"].items())
    )
    if args.result:
        command = "python tools/retrieval_pretrain.py " + " ".join(sys.argv[1:] if argv is None else argv)
        record = {
            "what": "R@K (%) of the small CNN trained as a cosine-softmax classifier of the training classes "
            "(the reference the recall-loss rows are read against, and their pretrained start)",
            "config": f"{pathlib.Path(args.config).name}{' --quick' if args.quick else ''}",
            "epochs": args.epochs,
            "best_epoch": best["epoch"],
            "augment": args.augment,
            "learning_rate": args.learning_rate,
            "seed": args.seed,
            "test": {k: round(100 * v, 2) for k, v in best["test"].items()},
            "val_recall_at_1": round(100 * best["val_recall_at_1"], 2),
            "train_seconds": round(time.time() - start, 1),
            "command": command,
            "load_average": list(os.getloadavg()),
        }
        pathlib.Path(args.result).write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
