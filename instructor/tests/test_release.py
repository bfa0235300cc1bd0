"""The students' release (`make student`): every question asked, no answer given, and the repository still works.

The leak test reads every solution region of the solution notebooks (code, prose, LaTeX, the docstrings of answer
functions) and looks for each in every file of the release; it is shown to find a planted leak of each kind.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from answers import export
from instructor import course_model, release
from instructor.tests import shared
from instructor.tests.leaks import (
    answer_functions,
    docstring_leaks,
    leak_fragments,
    leaks,
    property_leaks,
    regions_of,
    release_text,
    return_gaps,
)
from tools import nbcells

ROOT = Path(__file__).resolve().parents[2]
STUDENT_REPO = "https://github.com/example-course/homework"
SOLUTIONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def built():
    """`make student STUDENT_REPO=...`'s release, built once for this version of the code and shared (read only)."""
    return shared.release(STUDENT_REPO)


# --------------------------------------------------------------------------------------------------------------------

def test_make_student_refuses_a_release_that_points_at_the_solutions(tmp_path):
    for repository, words in ((None, "STUDENT_REPO is not set"),
                              (release.repository_url(), "is the solutions' repository")):
        with pytest.raises(SystemExit, match=words):
            release.check_repository(repository)
    result = subprocess.run(["make", "-s", "-C", str(ROOT), "student", "-o", ".venv/.instructor", "-o",
                             ".venv/.installed"], capture_output=True, text=True,
                            env={**os.environ, "STUDENT_REPO": ""})
    assert result.returncode != 0 and "make student STUDENT_REPO=https://github.com/" in result.stdout + result.stderr


def test_make_student_refuses_what_is_not_a_repository_address(tmp_path):
    result = subprocess.run([sys.executable, "-m", "instructor.release", "--out", str(tmp_path / "release"),
                             "--repository", "example.org/course/homework"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0 and "is not a repository address" in result.stderr, result.stderr
    for repository in ("https://github.com/course", "file:///srv/homework"):     # the same main(), in this process
        with pytest.raises(SystemExit, match="is not a repository address"):
            release.main(["--out", str(tmp_path / "release"), "--repository", repository])
    assert not (tmp_path / "release").exists()
    ssh = release.repository_url().replace("https://github.com/", "git@github.com:") + ".git"
    with pytest.raises(SystemExit, match="is the solutions' repository"):
        release.check_repository(ssh)                        # the same repository in its ssh form


def test_a_release_off_github_has_no_colab_link_and_says_why(tmp_path):
    out = tmp_path / "release"
    result = subprocess.run([sys.executable, "-m", "instructor.release", "--out", str(out), "--repository",
                             "git@gitlab.com:course/homework.git"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is not on GitHub: the release has no Colab links" in result.stdout
    readme = (out / "README.md").read_text()
    assert "colab.research.google.com" not in readme and "Colab opens notebooks from GitHub alone" in readme
    assert '"Open in Colab" link' not in readme and "Upload a notebook (File > Upload notebook)" in readme
    first = nbformat.read(out / "notebooks" / "01_ancestral_sampling.ipynb", as_version=4).cells[0].source
    assert "https://gitlab.com/course/homework.git" in first


def test_the_release_holds_what_students_need_and_nothing_of_the_instructors(built):
    for name in ("README.md", "Makefile", "pyproject.toml", "requirements.txt", "environment.yml", "QUESTIONS.md",
                 "data/README.md", "helpers/__init__.py", "answers/export.py", "tools/run_notebooks.py",
                 "tools/colab.py", "tests/conftest.py", ".ci/run"):
        assert (built / name).is_file(), f"the release lacks {name}"
    for name in ("instructor", "docs", "results", "checkpoints", "grades", "site", ".quick",
                 "requirements-instructor.txt", "requirements-dev.txt"):
        assert not (built / name).exists(), f"{name} must not be in the release"
    assert not list(built.rglob("*.pt")) and "nbgrader" not in (built / "requirements.txt").read_text()
    assert "[tool.mutmut]" not in (built / "pyproject.toml").read_text()
    assert f'Repository = "{STUDENT_REPO}"' in (built / "pyproject.toml").read_text()
    readme = (built / "README.md").read_text()
    for absent in ("make mutate", "checkpoints/", "Model quality", "test_questions", "seed's", "instructor",
                   "make grade"):
        assert absent not in readme, f"the students' README mentions {absent!r}, which the release lacks"


def test_every_question_id_has_an_exercise_region_in_the_release(built):
    for notebook, ids in course_model.load().ids_by_notebook().items():
        cells = nbformat.read(built / "notebooks" / f"{notebook}.ipynb", as_version=4).cells
        tagged = {nbcells.question_of(c) for c in cells if nbcells.grading(c).get("solution")}
        assert set(ids) <= tagged, f"{notebook}: no exercise region for {sorted(set(ids) - tagged)}"


def test_each_release_notebook_states_its_questions_points_and_grading(built):
    for notebook, ids in course_model.load().ids_by_notebook().items():
        nb = nbformat.read(built / "notebooks" / f"{notebook}.ipynb", as_version=4)
        table = next(c.source for c in nb.cells if c.source.startswith("## Questions of this notebook"))
        for qid in ids:
            assert re.search(rf"^\| {re.escape(qid)} \|.*\| \d+(\.\d+)? \|", table, re.M), (notebook, qid)
        assert "a TA reads" in table or "hidden" in table.lower() or "fresh" in table


def test_no_answer_reaches_the_release(built):
    fragments = leak_fragments()
    assert all(fragments.values()), "the leak test found no fragment of some kind: it would pass anything"
    found = leaks(release_text(built), fragments)
    assert not found, f"answers in the release: {found}"
    stated = docstring_leaks(built)
    assert not stated, f"docstrings that spell out their answer: {stated}"
    given = property_leaks(built)
    assert not given, f"given code that states what a written answer concludes: {given}"


def test_the_leak_test_finds_given_code_that_states_an_answers_conclusion(built, tmp_path):
    copy = tmp_path / "release"
    subprocess.run(["cp", "-r", str(built), str(copy)], check=True)
    path = next((copy / "notebooks").glob("03_*.ipynb"))
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "kl_curve = [" in c.source)
    cell.source += '\nright.scatter([], [], marker="^", label="KL not finite")'
    nbformat.write(nb, path)
    assert property_leaks(copy) == {"03_kl_divergence C3e": ["infinite"]}


@pytest.mark.parametrize("kind", ["code", "prose", "formula", "docstring", "questions"])
def test_the_leak_test_finds_a_planted_leak_of_each_kind(built, tmp_path, kind):
    fragments = leak_fragments()
    copy = tmp_path / "release"
    subprocess.run(["cp", "-r", str(built), str(copy)], check=True)
    if kind == "docstring":
        path = next((copy / "notebooks").glob("03_*.ipynb"))
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if "def gaussian_kl(" in c.source)
        planted = '"""KL = torch.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5: KL('
        cell.source = cell.source.replace('"""KL(', planted, 1)
        nbformat.write(nb, path)
        assert docstring_leaks(copy), "a docstring that spells out its answer went unnoticed"
        return
    planted = sorted(fragments["formula" if kind == "questions" else kind])[0]
    target = copy / ("QUESTIONS.md" if kind == "questions" else "helpers/plotting.py")
    target.write_text(target.read_text() + f"\n# {planted}\n")
    assert leaks(release_text(copy), fragments), f"a planted {kind} leak went unnoticed"


def test_an_untouched_release_notebook_stops_at_its_first_stub_naming_it(built, tmp_path):
    """Run each exercise notebook as a student would: it stops at the first answer not yet written, with its name."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    env = {**os.environ, "DGM_MODE": "quick", "DGM_DATA_SOURCE": "embedded", "PYTHONPATH": str(built),
           "DGM_OUTPUT": str(tmp_path / ".quick"), "PYTHONDONTWRITEBYTECODE": "1"}     # nothing written in the release
    for path in sorted((built / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        first = next((c for c in nb.cells if nbcells.grading(c).get("solution") and c.cell_type == "code"), None)
        if first is None:
            continue
        os.environ.update(env)
        try:
            with pytest.raises(CellExecutionError) as stopped:
                NotebookClient(nb, timeout=300, kernel_name="python3",
                               resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
        finally:
            for key in env:
                os.environ.pop(key, None)
        assert stopped.value.ename == "NotImplementedError", (path.name, stopped.value.ename, stopped.value.evalue)
        assert "is not written yet" in stopped.value.evalue and nbcells.question_of(first) in stopped.value.evalue


def test_the_students_own_tests_that_read_the_release_pass_there(built):
    """tests/ is the same in the release; these are the ones that read files the release makes anew (its README,
    its notebooks' Colab cells, its pyproject): the others run on every `make test` here."""
    result = subprocess.run([sys.executable, "-m", "pytest", "tests/test_colab.py", "tests/test_runtime.py", "-q",
                             "-p", "no:cacheprovider", "-x"],
                            cwd=built, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(built), "PYTHONDONTWRITEBYTECODE": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_the_release_answers_are_stubs_exported_from_its_notebooks(built):
    for module in (built / "answers").glob("*.py"):
        if module.stem in ("__init__", "export"):
            continue
        inside, _ = regions_of(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
            module.read_text(), metadata={"nbgrader": {"solution": True, "grade": False, "grade_id": "x_y"}})]))
        assert all("not written yet" in line or "YOUR CODE HERE" in line for line in inside.split("\n") if line.strip())


def test_the_instructors_guide_names_every_asked_answer_and_the_points_it_gives():
    """docs/instructors.md says per notebook what is given and what is asked: checked against the notebooks and the
    bank, so that the guide cannot drift from what the release asks."""
    from instructor.grader import bank

    guide = (ROOT / "docs" / "instructors.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in guide.splitlines() if re.match(r"^\| 0\d \|", line)}
    parts = course_model.load().ta_parts()
    for path in SOLUTIONS:
        cells = nbformat.read(path, as_version=4).cells
        names = set()
        for cell in filter(nbcells.is_code_answer, cells):
            lines = cell.source.split("\n")
            for first, last in export.regions(cell.source):
                name = release.enclosing_definitions(lines, first).split(".")[0]
                names |= {name} if name else {m.group(1) for line in lines[first + 1:last]
                                              if (m := re.match(r"(\w+)\s*=[^=]", line))}
        if not names:
            continue
        row = rows[path.stem[:2]]
        assert all(f"`{name}`" in row for name in names), (path.stem, sorted(n for n in names if f"`{n}`" not in row))
        tests = bank.tests(path.stem)
        points = (sum(t.points for t in tests if isinstance(t, bank.FunctionTest)),
                  sum(t.points for t in tests if isinstance(t, bank.ModelTest)),
                  sum(p for (stem, _), (_, p) in parts.items() if stem == path.stem))
        assert row.rstrip(" |").endswith(" + ".join(f"{p:g}" for p in points)), (path.stem, points)
    counts = [sum(isinstance(t, kind) for t in bank.tests()) for kind in (bank.FunctionTest, bank.ModelTest)]
    assert f"{counts[0]} tests calling the students' functions" in guide and f"the {counts[1]} model" in " ".join(
        guide.split()), counts


def test_every_stub_says_what_it_returns(built, tmp_path):
    """The docstring is all a student sees of an answer function: it names the returned type, and a tensor's shape."""
    docstrings = answer_functions(built)
    assert len(docstrings) >= 50 and "07_backprop Linear.backward" in docstrings, sorted(docstrings)
    gaps = return_gaps(docstrings)
    assert not gaps, f"stubs that do not say what they return: {gaps}"
    copy = tmp_path / "release"
    subprocess.run(["cp", "-r", str(built), str(copy)], check=True)
    path = next((copy / "notebooks").glob("03_*.ipynb"))
    nb = nbformat.read(path, as_version=4)
    for planted, gap in (("The KL divergence of the two Gaussians, elementwise, in nats.", "no type"),
                         ("The KL divergence of the two Gaussians as a tensor (s1, s2 are deviations).", "its shape")):
        nb = nbformat.read(next((built / "notebooks").glob("03_*.ipynb")), as_version=4)
        cell = next(c for c in nb.cells if "def gaussian_kl(" in c.source)
        cell.source = re.sub(r'""".*?"""', f'"""{planted}"""', cell.source, count=1, flags=re.S)
        nbformat.write(nb, path)
        assert gap in return_gaps(answer_functions(copy)).get("03_kl_divergence gaussian_kl", ""), planted
