"""Shared fixtures: a private data directory that reuses the user cache's verified downloads."""

import os
import pathlib

import pytest


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    from identity_tf.datasets import cache

    path = tmp_path_factory.mktemp("data")
    downloads = pathlib.Path(cache.data_dir()) / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    os.symlink(downloads, path / "downloads")  # fetch_* verify checksums, so sharing them is safe
    return str(path)
