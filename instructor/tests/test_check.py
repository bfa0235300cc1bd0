"""`make check` in the students' release: per question, done, not answered yet, or wrong with the likely mistake.

Each test builds on one release, writes answers into its notebooks as a student would (the solution's own code for a
right answer, a planted mistake for a wrong one), runs `python -m tools.check` there, and reads the verdicts.
"""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from answers import export

ROOT = Path(__file__).resolve().parents[2]

# notebook, question, (grade id, the solution's line, the mistake put in its place), what the message must name
PLANTED = [
    ("03", "A3", ("A3_gaussian_kl", "2 * s2**2) - 0.5", "2 * s2**2) + 0.5"), "look at the constant term"),
    ("03", "A3", ("A3_pairs", 'pairs = {"small": (0.0, 1.0, 0.05, 1.05), "large": (0.0, 0.5, 5.0, 1.0)}',
                  "pairs = [(0.0, 1.0, 0.05, 1.05), (0.0, 0.5, 5.0, 1.0)]"),
     "pairs is a dict with the keys 'small' and 'large'"),
    ("01", "A1", ("A1_standard_error", "(p * (1 - p) / n).sqrt()", "p * (1 - p) / n"), "it returns a variance"),
    ("07", "A18", ("A18_layers", "self.h * (1 - self.h)", "self.h * (1 + self.h)"), "check the signs inside"),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("check") / "release"
    result = subprocess.run([sys.executable, "-m", "instructor.release", "--out", str(out), "--repository",
                             "https://github.com/example-course/homework"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture
def release(built, tmp_path):
    """A fresh copy of the release, for one student's answers."""
    copy = tmp_path / "release"
    shutil.copytree(built, copy)
    return copy


def solution_cell(grade_id: str):
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if export.grading(cell).get("grade_id") == grade_id:
                return cell
    raise LookupError(grade_id)


def answer(release: Path, number: str, grade_id: str, mistake: tuple = ()) -> None:
    """Write the solution's answer to `grade_id` into the release's notebook, with `mistake` (old, new) planted."""
    path = next((release / "notebooks").glob(f"{number}_*.ipynb"))
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if export.grading(c).get("grade_id") == grade_id)
    source = solution_cell(grade_id).source
    if mistake:
        assert source.count(mistake[0]) == 1, f"the planted mistake no longer fits {grade_id}: {mistake[0]!r}"
        source = source.replace(*mistake)
    cell.source = source
    nbformat.write(nb, path)


def answer_question(release: Path, number: str, question: str, mistake: tuple = ()) -> None:
    """Every code part of `question` answered, one of them (mistake's grade id) with its planted mistake."""
    path = next((release / "notebooks").glob(f"{number}_*.ipynb"))
    for cell in nbformat.read(path, as_version=4).cells:
        grade_id = export.grading(cell).get("grade_id", "")
        if export.is_code_answer(cell) and export.question_of(cell) == question:
            answer(release, number, grade_id, mistake[1:] if mistake and mistake[0] == grade_id else ())


def check(release: Path, *arguments: str) -> tuple:
    """(the verdict line of each question, the whole report, the seconds it took) of `python -m tools.check`."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "tools.check", *arguments], cwd=release, capture_output=True,
                            text=True, timeout=900, env={**os.environ, "DGM_DATA_SOURCE": "embedded"})
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {m[1]: m[2] for m in re.finditer(r"^  (\S+)\s+(.+)$", result.stdout, re.M)}
    return lines, result.stdout, seconds


def test_an_untouched_notebook_reads_not_answered_yet_and_waiting_not_wrong(release):
    verdicts, text, _ = check(release, "03")
    assert verdicts["A3"] == "not answered yet (gaussian_kl, A3_pairs)", text
    assert verdicts["C1d"].startswith("waits on A3"), text
    assert all(not v.startswith("wrong") for v in verdicts.values()), text
    assert "written answer `A3_derivation`: not written yet" in text


def test_a_right_answer_is_done_and_one_question_checks_in_seconds(release):
    answer_question(release, "03", "A3")
    verdicts, text, seconds = check(release, "03", "A3")
    assert list(verdicts) == ["A3"] and verdicts["A3"] == "done", text
    assert seconds < 60, f"checking one question took {seconds:.0f} s"


@pytest.mark.parametrize("number, question, mistake, named", PLANTED, ids=[p[2][0] for p in PLANTED])
def test_a_planted_wrong_answer_is_wrong_and_its_message_names_the_mistake(release, number, question, mistake,
                                                                          named):
    answer_question(release, number, question, mistake)
    verdicts, text, _ = check(release, number, question)
    assert verdicts[question] == "wrong", text
    assert named in text, text


def test_bad_input_names_the_problem_and_the_fix(release):
    for arguments, words in ((["09"], "name one by its number"), (["03", "B7"], "its questions are A3")):
        result = subprocess.run([sys.executable, "-m", "tools.check", *arguments], cwd=release, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode != 0 and words in result.stderr, result.stdout + result.stderr


def test_the_students_make_test_skips_what_is_not_answered_yet_and_fails_what_is_wrong(release):
    answer_question(release, "03", "C1h", ("C1h_kl_equal_variance", "(2 * s**2)", "(4 * s**2)"))
    result = subprocess.run([sys.executable, "-m", "pytest", "notebooks/03_kl_divergence.ipynb", "-q"], cwd=release,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "DGM_MODE": "quick", "DGM_DATA_SOURCE": "embedded",
                                 "PYTHONPATH": str(release)})
    summary = result.stdout.strip().splitlines()[-1]
    assert re.search(r"\b[12] failed\b", summary) and "skipped" in summary, result.stdout[-3000:]
    assert "03_kl_divergence.ipynb: A3, N, C3e" in result.stdout, result.stdout[-3000:]


def test_the_students_readme_walks_the_loop_with_and_without_make(built):
    readme = " ".join((built / "README.md").read_text().split())
    for words in ("## The loop: open, answer, check, hand in", "make check NB=03 Q=A3", "python -m tools.check 03 A3",
                  "python -m answers.export", "In Colab", "run the cell again", "## Handing in"):
        assert words in readme, f"the students' README lacks {words!r}"
