"""From a submissions folder to the list of jobs: each student's notebooks rebuilt on the release, their answers
exported, every problem named."""
import re
from functools import cache
from pathlib import Path

import nbformat

from answers import export
from instructor import release

from . import bank, plan, rebuild
from .run import Job, exported_answers

ROOT = Path(__file__).resolve().parents[2]


@cache
def released(stem: str) -> nbformat.NotebookNode:
    """The exercise notebook `stem` as the release has it, built here, in memory, from its solution notebook."""
    return release.strip_notebook(ROOT / "notebooks" / f"{stem}.ipynb", release.exporter())


@cache
def reference_answers() -> dict:
    """module name -> the solution's exported answers (answers/*.py): what a notebook imports of the others."""
    return {path.stem: path.read_text() for path in sorted((ROOT / "answers").glob("*.py"))
            if path.stem not in ("__init__", "export")}


@cache
def imported(stem: str) -> set:
    """The answer modules that notebook `stem` imports (04: 02's and 03's), read from the release's code."""
    code = "\n".join(c.source for c in released(stem).cells if c.cell_type == "code")
    return set(re.findall(r"^\s*from answers\.(\w+) import", code, re.M)) & set(reference_answers())


def jobs_for(student: plan.Student) -> list:
    """The student's jobs: every handed-in notebook rebuilt on the release, with its own exported answers and the
    reference answers of the notebooks it imports, so that it scores the same whether the ones it builds on (04 on
    02 and 03) are handed in, right, wrong or broken."""
    rebuilt = {stem: rebuild.rebuild(released(stem), nb) for stem, nb in student.notebooks.items()}
    notes = {}
    own = exported_answers({stem: r.notebook for stem, r in rebuilt.items()}, notes)
    jobs = []
    for stem, r in sorted(rebuilt.items()):
        module = export.module_name(Path(f"{stem}.ipynb"))
        answers = {name: reference_answers()[name] for name in imported(stem) - {module}}
        if module in own:
            answers[module] = own[module]
        jobs.append(Job(student.name, student.slug, stem, Job.pack(r.notebook), answers, r.written,
                        r.problems + notes.get(stem, [])))
    return jobs


def not_handed_in(student: plan.Student, notebook: str) -> dict:
    """The result of a notebook a student did not hand in: every test at 0, said once."""
    return {"student": student.name, "slug": student.slug, "notebook": notebook, "status": "missing",
            "status_message": "not handed in", "errors": [], "problems": [], "written": {}, "figures": {},
            "executed": None, "seconds": 0,
            "verdicts": [{"question": t.question, "notebook": t.notebook, "test": t.name,
                          "description": t.description, "points": t.points, "earned": 0.0,
                          "message": "not handed in", "detail": ""} for t in bank.tests(notebook)]}
