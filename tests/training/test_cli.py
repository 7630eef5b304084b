"""The command line: help without TensorFlow, clean errors with exit codes, models that load after `import identity_tf`."""

import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf

from identity_tf import cli, train

ROOT = pathlib.Path(__file__).resolve().parents[2]
GLOBE = ROOT / "configs" / "globe_tsp" / "tsp5_identity_noise0.2.yaml"
CONSOLE = pathlib.Path(sys.executable).parent / "identity-tf"


def _env():
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell: the command sets it itself
    env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    return env


def test_help_does_not_import_tensorflow():
    """The console script's process (sys.argv[0] = identity-tf) answers --help of every command without TensorFlow."""
    code = (
        "import sys\n"
        "sys.argv = ['identity-tf']\n"
        "from identity_tf import cli\n"
        "for command in ([], ['train'], ['reproduce'], ['data'], ['demo']):\n"
        "    try:\n"
        "        cli.main([*command, '--help'])\n"
        "    except SystemExit as exit:\n"
        "        assert exit.code == 0, exit.code\n"
        "print('TENSORFLOW', 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120)
    assert result.returncode == 0, result.stderr
    assert "TENSORFLOW False False" in result.stdout
    assert result.stderr == ""


def test_console_script_help_prints_no_log_lines():
    result = subprocess.run([str(CONSOLE), "--help"], capture_output=True, text=True, env=_env(), timeout=120)
    assert result.returncode == 0 and result.stderr == ""
    assert "usage: identity-tf" in result.stdout and "exit codes" in result.stdout


def test_a_bad_value_is_one_clean_line_without_tensorflow_start_up_noise(tmp_path):
    """TensorFlow is imported here (the command needs it): its C++ start-up lines are filtered out of stderr."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(GLOBE.read_text() + "\n  extra: [1\n")
    result = subprocess.run(
        [str(CONSOLE), "train", str(bad)], capture_output=True, text=True, env=_env(), timeout=300, cwd=tmp_path
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr  # exactly one line
    assert result.stderr.startswith(f"identity-tf: error: Malformed YAML in {bad}, line ")


def test_native_log_filter_keeps_real_errors():
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796157484.957968   16767 port.cc:153] oneDNN custom operations are on.",
        "I0000 00:00:1796157484.958408   16767 cudart_stub.cc:31] Could not find cuda drivers on your machine.",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
        "appropriate compiler flags.",
    ]
    assert all(cli._NATIVE_NOISE.match(line) for line in noise)
    kept = [
        "E0000 00:00:1796157484.958408   16767 gpu.cc:31] failed to initialise",
        "Traceback (most recent call last):",
    ]
    assert not any(cli._NATIVE_NOISE.match(line) for line in kept)


def test_help_text_is_complete():
    parser = cli.build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert set(commands) == {"train", "reproduce", "data", "demo"}
    for name, sub in commands.items():
        text = sub.format_help()
        assert "``" not in text and ":class:" not in text, name  # no raw reStructuredText
        for action in sub._actions:
            assert action.help, (name, action.dest)  # every option says what it does
    assert "``" not in parser.format_help()
    reproduce_help = commands["reproduce"].format_help()
    for task in ("dvae", "globe_tsp", "l2x", "warcraft"):
        assert task in reproduce_help
    demo_help = " ".join(commands["demo"].format_help().split())
    assert "epochs=20" in demo_help and "gradient='identity'" in demo_help


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["data", "warcraft", "--k", "5"],
            "`identity-tf data warcraft` takes the flags: --size, --num-train, --num-val, --num-test, --seed. Received: --k 5",
        ),
        (
            ["data", "globe_tsp", "--size", "30"],
            "`identity-tf data globe_tsp` takes the flags: --k, --num-train, --num-test, --seed. Received: --size 30",
        ),
        (["data", "globe_tsp", "--num-train", "0"], "--num-train must be >= 1. Received: 0"),
        (["demo", "--set", "steps=abc"], "`demo --set` expects KEY=VALUE with KEY in ['alpha'"),
        (["demo", "--set", "epochs=abc"], "`demo.epochs` must be an integer >= 1. Received: epochs='abc' (str)"),
        (["train", str(GLOBE), "--set", "train.epochs=ten"], "`train.epochs` must be an integer >= 1."),
        (["train", str(GLOBE), "--set", "train.learning_rate=0"], "`train.learning_rate` must be a number > 0."),
        (["train", str(GLOBE), "--set", "data.max_test=0"], "`data.max_test` must be an integer >= 1 or null"),
        (["train", str(GLOBE), "--set", "train.jit_compile=maybe"], "must be true, false or 'auto'"),
        (["train", "missing.yaml"], "Config file not found. Received: 'missing.yaml'"),
    ],
)
def test_bad_input_exits_2_with_a_message(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("identity-tf: error: ") and message in err, err
    assert "Traceback" not in err


def test_malformed_yaml_and_dataset_errors_exit_2(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("task: globe_tsp\ntrain: {epochs: 3\n")
    assert cli.main(["train", str(path)]) == 2
    assert f"Malformed YAML in {path}, line 3" in capsys.readouterr().err

    def unreadable(*args, **kwargs):
        raise ValueError("/data/globe_tsp/5_countries_from_100/countries.npy is empty (0 bytes). Received: ...")

    from identity_tf.datasets import globe_tsp

    original = globe_tsp.build
    globe_tsp.build = unreadable
    try:
        assert cli.main(["data", "globe_tsp"]) == 2
    finally:
        globe_tsp.build = original
    assert "countries.npy is empty" in capsys.readouterr().err


def test_mirrored_on_one_cpu_device_warns_with_the_replica_count(monkeypatch):
    one = tf.config.list_logical_devices("CPU")[:1]
    monkeypatch.setattr(tf.config, "list_logical_devices", lambda kind=None: one if kind == "CPU" else [])
    with pytest.warns(RuntimeWarning, match="no GPU and one CPU device, so MirroredStrategy trains on 1 replica"):
        strategy = train.make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 1
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # two logical CPU devices (the root conftest): no warning
        assert train.make_strategy("mirrored").num_replicas_in_sync == 2


def test_saved_task_models_load_after_import_identity_tf_alone(tmp_path):
    """model.keras of every task loads in a fresh process that imports only identity_tf (and keras)."""
    from identity_tf.tasks import dvae, globe_tsp, l2x, warcraft
    from identity_tf.method import MethodConfig

    rng = np.random.default_rng(0)
    models = {
        "globe": (globe_tsp.GlobeTSP({"k": 5}, MethodConfig(projection="std")), rng.uniform(size=(2, 5, 20, 40, 3))),
        "warcraft": (warcraft.WarcraftShortestPath({"size": 4}, MethodConfig()), rng.normal(size=(2, 32, 32, 3))),
        "dvae": (dvae.DiscreteVAE({"eval_noise": False}, seed=1), rng.uniform(size=(2, 784))),
        "l2x": (
            l2x.L2X({"k": 3, "hidden": 8, "predictor_hidden": 8}, embeddings=rng.normal(size=(30, 200)), seed=2),
            rng.integers(1, 30, size=(2, 350)),
        ),
    }
    for name, (model, x) in models.items():
        x = x.astype(np.int32 if name == "l2x" else np.float32)
        np.save(tmp_path / f"{name}_x.npy", x)
        np.save(tmp_path / f"{name}_y.npy", keras_numpy(model(x, training=False)))
        model.save(tmp_path / f"{name}.keras")
    code = (
        "import sys, numpy as np, keras, identity_tf\n"
        "assert 'identity_tf.train' not in sys.modules\n"
        f"folder = {str(tmp_path)!r}\n"
        "for name in ('globe', 'warcraft', 'dvae', 'l2x'):\n"
        "    model = keras.saving.load_model(f'{folder}/{name}.keras')\n"
        "    y = keras.ops.convert_to_numpy(model(np.load(f'{folder}/{name}_x.npy'), training=False))\n"
        "    np.testing.assert_allclose(y, np.load(f'{folder}/{name}_y.npy'), rtol=1e-5, atol=1e-6)\n"
        "    print(name, type(model).__name__)\n"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["globe", "GlobeTSP", "warcraft", "WarcraftShortestPath", "dvae", "DiscreteVAE"] + [
        "l2x",
        "L2X",
    ]


def keras_numpy(x):
    import keras

    return keras.ops.convert_to_numpy(x)
