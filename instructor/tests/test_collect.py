"""`make collect`: Canvas, Moodle and GitHub Classroom hand-ins into the folder per student, and .collected.json."""
import json
import os
import subprocess

import pytest

from instructor import collect, course
from instructor.tests.collect_fixtures import (
    ROOT,
    canvas_zip,
    collected,
    course_file,
    layout,
    make_zip,
    notebook,
    student_repo,
)

NOTHING = {"name": "Grace Hopper", "submitted": None, "files": [], "problems": ["nothing handed in"]}


def test_a_canvas_download_becomes_a_folder_per_roster_student(tmp_path, capsys):
    out = tmp_path / "submissions"
    collect.main(["canvas", str(canvas_zip(tmp_path)), "--course", str(course_file(tmp_path)), "--out", str(out)])
    assert layout(out) == {
        ".unmatched": None, ".unmatched/001_1999": None,
        ".unmatched/001_1999/01_ancestral_sampling.ipynb": notebook("01_ancestral_sampling"),
        "s001": None, "s001/01_ancestral_sampling.ipynb": notebook("01_ancestral_sampling"),
        "s001/03_kl_divergence.ipynb": notebook("03_kl_divergence"),
        "s002": None, "s002/01_ancestral_sampling.ipynb": notebook("01_ancestral_sampling"),
        "s003": None, "s003/07_backprop.ipynb": notebook("07_backprop"),
        "s004": None}
    assert collected(out) == {"source": "canvas", "students": {
        "s001": {"name": "Ada Lovelace", "submitted": "2026-03-13T21:00:00+01:00",
                 "files": ["01_ancestral_sampling.ipynb", "03_kl_divergence.ipynb"], "problems": []},
        "s002": {"name": "Alan Turing", "submitted": "2026-03-15T02:58:00+01:00",
                 "files": ["01_ancestral_sampling.ipynb"], "problems": ["notes.pdf is not a notebook: not collected"]},
        "s003": {"name": "José Núñez", "submitted": "2026-03-13T11:00:00+01:00", "files": ["07_backprop.ipynb"],
                 "problems": ["07_backprop-1.ipynb and 07_backprop.ipynb were both handed in as 07_backprop.ipynb: "
                              "07_backprop-1.ipynb, the later upload, was collected"]},
        "s004": NOTHING}}
    said = capsys.readouterr().out
    assert "3 of 4 roster students handed in" in said
    assert "not on the roster: strangerbob (Canvas user 1999) (1 file kept" in said


def test_a_late_hand_in_is_priced_by_the_course_file(tmp_path):
    out = tmp_path / "submissions"
    policy = course.load(course_file(tmp_path))
    result = collect.collect("canvas", canvas_zip(tmp_path), policy, out)
    from datetime import datetime
    lateness = course.late(policy, datetime.fromisoformat(result["students"]["s002"]["submitted"]))
    assert lateness.sentence == "handed in 1 day 2 hours late: 20% deducted (10% per started day, at most 50%)"


def test_exported_hand_in_times_replace_the_zips(tmp_path):
    times = tmp_path / "times.csv"
    times.write_text("id,submitted\ns001,2026-03-14T00:20:00+01:00\n1002,2026-03-13T22:00:00\n")
    result = collect.collect("canvas", canvas_zip(tmp_path), course.load(course_file(tmp_path)),
                             tmp_path / "out", times=times)
    assert [result["students"][s]["submitted"] for s in ("s001", "s002", "s004")] == [
        "2026-03-14T00:20:00+01:00", "2026-03-13T22:00:00+01:00", None]


@pytest.mark.parametrize("rows, said", [
    ("s001,2026-03-14T00:20:00+01:00\ns001,2026-03-13T20:00:00+01:00\n", "a second time for 's001'"),
    ("s002,2026-03-14T00:20:00+01:00\n1002,2026-03-13T22:00:00\n",
     "two times for one student, under 's002' and '1002'")])
def test_two_hand_in_times_for_one_student_are_refused(tmp_path, rows, said):
    times = tmp_path / "times.csv"
    times.write_text("id,submitted\n" + rows)
    with pytest.raises(SystemExit, match=said):
        collect.collect("canvas", canvas_zip(tmp_path), course.load(course_file(tmp_path)), tmp_path / "out",
                        times=times)
    assert not (tmp_path / "out").exists()


def test_a_missing_times_file_or_roster_is_named_with_where_it_was_looked_for(tmp_path):
    with pytest.raises(SystemExit, match=r"--submitted .*absent.csv: no file .*absent.csv.*give the full path"):
        collect.collect("canvas", canvas_zip(tmp_path), course.load(course_file(tmp_path)), tmp_path / "out",
                        times=tmp_path / "absent.csv")
    with pytest.raises(SystemExit, match=r"no roster .*nobody.csv.*give COURSE="):
        collect.read_roster(tmp_path / "nobody.csv")
    assert not (tmp_path / "out").exists()


def test_a_moodle_download_is_matched_by_name_in_both_of_its_layouts(tmp_path, capsys):
    download = make_zip(tmp_path / "moodle.zip", [
        ("Ada Lovelace_2001_assignsubmission_file_/01_ancestral_sampling.ipynb", notebook("01_ancestral_sampling"),
         (2026, 3, 13, 22, 0, 0)),
        ("Jose Nunez_2003_assignsubmission_file_/07_backprop.ipynb", notebook("07_backprop"), (2026, 3, 13, 9, 0, 0)),
        ("Alan Turing_2002_assignsubmission_file_01_ancestral_sampling (1).ipynb", notebook("01_ancestral_sampling"),
         (2026, 3, 14, 0, 10, 0)),
        ("Alan Turing_2002_assignsubmission_onlinetext_onlinetext.html", b"<p>see notebook</p>"),
        ("Bob Stranger_2009_assignsubmission_file_/01_ancestral_sampling.ipynb", notebook("01_ancestral_sampling")),
    ])
    out = tmp_path / "submissions"
    collect.main(["moodle", str(download), "--course", str(course_file(tmp_path)), "--out", str(out)])
    assert layout(out) == {
        ".unmatched": None, ".unmatched/001_Bob_Stranger": None,
        ".unmatched/001_Bob_Stranger/01_ancestral_sampling.ipynb": notebook("01_ancestral_sampling"),
        "s001": None, "s001/01_ancestral_sampling.ipynb": notebook("01_ancestral_sampling"),
        "s002": None, "s002/01_ancestral_sampling.ipynb": notebook("01_ancestral_sampling"),
        "s003": None, "s003/07_backprop.ipynb": notebook("07_backprop"), "s004": None}
    assert collected(out) == {"source": "moodle", "students": {
        "s001": {"name": "Ada Lovelace", "submitted": "2026-03-13T22:00:00+01:00",
                 "files": ["01_ancestral_sampling.ipynb"], "problems": []},
        "s002": {"name": "Alan Turing", "submitted": "2026-03-14T00:10:00+01:00",
                 "files": ["01_ancestral_sampling.ipynb"],
                 "problems": ["onlinetext.html: an online text, not a notebook: not collected"]},
        "s003": {"name": "José Núñez", "submitted": "2026-03-13T09:00:00+01:00", "files": ["07_backprop.ipynb"],
                 "problems": []},
        "s004": NOTHING}}
    assert "not on the roster: Bob Stranger (Moodle participant 2009)" in capsys.readouterr().out


def test_two_roster_students_of_one_name_are_not_guessed(tmp_path, capsys):
    path = course_file(tmp_path)
    (tmp_path / "roster.csv").write_text("id,name\nx1,Ada Lovelace\nx2,ada lovelace\n")
    download = make_zip(tmp_path / "moodle.zip", [
        ("Ada Lovelace_2001_assignsubmission_file_/01_ancestral_sampling.ipynb", notebook("01_ancestral_sampling"))])
    result = collect.collect("moodle", download, course.load(path), tmp_path / "out")
    assert [s["files"] for s in result["students"].values()] == [[], []]
    assert "two roster students have this name" in capsys.readouterr().out


def test_github_classroom_takes_the_last_commit_at_or_before_the_deadline(tmp_path):
    remotes = tmp_path / "remotes"
    starter, answer, later = (notebook("01_ancestral_sampling"), notebook("02_latent_variable_models"),
                              notebook("03_kl_divergence"))
    student_repo(remotes, "adalove", [("2026-03-10T09:00:00+01:00", {"notebooks/01_ancestral_sampling.ipynb": starter}),
                                      ("2026-03-13T23:59:00+01:00", {"notebooks/01_ancestral_sampling.ipynb": answer}),
                                      ("2026-03-14T10:00:00+01:00", {"notebooks/01_ancestral_sampling.ipynb": later})])
    student_repo(remotes, "aturing", [("2026-03-15T02:59:00+01:00", {"01_ancestral_sampling.ipynb": answer})])
    student_repo(remotes, "jnunez", [("2026-03-12T08:00:00+00:00", {
        "notebooks/07_backprop.ipynb": ("link", "/etc/passwd"), "hw/03_kl_divergence.ipynb": later,
        b"notebooks/caf\xe9.ipynb": answer, "notebooks/05_gan_theory.ipynb": starter})])
    roster = tmp_path / "classroom_roster.csv"
    roster.write_text('"identifier","github_username","github_id","name"\n"s001","adalove","11","Ada Lovelace"\n'
                      '"s002","aturing","12","Alan Turing"\n"s003","jnunez","13","José Núñez"\n'
                      '"s004","","","Grace Hopper"\n"s005","ghost","15","Nobody"\n')
    out = tmp_path / "submissions"
    collect.main(["github", str(roster), "--course", str(course_file(tmp_path)), "--out", str(out),
                  "--repo-template", f"file://{remotes}/{{org}}/{{assignment}}-{{github}}.git"])
    assert layout(out) == {"s001": None, "s001/01_ancestral_sampling.ipynb": answer,
                           "s002": None, "s002/01_ancestral_sampling.ipynb": answer,
                           "s003": None, "s003/05_gan_theory.ipynb": starter, "s003/caf_.ipynb": answer,
                           "s004": None, "s005": None}
    students = collected(out)["students"]
    assert students["s001"] == {"name": "Ada Lovelace", "submitted": "2026-03-13T23:59:00+01:00",
                                "files": ["01_ancestral_sampling.ipynb"],
                                "problems": [
                                    "1 later commit not collected: the last commit at or before the deadline counts"]}
    assert students["s002"] == {"name": "Alan Turing", "submitted": "2026-03-15T02:59:00+01:00",
                                "files": ["01_ancestral_sampling.ipynb"], "problems": [
                                    "nothing was committed before the deadline: the latest commit was collected, late"]}
    assert students["s003"] == {"name": "José Núñez", "submitted": "2026-03-12T09:00:00+01:00",
                                "files": ["05_gan_theory.ipynb", "caf_.ipynb"], "problems": [
                                    "hw/03_kl_divergence.ipynb is not at the top or in notebooks/: not collected",
                                    "notebooks/07_backprop.ipynb is a symbolic link: not collected"]}
    assert students["s004"] == {**NOTHING, "problems": ["no GitHub username in the roster", "nothing handed in"]}
    assert students["s005"]["files"] == [] and students["s005"]["problems"][0].startswith(
        f"the repository file://{remotes}/dgm/hw1-ghost.git could not be cloned")


def plain_env(tmp_path) -> dict:
    """The instructor's shell: no make of ours around it."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VENV")}


def test_make_collect_as_the_guide_types_it(tmp_path):
    guide = (ROOT / "docs" / "instructors.md").read_text()
    assert "make collect FROM=canvas:~/Downloads/submissions.zip SUBMISSIONS=~/hw1/submissions\n" in guide
    out = tmp_path / "hw1" / "submissions"
    done = subprocess.run(["make", "--no-print-directory", "collect", f"FROM=canvas:{canvas_zip(tmp_path)}",
                           f"SUBMISSIONS={out}", f"COURSE={course_file(tmp_path)}"], cwd=ROOT,
                          env=plain_env(tmp_path), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"ready for make grade SUBMISSIONS={out}" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == [".collected.json", ".unmatched", "s001", "s002", "s003", "s004"]
    assert json.loads((out / ".collected.json").read_text())["source"] == "canvas"


@pytest.mark.parametrize("argv, said", [
    (["collect", "SUBMISSIONS=x"], "make collect needs FROM=canvas:<zip>"),
    (["collect", "FROM=blackboard:x.zip", "SUBMISSIONS=x"], "make collect needs FROM=canvas:<zip>"),
    (["collect", "FROM=canvas:nowhere.zip", "SUBMISSIONS=x"], "FROM=canvas:nowhere.zip: no file nowhere.zip"),
    (["collect", "FROM=canvas:course.toml"], "make collect needs SUBMISSIONS=<a new folder>"),
    (["collect", "FROM=canvas:course.toml", "SUBMISSIONS=x", "COURSE=none.toml"], "no course file none.toml"),
])
def test_make_collect_checks_its_arguments_before_installing(tmp_path, argv, said):
    env = {**plain_env(tmp_path), "VENV": str(tmp_path / "no-venv-here")}
    done = subprocess.run(["make", "--no-print-directory", *argv, f"VENV={tmp_path / 'no-venv-here'}"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and said in done.stderr, done.stdout + done.stderr
    assert not (tmp_path / "no-venv-here").exists()
