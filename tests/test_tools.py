"""make run's notebook runner and make setup's checks, under the faults a user meets: a failing notebook, a rerun,
an old Python, a .venv left by another one."""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import check_venv  # noqa: E402


def notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def run_notebooks(path: Path, output: Path):
    env = {**os.environ, "DGM_OUTPUT": str(output), "DGM_MODE": "quick"}
    return subprocess.run([sys.executable, str(ROOT / "tools" / "run_notebooks.py"), str(path)], env=env,
                          capture_output=True, text=True, timeout=300)


START = "from helpers import record, start\nrun = start('{name}')"


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
