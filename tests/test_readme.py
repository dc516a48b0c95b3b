"""The README stays true: its Python examples run as written, and its module table lists every module."""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_module_table_lists_every_module():
    table = README[README.index("| module | one concept |") :].split("\n\n")[0]
    listed = set(re.findall(r"`(sv4d_kit/[\w/.]+)`", table))
    package = ROOT / "sv4d_kit"
    modules = {f"sv4d_kit/{p.name}" for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")}
    packages = {f"sv4d_kit/{p.name}/" for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert modules | packages == listed


@pytest.mark.parametrize("index", range(len(python_blocks(README))))
def test_python_examples_run(index, tmp_path, capsys):
    (tmp_path / "data").symlink_to(ROOT / "data")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(compile(python_blocks(README)[index], f"README.md python block {index}", "exec"), {})
    finally:
        os.chdir(cwd)


def test_the_notebook_table_is_true():
    """One row per notebook, in order, each with a picture that exists."""
    table = README[README.index("| notebook | what it opens up |") :].split("\n\n")[0]
    rows = [line for line in table.splitlines()[2:] if line.startswith("|")]
    names = [re.search(r"`(\d\d_\w+)`", row).group(1) for row in rows]
    assert names == sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    for row in rows:
        picture = re.search(r"!\[\]\(([^)]+)\)", row).group(1)
        assert (ROOT / picture).is_file(), picture
