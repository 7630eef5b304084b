"""Shared fixtures: a private data directory that reuses the user cache's verified downloads, and ``workers``: two
local ``identity-tf train --strategy multi_worker`` processes."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import types

import pytest


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    from identity_tf.datasets import cache

    path = tmp_path_factory.mktemp("data")
    downloads = pathlib.Path(cache.data_dir()) / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    os.symlink(downloads, path / "downloads")  # fetch_* verify checksums, so sharing them is safe
    return str(path)


# ---------------------------------------------------------------------------------------------- multi-worker


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start(config_path, run, data_dir, overrides):
    """Starts worker 0 (the chief) and worker 1 of ``identity-tf train CONFIG`` with ``--set`` ``overrides``."""
    command = [sys.executable, "-m", "identity_tf.cli", "train", str(config_path), "--out", str(run), "--quiet"]
    command += ["--strategy", "multi_worker"] + [f"--set={key}={value}" for key, value in overrides.items()]
    workers = [f"localhost:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", IDENTITY_TF_DATA_DIR=data_dir)
        # TF's default oneDNN CPU kernels, as users run (the root conftest switches them off in-process): they
        # failed on a worker's empty share of the last partial batch
        env.pop("TF_ENABLE_ONEDNN_OPTS", None)
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return processes


def wait(processes, timeout=300):
    """Waits for the workers (killing what is left on a timeout); every one must exit 0."""
    try:
        outputs = [p.communicate(timeout=timeout) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    failed = [(i, p.returncode, err[-3000:]) for i, (p, (_, err)) in enumerate(zip(processes, outputs)) if p.returncode]
    assert not failed, failed  # the worker that failed first names the cause; the other reports aborted collectives


@pytest.fixture
def workers():
    """``workers.start(config_path, run, data_dir, overrides) -> processes`` and ``workers.wait(processes)``."""
    return types.SimpleNamespace(start=start, wait=wait)


@pytest.fixture
def single_device_evaluation():
    """``evaluate(config, weights_path) -> dict``: Keras' test metrics of the weights on one device."""
    import tensorflow as tf

    from identity_tf import train
    from identity_tf.tasks import registry

    def evaluate(config, weights_path):
        task = registry.get(config.task)
        data = task.datasets(config)
        sample = next(iter(data.splits["train"]))[0]
        model = train.build_and_compile(config, task, tf.distribute.get_strategy(), data, sample=sample)
        model.load_weights(str(weights_path))
        return model.evaluate(data.splits["test"], return_dict=True, verbose=0)

    return evaluate
