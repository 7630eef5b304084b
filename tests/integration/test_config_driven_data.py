"""Label corruption driven from a run config, and the ``data`` and ``demo`` commands run for real."""

import json

import numpy as np

from identity_tf import cli, train
from identity_tf.tasks import registry


def test_label_corruption_from_the_config_flips_training_labels_only(data_dir):
    """rho = 1.5, k = 5: each upper off-diagonal entry of a training label flips with probability 0.3 (mirrored);
    the validation part (the last 10 %) and the test labels stay clean."""
    base = {"data.data_dir": data_dir, "data.num_train": 200, "data.num_test": 21, "data.seed": 3}
    task = registry.get("globe_tsp")
    clean = task.datasets(train.load_config({"task": "globe_tsp"}, base)).data
    noisy = task.datasets(train.load_config({"task": "globe_tsp"}, {**base, "data.label_corruption": 1.5})).data
    cut = 200 - 20
    np.testing.assert_array_equal(noisy.train_tours[cut:], clean.train_tours[cut:])
    np.testing.assert_array_equal(noisy.test_tours, clean.test_tours)
    flipped = noisy.train_tours[:cut] != clean.train_tours[:cut]
    np.testing.assert_array_equal(flipped, np.swapaxes(flipped, -1, -2))  # symmetric
    assert not flipped[:, range(5), range(5)].any()  # never the diagonal
    upper = flipped[:, np.triu_indices(5, 1)[0], np.triu_indices(5, 1)[1]]  # 180 x 10 Bernoulli(0.3)
    se = np.sqrt(0.3 * 0.7 / upper.size)
    assert abs(upper.mean() - 0.3) < 4 * se, upper.mean()


def test_data_command_builds_the_tasks_dataset(data_dir, monkeypatch, capsys):
    monkeypatch.setenv("IDENTITY_TF_DATA_DIR", data_dir)
    argv = ["data", "warcraft", "--size", "4", "--num-train", "6", "--num-val", "2", "--num-test", "2", "--seed", "5"]
    assert cli.main(argv) == 0
    folder = capsys.readouterr().out.strip().splitlines()[-1]
    from identity_tf.datasets import warcraft

    data = warcraft.load(4, data_dir=data_dir)
    assert folder.endswith("4x4") and [len(data[s].maps) for s in ("train", "val", "test")] == [6, 2, 2]


def test_demo_command_trains_and_reports(capsys):
    settings = ["grid=5", "features=4", "train_size=32", "test_size=16", "epochs=1", "batch_size=16"]
    assert cli.main(["demo", "--quiet"] + [f"--set={s}" for s in settings]) == 0
    out = capsys.readouterr().out
    result = json.loads(out[out.index("{") :])
    before = {key[len("before_") :]: value for key, value in result.items() if key.startswith("before_")}
    assert before and all(key in result for key in before), result  # each metric before and after training
    assert all(np.isfinite(value) for value in result.values()), result
