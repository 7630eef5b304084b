"""Executes every notebook in ``notebooks/`` at the "tiny" size and checks that no cell errors.

The kernel runs the interpreter of this test process (a kernelspec for it is installed when the ``python3`` one
points elsewhere); datasets are built into a temporary ``IDENTITY_TF_DATA_DIR`` that reuses the downloaded sources
of the default cache.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS_DIR = pathlib.Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
TEST_KERNEL = "identity-tf-test"


def _kernel_python(name: str) -> str | None:
    """The interpreter a kernelspec starts (jupyter_client swaps a bare "python"/"python3" for sys.executable)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        argv = KernelSpecManager().get_kernel_spec(name).argv
    except NoSuchKernel:
        return None
    executable = argv[0]
    if executable in {"python", f"python{sys.version_info[0]}", f"python{sys.version_info[0]}.{sys.version_info[1]}"}:
        return sys.executable
    return executable


def _same(a: str | None, b: str) -> bool:
    return a is not None and os.path.realpath(a) == os.path.realpath(b)


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    if _same(_kernel_python("python3"), sys.executable):
        yield "python3"
        return
    # Install a kernelspec for this interpreter into a private prefix, found through JUPYTER_PATH.
    prefix = tmp_path_factory.mktemp("kernel_prefix")
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", TEST_KERNEL],
        check=True,
        capture_output=True,
    )
    saved = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(prefix / "share" / "jupyter"), *filter(None, [saved])])
    try:
        assert _same(_kernel_python(TEST_KERNEL), sys.executable)
        yield TEST_KERNEL
    finally:
        if saved is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = saved


@pytest.fixture(scope="module")
def notebook_env(tmp_path_factory):
    """Tiny sizes and a temporary data directory (reusing the default cache's downloads); restored afterwards."""
    from identity_tf.datasets import cache

    default_downloads = cache.data_dir() / "downloads"  # evaluated before the environment changes
    data_dir = tmp_path_factory.mktemp("identity_tf_data")
    if default_downloads.is_dir():
        (data_dir / "downloads").symlink_to(default_downloads, target_is_directory=True)
    saved = {
        key: os.environ.get(key)
        for key in ("IDENTITY_TF_NOTEBOOK_SIZE", "IDENTITY_TF_DATA_DIR", "TF_CPP_MIN_LOG_LEVEL")
    }
    os.environ.update(
        {"IDENTITY_TF_NOTEBOOK_SIZE": "tiny", "IDENTITY_TF_DATA_DIR": str(data_dir), "TF_CPP_MIN_LOG_LEVEL": "3"}
    )
    yield data_dir
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_notebooks_found():
    assert {p.name for p in NOTEBOOKS} >= {
        "quickstart.ipynb",
        "globe_tsp.ipynb",
        "warcraft.ipynb",
        "dvae.ipynb",
        "l2x.ipynb",
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_saved_without_outputs(path):
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("execution_count") is None and not cell.get("outputs"), f"{path.name}: outputs not cleared"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, kernel_name, notebook_env):
    notebook = nbformat.read(path, as_version=4)
    # The kernel reports its interpreter first, so that a wrong kernel fails loudly.
    notebook.cells.insert(0, nbformat.v4.new_code_cell("import sys; print(sys.executable)"))
    client = nbclient.NotebookClient(
        notebook,
        kernel_name=kernel_name,
        timeout=600,
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as error:
        pytest.fail(f"{path.name}: a cell raised:\n{error}")
    kernel_python = "".join(o.get("text", "") for o in notebook.cells[0].outputs).strip()
    assert os.path.realpath(kernel_python) == os.path.realpath(sys.executable)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            errors = [o for o in cell.outputs if o.get("output_type") == "error"]
            assert not errors, f"{path.name}: cell errored: {errors[0].get('ename')}: {errors[0].get('evalue')}"
