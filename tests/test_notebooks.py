"""Every notebook under notebooks/ runs top to bottom in a real Jupyter kernel, and is saved with its outputs."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_a_jupyter_kernel(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(path, as_version=4)
    # Anything a notebook writes lands in a temporary folder; a cell that raises fails the test.
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_saved_with_its_outputs_and_a_chart(path):
    # Opened on a code host, a notebook shows what it computed: every table and at least one chart.
    import json

    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    outputs = [o for c in cells for o in c["outputs"]]
    assert outputs and any("image/png" in o.get("data", {}) for o in outputs)
    assert not [o for o in outputs if o["output_type"] == "error"]


def test_there_are_the_three_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"attention_variants.ipynb", "deployment_sizing.ipynb", "engine_profiles.ipynb"}
