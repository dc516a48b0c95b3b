"""Every notebook runs top to bottom with the small parameters of notebooks/ci_parameters.yaml (papermill)."""

from pathlib import Path

import pytest
import yaml

papermill = pytest.importorskip("papermill", reason="the notebook tests need the dev extras (papermill)")

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
PARAMETERS = yaml.safe_load((NOTEBOOKS / "ci_parameters.yaml").read_text())


def test_every_notebook_has_ci_parameters():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted(PARAMETERS)


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_notebook_runs(name, tmp_path):
    nb = papermill.execute_notebook(
        str(NOTEBOOKS / name),
        str(tmp_path / name),
        parameters=PARAMETERS[name],
        kernel_name="python3",
        cwd=str(NOTEBOOKS),
        progress_bar=False,
    )
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


def test_notebooks_are_committed_without_outputs():
    import nbformat

    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), path.name
        assert "widgets" not in nb.metadata, path.name
