"""The honest reference: the solution notebooks, handed in as one student's work and graded by `make grade -j 2` in
the sandbox, earn every point the grader awards itself (every hidden test, every model test), and their written
answers reach the TAs' pages."""
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from instructor import course_model
from instructor.grader import bank, sandbox

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sandbox.problem() is not None, reason=f"no sandbox here: {sandbox.problem()}")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("reference")
    student = base / "submissions" / "reference"
    student.mkdir(parents=True)
    for stem in course_model.load().graded_notebooks():
        shutil.copy(ROOT / "notebooks" / f"{stem}.ipynb", student / f"{stem}.ipynb")
    result = subprocess.run([sys.executable, "-m", "instructor.grader", "grade", str(base / "submissions"),
                             "--grades", str(base / "grades"), "--jobs", "2"], cwd=ROOT, capture_output=True,
                            text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return base / "grades"


def test_the_solution_earns_every_point_of_the_hidden_tests_and_the_model_tests(graded):
    details = json.loads((graded / "details.json").read_text())
    verdicts = [v for r in details["results"].values() for v in r["verdicts"]]
    lost = [f"{v['notebook']} {v['question']} {v['test']}: {v['message']}"
            for v in verdicts if v["earned"] < v["points"]]
    assert not lost, lost
    expected = {(t.notebook, t.name) for t in bank.tests()}
    assert {(v["notebook"], v["test"]) for v in verdicts} == expected
    statuses = {r["notebook"]: r["status"] for r in details["results"].values()}
    assert set(statuses.values()) == {"ok"}, statuses


def test_the_gradebook_gives_the_solution_every_automatic_point(graded):
    with open(graded / "gradebook.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    automatic = sum(t.points for t in bank.tests())
    assert float(rows["reference"]["total"]) == automatic             # the TAs have not graded yet


def test_every_written_answer_of_the_solution_reaches_its_ta_page(graded):
    for (notebook, part), _ in course_model.load().ta_parts().items():
        page = (graded / "manual" / notebook / f"{part}.html").read_text()
        assert ">reference</h2>" in page and "SOLUTION</h3>" not in page and "no answer" not in page, (notebook, part)


def test_the_gan_is_trained_once_by_the_graders_probe_and_loaded_by_the_notebooks_run(graded):
    """06's model test trains the generator by the notebook's own training cell and hands its checkpoint over: the
    notebook's run, under the same settings and code, loads it instead of training it a second time."""
    executed = nbformat.read(graded / "executed" / "reference" / "06_gan_mnist.ipynb", as_version=4)
    training = next(c for c in executed.cells if c.get("id") == "0d220b37")
    printed = "".join(o.get("text", "") for o in training.outputs)
    assert printed.startswith("loaded from checkpoint: "), printed
