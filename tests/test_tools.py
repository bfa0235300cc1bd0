"""make run's notebook runner and make setup's checks, under the faults a user meets: a failing notebook, a rerun,
an old Python, a .venv left by another one."""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from tools import check_venv

ROOT = Path(__file__).resolve().parent.parent


def notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def run_notebooks(path: Path, output: Path):
    env = {**os.environ, "DGM_OUTPUT": str(output), "DGM_MODE": "quick"}
    return subprocess.run([sys.executable, "-m", "tools.run_notebooks", str(path)], env=env,
                          capture_output=True, text=True, timeout=300)


START = "from helpers import record, start\nrun = start('{name}')"


@pytest.mark.runs_notebooks
def test_a_failing_notebook_changes_neither_itself_nor_its_records(tmp_path):
    results = tmp_path / "out" / "results"
    results.mkdir(parents=True)
    (results / "99_fails.json").write_text('{"A1": {"v": 1}}\n')
    path = notebook(tmp_path / "99_fails.ipynb", START.format(name="99_fails"), "record('A1', {'v': 2})",
                    "raise RuntimeError('a bug in the last cell')")
    before = path.read_bytes()
    result = run_notebooks(path, tmp_path / "out")
    assert result.returncode == 1 and "left as they were" in result.stderr
    assert path.read_bytes() == before
    assert (results / "99_fails.json").read_text() == '{"A1": {"v": 1}}\n'  # not half new, half old
    assert sorted(p.name for p in results.iterdir() if not p.name.endswith(".lock")) == ["99_fails.json"]


@pytest.mark.runs_notebooks
def test_a_successful_run_replaces_records_as_one_set_and_repeats_byte_for_byte(tmp_path):
    results = tmp_path / "out" / "results"
    results.mkdir(parents=True)
    (results / "99_works.json").write_text('{"OLD": {"v": 0}}\n')  # an id the notebook no longer records
    path = notebook(tmp_path / "99_works.ipynb", START.format(name="99_works"), "record('A1', {'v': 2})",
                    "from helpers import progress\nfor _ in progress(range(3), desc='train', unit='epoch'): pass")
    assert run_notebooks(path, tmp_path / "out").returncode == 0
    assert json.loads((results / "99_works.json").read_text()) == {"A1": {"v": 2}}
    first = path.read_bytes()
    executed = nbformat.reads(first.decode(), as_version=4)
    assert all("execution" not in c.metadata for c in executed.cells)          # no timestamps
    assert "widgets" not in executed.metadata                                   # no widget state
    assert "train: 3/3 epochs" in "".join(o.get("text", "") for o in executed.cells[2].outputs)  # finished, as text
    assert run_notebooks(path, tmp_path / "out").returncode == 0
    assert path.read_bytes() == first                                           # a rerun changes nothing


def test_make_refuses_an_old_python_with_the_fix(tmp_path):
    fake = tmp_path / "python3.10"
    fake.write_text('#!/bin/sh\nif [ "$1" = "--version" ]; then echo "Python 3.10.12"; else exit 1; fi\n')
    fake.chmod(0o755)
    result = subprocess.run(["make", "-s", "-C", str(ROOT), "check-python", f"PYTHON={fake}"], capture_output=True,
                            text=True)
    assert result.returncode != 0
    assert "is Python 3.10.12; this collection needs Python 3.11 or newer" in result.stdout
    assert "make PYTHON=python3.11 setup" in result.stdout


def test_a_venv_made_by_another_python_is_removed(tmp_path, capsys):
    venv = tmp_path / ".venv"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\nversion = 3.10.12\n")
    check_venv.main([str(venv)])
    assert not venv.exists() and "made by Python 3.10.12" in capsys.readouterr().out
    venv.mkdir()
    here = "{}.{}.{}".format(*sys.version_info[:3])
    (venv / "pyvenv.cfg").write_text(f"home = /usr/bin\nversion = {here}\n")
    check_venv.main([str(venv)])
    assert venv.exists()  # the same Python: kept


@pytest.mark.parametrize("name", ["run_notebooks.py", "check_venv.py"])
def test_tools_have_a_docstring_that_says_what_they_are(name):
    assert (ROOT / "tools" / name).read_text().startswith('"""')


@pytest.mark.runs_notebooks
def test_make_run_shows_the_section_the_cell_and_the_training_bar_and_no_kernel_warning(tmp_path):
    path = tmp_path / "99_shows.ipynb"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(START.format(name="99_shows")),
        nbformat.v4.new_markdown_cell("## Training the model"),
        nbformat.v4.new_code_cell("from helpers import progress\n"
                                  "for _ in progress(range(3), desc='train', unit='epoch'):"
                                  " pass")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    result = run_notebooks(path, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "cell 2/2 · Training the model" in result.stdout and "train: 3/3 epochs" in result.stdout
    assert "without encryption" not in result.stdout + result.stderr
    executed = nbformat.read(path, as_version=4)
    assert "".join(o.get("text", "") for o in executed.cells[2].outputs) == "train: 3/3 epochs\n"  # its final line only


def png(values) -> str:
    """A PNG image of an array, base64-encoded as notebooks store it."""
    import base64
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    plt.imsave(buffer, values, cmap="gray", vmin=0, vmax=1, format="png")
    return base64.b64encode(buffer.getvalue()).decode()


def test_figures_and_records_that_differ_in_the_last_digits_keep_their_committed_bytes():
    import numpy as np

    from tools import repeatable

    assert repeatable.same_records({"A9": {"elbo": -144.271, "n": [1, 2], "s": "x"}},
                                   {"A9": {"elbo": -144.2712, "n": [1, 2], "s": "x"}})
    assert not repeatable.same_records({"A9": {"elbo": -144.271}}, {"A9": {"elbo": -144.3}})
    assert not repeatable.same_records({"A9": {"elbo": 1.0}}, {"A9": {"elbo": 1.0, "new": 2}})
    assert not repeatable.same_records({"A9": {"ok": True}}, {"A9": {"ok": 1}})
    image = np.linspace(0, 1, 100 * 100).reshape(100, 100)
    one_pixel, half = image.copy(), image.copy()
    one_pixel[3, 3], half[:50] = 1 - one_pixel[3, 3], 0
    committed, executed = (nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("plot()", id="c1")])
                           for _ in range(2))
    committed.cells[0].outputs = [nbformat.v4.new_output("display_data", {"image/png": png(image)})]
    executed.cells[0].outputs = [nbformat.v4.new_output("display_data", {"image/png": png(one_pixel)})]
    assert repeatable.keep_unchanged_figures(committed, executed) == 1
    assert executed.cells[0].outputs[0]["data"]["image/png"] == committed.cells[0].outputs[0]["data"]["image/png"]
    executed.cells[0].outputs = [nbformat.v4.new_output("display_data", {"image/png": png(half)})]
    assert repeatable.keep_unchanged_figures(committed, executed) == 0      # a real change replaces the figure


def test_every_answer_module_is_exported_from_its_notebook():
    """answers/*.py are generated: a notebook edited without `make answers` leaves the tests on stale code."""
    from answers import export

    stale = export.export(ROOT / "notebooks", ROOT / "answers", check=True, report=lambda _: None)
    assert not stale, f"run `make answers`: {', '.join(p.name for p in stale)} differ from their notebooks"
