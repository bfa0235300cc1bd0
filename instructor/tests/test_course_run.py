"""A course as docs/instructors.md runs it, every command typed as there: `make collect` from a Canvas zip and from
GitHub Classroom repositories, `make grade -j 2`, and what comes out: the LMS import files with the roster's ids and
the late policy applied, and a hand-back page per student."""
import csv
import os
import shutil
import subprocess

import pytest

from instructor.grader import sandbox
from instructor.tests.collect_fixtures import ROOT, course_file, make_zip, notebook, student_repo

NOTEBOOK = "01_ancestral_sampling"
FULL = 7                                        # the hidden-test points of notebook 01 (A1); its TA parts are unread
pytestmark = pytest.mark.skipif(sandbox.problem() is not None, reason=f"no sandbox here: {sandbox.problem()}")


def make(*argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHONPATH")}
    done = subprocess.run(["make", "--no-print-directory", *argv], cwd=ROOT, env={**env, "DASK_SCHEDULER": ""},
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def rows(path) -> list:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """The grader's cache, shared by this file's classes: a job that one test graded (the same student, notebook and
    settings) comes from it in the next, as in a regrade; what these tests check is collecting and the exports."""
    return tmp_path_factory.mktemp("grader-cache")


def grade(subs, grades, course, *extra, results=None) -> None:
    if results is not None:
        shutil.copytree(results, grades / ".cache", dirs_exist_ok=True)
    make("grade", f"SUBMISSIONS={subs}", f"GRADES={grades}", *([f"COURSE={course}"] if course else []),
         "GRADE_ARGS=--cell-timeout 60 --timeout 300", "-j", "2", *extra)
    if results is not None:
        shutil.copytree(grades / ".cache", results, dirs_exist_ok=True)


def test_from_a_canvas_zip_to_the_lms_files_and_a_page_per_student(tmp_path, results):
    course = course_file(tmp_path)              # deadline 2026-03-13 23:59 +01:00, 15 min grace, 10% a day, cap 50%
    download = make_zip(tmp_path / "submissions.zip", [
        (f"lovelaceada_1001_5001_{NOTEBOOK}.ipynb", notebook(NOTEBOOK), (2026, 3, 13, 20, 0, 0)),
        (f"turingalan_late_1002_5002_{NOTEBOOK}.ipynb", notebook(NOTEBOOK), (2026, 3, 15, 2, 58, 0))])
    subs, grades = tmp_path / "hw1" / "submissions", tmp_path / "grades"
    make("collect", f"FROM=canvas:{download}", f"SUBMISSIONS={subs}", f"COURSE={course}")
    grade(subs, grades, course, results=results)

    late = 1 - 0.2                              # 1 day 2 h 59 min after the deadline: two days started after grace
    assert rows(grades / "canvas.csv") == [
        ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Homework total"],
        ["Points Possible", "", "", "", "", rows(grades / "canvas.csv")[1][-1]],
        ["Ada Lovelace", "1001", "s001", "ada@uni.example", "", f"{FULL:g}"],
        ["Alan Turing", "1002", "s002", "alan@uni.example", "", f"{FULL * late:g}"],
        ["José Núñez", "1003", "s003", "jose@uni.example", "", "0"],
        ["Grace Hopper", "1004", "s004", "grace@uni.example", "", "0"]]
    assert rows(grades / "moodle.csv")[:3] == [["ID number", "Email address", "Full name", "Homework total"],
                                               ["s001", "ada@uni.example", "Ada Lovelace", f"{FULL:g}"],
                                               ["s002", "alan@uni.example", "Alan Turing", f"{FULL * late:g}"]]
    book = {row[0]: row for row in rows(grades / "gradebook.csv")}
    assert book["s002"][-3:] == [f"{FULL:g}", "0.2", f"{FULL * late:g}"]
    page = (grades / "handback" / "s002" / "index.html").read_text()
    assert "handed in 1 day 2 hours late: 20% deducted (10% per started day, at most 50%)" in page
    assert "handed in on time" in (grades / "handback" / "s001" / "index.html").read_text()
    assert (grades / "handback" / "s002" / f"{NOTEBOOK}.html").is_file()
    assert (grades / "handback-zips" / "s002.zip").is_file()
    assert "nothing handed in" in (grades / "feedback" / "s004.md").read_text()

    exported = (grades / "canvas.csv").read_text()                  # a regrade typed without COURSE=, as the guide's
    grade(subs, grades, None, "STUDENT=s002")                       # uses the course file the class was collected with
    assert (grades / "canvas.csv").read_text() == exported


def test_from_github_classroom_repositories_to_the_lms_files(tmp_path, results):
    course = course_file(tmp_path)
    remotes = tmp_path / "remotes"
    handed_in = {f"notebooks/{NOTEBOOK}.ipynb": notebook(NOTEBOOK)}
    student_repo(remotes, "adalove", [("2026-03-13T20:00:00+01:00", handed_in),
                                      ("2026-03-20T20:00:00+01:00", {"notebooks/late.txt": b"after the deadline"})])
    roster = tmp_path / "classroom_roster.csv"
    roster.write_text('"identifier","github_username","github_id","name"\n"s001","adalove","11","Ada Lovelace"\n')
    subs, grades = tmp_path / "submissions", tmp_path / "grades"
    make("collect", f"FROM=github:{roster}", f"SUBMISSIONS={subs}", f"COURSE={course}",
         f"COLLECT_ARGS=--repo-template file://{remotes}/{{org}}/{{assignment}}-{{github}}.git")
    grade(subs, grades, course, results=results)   # after the Canvas class, s001's job comes from the cache
    assert rows(grades / "moodle.csv")[1] == ["s001", "ada@uni.example", "Ada Lovelace", f"{FULL:g}"]
    assert "handed in on time" in (grades / "feedback" / "s001.md").read_text()
