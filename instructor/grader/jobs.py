"""From a submissions folder to the list of jobs: each student's notebooks rebuilt on the release, their answers
exported, every problem named. Also what the TAs grade by hand, read from the solution notebooks."""
from functools import cache
from pathlib import Path

import nbformat

from answers import export
from instructor import questions, release

from . import bank, plan, rebuild
from .run import Job, exported_answers

ROOT = Path(__file__).resolve().parents[2]


@cache
def released(stem: str) -> nbformat.NotebookNode:
    """The exercise notebook `stem` as the release has it, built here, in memory, from its solution notebook."""
    return release.strip_notebook(ROOT / "notebooks" / f"{stem}.ipynb", release.exporter())


def graded_notebooks() -> list:
    """The notebooks that ask questions (00 asks none)."""
    return sorted(questions.ids_by_notebook())


def manual_parts() -> dict:
    """(notebook, grade_id) -> (question id, points) of every part a TA grades: written answers and figures. The
    points come from the solution notebooks, never from a submission's metadata."""
    parts = {}
    for stem in graded_notebooks():
        for cell in nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4).cells:
            meta = export.grading(cell)
            if meta.get("solution") and meta.get("grade"):
                parts[(stem, meta["grade_id"])] = (export.question_of(cell), float(meta.get("points", 0)))
    return parts


def jobs_for(student: plan.Student) -> list:
    """The student's jobs: every handed-in notebook rebuilt on the release, with all their exported answers."""
    rebuilt = {stem: rebuild.rebuild(released(stem), nb) for stem, nb in student.notebooks.items()}
    answers = exported_answers({stem: r.notebook for stem, r in rebuilt.items()})
    return [Job(student.name, student.slug, stem, dict(r.notebook), answers, r.written, r.problems)
            for stem, r in sorted(rebuilt.items())]


def not_handed_in(student: plan.Student, notebook: str) -> dict:
    """The result of a notebook a student did not hand in: every test at 0, said once."""
    return {"student": student.name, "slug": student.slug, "notebook": notebook, "status": "missing",
            "status_message": "not handed in", "errors": [], "problems": [], "written": {}, "figures": {},
            "executed": None, "seconds": 0,
            "verdicts": [{"question": t.question, "notebook": t.notebook, "test": t.name,
                          "description": t.description, "points": t.points, "earned": 0.0,
                          "message": "not handed in", "detail": ""} for t in bank.tests(notebook)]}
