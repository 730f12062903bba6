"""The example notebooks, executed end to end by a real Jupyter kernel on a small real slice
(their `parameters` cell replaced, as papermill would): any error fails the test."""

from pathlib import Path

import pytest

from tests.conftest import REAL_DATA, skip_unless_required

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SLICES = {"mnist_assignment": ("MNIST/raw", 2048, 500, 2),
          "cifar_s9": ("cifar-10-batches-py", 1024, 256, 1)}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SLICES))
def test_the_example_notebook_runs_end_to_end(name, tmp_path):
    folder, train, test, epochs = SLICES[name]
    if REAL_DATA is None or not (REAL_DATA / folder).is_dir():
        skip_unless_required("data", f"set CNNLAB_DATA to the folder holding {folder} "
                                     "(.ci/run does)")
    notebook = nbformat.read(EXAMPLES / f"{name}.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "commit the notebook without outputs"
    (parameters,) = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    parameters.source = (f"DATA_DIR = {str(REAL_DATA.resolve())!r}\n"
                         f"OUT_DIR = {str(tmp_path / 'runs')!r}\n"
                         f"TRAIN_LIMIT = {train}\nTEST_LIMIT = {test}\nEPOCHS = {epochs}\n")
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "README.md").is_file() and (run_dir / "model_source.py").is_file()
    shown = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    html = [o["data"]["text/html"] for o in shown if "text/html" in o.get("data", {})]
    assert any("Total params" in h or "rout" in h for h in html)  # a table, as HTML
    assert any("final test accuracy" in h for h in html)  # the run's result, with its curves
