"""A question is one notebook cell and one hidden test: added to a copy of the course as docs/developers.md says (a
Markdown cell asking it, a code answer and a written part in a notebook, a hidden test in the bank module), it is
found by what `make` regenerates (QUESTIONS.md, the instructors' points table), the release (`python -m
instructor.release`), the grader's gradebook and feedback (the solution graded without the sandbox), the TA pages and
the site, with nothing else edited by hand."""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "01_ancestral_sampling"
STATEMENT = "Count the nodes of a network, and say what the count decides."
ASKING = {"cell_type": "markdown", "id": "z1-asked", "metadata": {"questions": {"Z1": STATEMENT}},
          "source": "## Z1: the network's size\n\n**Question Z1.** Write `node_count(network)`, then say what the "
                    "count decides."}
ANSWER = {"cell_type": "code", "execution_count": None, "id": "z1-answer", "outputs": [],
          "metadata": {"nbgrader": {"grade": False, "grade_id": "Z1_node_count", "locked": False, "schema_version": 3,
                                    "solution": True, "task": False}},
          "source": 'def node_count(network):\n    """The number of nodes of `network` (an int)."""\n'
                    "    ### BEGIN SOLUTION\n    return len(network.nodes)\n    ### END SOLUTION"}
WRITTEN = {"cell_type": "markdown", "id": "z1-written",
           "metadata": {"nbgrader": {"grade": True, "grade_id": "Z1_decides", "locked": False, "points": 2,
                                     "schema_version": 3, "solution": True, "task": False}},
           "source": "### BEGIN SOLUTION\nThe count sets the size of the joint table: one axis per node.\n"
                     "### END SOLUTION"}
TEST = '''

@hidden_test("Z1", points=1)
class NodeCount:
    """node_count counts the nodes of fresh networks"""

    @staticmethod
    def inputs(rng):
        return {"sizes": torch.randint(1, 9, (3,), generator=rng).tolist()}

    @staticmethod
    def probe(answers, inputs):
        from types import SimpleNamespace

        return {"counts": [answers.node_count(SimpleNamespace(nodes=list(range(n)))) for n in inputs["sizes"]]}

    @staticmethod
    def check(inputs, outputs, ref):
        return None if outputs["counts"] == inputs["sizes"] else "node_count: wrong counts"
'''


def run(copy: Path, *argv: str, timeout: float = 300) -> str:
    env = {**os.environ, "PYTHONPATH": str(copy), "DGM_MODE": "quick", "DGM_DATA_SOURCE": "embedded",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *argv], cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A copy of the repository's files (those git tracks or would track: what a clone holds, with work not yet
    committed), as a git repository (the release lists its files with git), with the question Z1 added: three cells
    at the end of notebook 01 and a test at the end of its bank module."""
    copy = tmp_path_factory.mktemp("course") / "repo"
    tracked = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    path = copy / "notebooks" / f"{NOTEBOOK}.ipynb"
    nb = json.loads(path.read_text())
    nb["cells"] += [ASKING, ANSWER, WRITTEN]
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    bank = copy / "instructor" / "grader" / "bank" / "ancestral_sampling.py"
    bank.write_text(bank.read_text() + TEST)
    run(copy, "-m", "answers.export")                       # make answers, which makes the questions too
    run(copy, "-m", "instructor.course_model")
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    subprocess.run(["git", "add", "-A"], cwd=copy, check=True)
    return copy


def test_make_regenerates_the_question_index_and_the_instructors_points(course):
    assert f"| Z1 | {STATEMENT} | {NOTEBOOK} |" in (course / "QUESTIONS.md").read_text()
    row = next(line for line in (course / "docs" / "instructors.md").read_text().splitlines()
               if line.startswith("| 01 |"))
    assert "`node_count` (Z1)" in row and row.endswith("| 8 + 0 + 6 |"), row
    assert "def node_count(network)" in (course / "answers" / "ancestral_sampling.py").read_text()
    run(course, "-m", "instructor.course_model", "--check")


def test_the_release_asks_it_with_its_points(course, tmp_path):
    run(course, "-m", "instructor.release", "--out", str(tmp_path / "release"), "--repository",
        "https://github.com/course/homework")
    nb = json.loads((tmp_path / "release" / "notebooks" / f"{NOTEBOOK}.ipynb").read_text())
    table = "".join(nb["cells"][2]["source"])
    row = next(line for line in table.splitlines() if line.startswith("| Z1 |"))
    assert STATEMENT in row and "`node_count`" in row and "| 3 |" in row, row
    assert "node_count counts the nodes of fresh networks (1)" in row and "`Z1_decides` (2)" in row, row
    text = json.dumps(nb)
    assert "len(network.nodes)" not in text and "one axis per node" not in text
    assert "node_count (question Z1, notebook 01_ancestral_sampling) is not written yet" in text
    assert f"| Z1 | {STATEMENT} |" in (tmp_path / "release" / "QUESTIONS.md").read_text()
    assert "Z1" in (tmp_path / "release" / "README.md").read_text()


def test_the_grader_scores_it_and_the_ta_reads_it(course, tmp_path):
    student = tmp_path / "submissions" / "ada"
    student.mkdir(parents=True)
    shutil.copy(course / "notebooks" / f"{NOTEBOOK}.ipynb", student)
    grades = tmp_path / "grades"
    run(course, "-m", "instructor.grader", "grade", str(student.parent), "--grades", str(grades), "--no-sandbox",
        timeout=600)
    with open(grades / "gradebook.csv", newline="") as f:
        rows = {row["student"]: row for row in csv.DictReader(f)}
    assert rows["maximum/"]["Z1"] == "3" and rows["ada"]["Z1"] == "1", rows["ada"]
    assert rows["ada"]["A1"] == "7" and rows["ada"]["TA parts to grade"] == "3", rows["ada"]   # TA parts to come
    feedback = (grades / "feedback" / "ada.md").read_text()
    assert "| Z1 | node_count counts the nodes of fresh networks | 1 / 1 |" in feedback
    assert "| Z1 | a TA reads your `Z1_decides` | ? / 2 |" in feedback
    page = (grades / "manual" / NOTEBOOK / "Z1_decides.html").read_text()
    assert STATEMENT in page and "one axis per node" in page
    with open(grades / "manual-points.csv", newline="") as f:
        assert {"ada": "2"} == {r["student"]: r["max_points"] for r in csv.DictReader(f) if r["part"] == "Z1_decides"}


def test_the_site_lists_it(course, tmp_path):
    run(course, "-c", "import sys; from pathlib import Path; from instructor import site; "
        f"pages = site.render([Path('notebooks/{NOTEBOOK}.ipynb')], Path(sys.argv[1]), None, 'index.html'); "
        "Path(sys.argv[1], 'index.html').write_text(site.index_page([('Solutions', '', pages)]))", str(tmp_path))
    index = (tmp_path / "index.html").read_text()
    assert f"<code>{NOTEBOOK}</code></td><td>A1, Z1</td>" in index
    assert "Question Z1." in (tmp_path / f"{NOTEBOOK}.html").read_text()
