"""The notebooks: jupytext pairs that agree, one `parameters` cell, no committed outputs, and every notebook runs top
to bottom with the small parameters of notebooks/ci_parameters.yaml (papermill). The executed copies land in
notebooks/_executed/, where `make test` re-runs them with `pytest --nbval-lax` (cells marked NBVAL_CHECK_OUTPUT)."""

import ast
from pathlib import Path

import nbformat
import pytest
import yaml

jupytext = pytest.importorskip("jupytext", reason="the notebook tests need the dev extras (jupytext)")
papermill = pytest.importorskip("papermill", reason="the notebook tests need the dev extras (papermill)")

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
EXECUTED = NOTEBOOKS / "_executed"
SOURCES = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
PARAMETERS = yaml.safe_load((NOTEBOOKS / "ci_parameters.yaml").read_text())


def test_every_source_has_its_pair_and_its_ci_parameters():
    assert SOURCES, "no notebook sources"
    assert {p.stem for p in SOURCES} == {p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    assert sorted(PARAMETERS) == sorted(f"{p.stem}.ipynb" for p in SOURCES)


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_the_pair_agrees(source):
    """The .ipynb holds exactly the cells of its .py source (run `make notebooks` after editing a source)."""
    from jupytext.compare import compare_notebooks

    compare_notebooks(nbformat.read(source.with_suffix(".ipynb"), as_version=4), jupytext.read(source),
                      fmt="py:percent", allow_expected_differences=False)  # fmt: skip


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_one_parameters_cell_with_seed_and_model(source):
    nb = jupytext.read(source)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged parameters"
    names = {
        t.id for node in ast.parse(cells[0].source).body if isinstance(node, ast.Assign) for t in node.targets
    }
    assert {"seed", "model"} <= names
    assert set(PARAMETERS[f"{source.stem}.ipynb"]) <= names, "ci_parameters.yaml sets only parameters"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_committed_without_outputs_or_widget_state(source):
    nb = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
    assert all(
        not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"
    )
    assert "widgets" not in nb.metadata


@pytest.mark.parametrize("name", sorted(PARAMETERS))
def test_notebook_runs(name):
    EXECUTED.mkdir(exist_ok=True)
    nb = papermill.execute_notebook(
        str(NOTEBOOKS / name), str(EXECUTED / name), parameters=PARAMETERS[name], kernel_name="python3",
        cwd=str(EXECUTED), progress_bar=False,
    )  # fmt: skip
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    pictures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert pictures >= 1, "a notebook shows pictures"
