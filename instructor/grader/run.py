"""Stage 3 of grading: run one job (one student's notebook) in the sandbox, then measure it with the grader's own code.

A job is plain data (the rebuilt notebook, the student's exported answers, the settings), so that it runs the same
in this process, in a local pool or on a Dask worker. In its own fresh folder, the job
  1. runs the hidden tests' probes on the student's exported answers (probing.py, probes.py: sandboxed, in folders
     of their own; a probe that hangs or kills its process costs that test only: the rest run again in a fresh
     process; a probe that carries another question's answer runs beside only those that carry the same), the model
     tests' probes training the grader's models with the student's functions on the training digits (06's by the
     notebook's own training cell, whose checkpoint is then laid where the notebook's run loads it: trained once),
  2. checks the probes' outputs and measures the trained models on the test digits, outside the sandbox (score.py),
  3. executes the notebook (kernel.py: the kernel sandboxed, the executed copy kept here) for the TAs: its figures,
     its errors and what it saves are evidence, never points,
and returns what it measured. The sandbox is given the training and validation digits only (bank/digits.py). The
folder is deleted; nothing of the job outlives it.
"""
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import nbformat
import torch

from answers import export
from tools import nbcells

from . import bank, kernel, sandbox, score, unsandboxed
from .bank import digits
from .launch import DIGITS, disk_watch, reaper, sandbox_env, visible_paths
from .probing import run_probes
from .reference import Reference


class GraderFailure(Exception):
    """The grader, not the submission, cannot run a job here (a worker without a working sandbox, say)."""


@cache
def worker_problem() -> str | None:
    """Why this process cannot run sandboxed jobs (checked once per worker), or None."""
    return sandbox.problem()


@dataclass
class Settings:
    """How a class is graded: the same for every job."""
    mode: str = "quick"
    cell_timeout: float = 600
    notebook_timeout: float = sandbox.Limits.wall_seconds   # one place for the default: the sandbox's limits
    sandboxed: bool = True
    threads: int = 1
    execute_notebooks: bool = True                   # False for `make key`, which measures the models only
    key_version: str = ""
    key: dict = field(default_factory=dict)          # model test name -> the reference run's value
    limits: sandbox.Limits = field(default_factory=sandbox.Limits)


@dataclass
class Job:
    """One student's notebook, ready to run: everything the worker needs, as data."""
    student: str
    slug: str
    notebook: str                      # stem, e.g. 04_vae
    packed: bytes                      # the notebook to run, as zlib-compressed JSON: a class's jobs are held at once
    answers: dict                      # module name -> text: every exported answer module of this student
    written: dict = field(default_factory=dict)
    problems: list = field(default_factory=list)

    @staticmethod
    def pack(notebook: dict) -> bytes:
        return zlib.compress(json.dumps(notebook).encode())

    @property
    def rebuilt(self) -> dict:
        """The notebook to run (nbformat as a dict)."""
        return json.loads(zlib.decompress(self.packed))

    def cache_key(self, settings: Settings) -> str:
        """What decides the job's result: its notebook, the answers it imports, the key and the mode."""
        text = json.dumps([self.student, self.slug, self.notebook, [c["source"] for c in self.rebuilt["cells"]],
                           self.answers, self.written, self.problems, settings.key_version, settings.key,
                           settings.mode, settings.cell_timeout, settings.notebook_timeout, settings.sandboxed,
                           settings.execute_notebooks,
                           asdict(settings.limits)], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def exported_answers(notebooks: dict, notes: dict | None = None) -> dict:
    """module name -> exported text, for each of a student's rebuilt notebooks (unparseable answers are left out:
    the probes then report the import error as the student's). `notes` (stem -> sentences) receives each name the
    answers use and no answer cell defines or imports: the probes import the answers alone, without the given cells."""
    modules, notes = {}, ({} if notes is None else notes)
    for stem, nb in notebooks.items():
        said = notes.setdefault(stem, [])

        def note(line: str, said=said) -> None:
            if "which no answer cell defines or imports" in line:
                name = line.split("`")[1]
                said.append(f"your answers use `{name}`, which no answer cell defines or imports: the hidden tests "
                            "import your answers without the given cells, so import it in the answer cell that "
                            "uses it")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{stem}.ipynb"
            nbformat.write(nb, path)
            try:
                text = export.module_text(path, report=note)
            except Exception:                          # a parser's MemoryError included: the student's problem
                text = 'raise SyntaxError("an answer cell of this notebook does not parse")\n'
        if text:
            modules[export.module_name(Path(f"{stem}.ipynb"))] = text
    return modules


def figures(nb: nbformat.NotebookNode) -> dict:
    """grade_id -> the PNG images (base64) of each figure answer cell of an executed notebook."""
    found = {}
    for cell in nb.cells:
        meta = nbcells.grading(cell)
        if cell.cell_type == "code" and meta.get("grade") and meta.get("solution"):
            found[meta["grade_id"]] = [o["data"]["image/png"] for o in cell.get("outputs", [])
                                       if "image/png" in o.get("data", {})][:6]
    return found


def heading_above(nb: nbformat.NotebookNode, index: int) -> str:
    """The last Markdown heading at or before cell `index`: how a reader finds a cell (Jupyter numbers no cell)."""
    for cell in reversed(nb.cells[:index + 1]):
        if cell.cell_type == "markdown":
            headings = [line.lstrip("#").strip() for line in cell.source.splitlines() if line.startswith("#")]
            if headings:
                return headings[-1][:80]
    return "the notebook's title"


def cell_errors(nb: nbformat.NotebookNode, errors: list) -> list:
    """Each cell that raised, in words the feedback may show: the message only for the student's own answer cells."""
    shown = []
    for error in errors:
        cell = nb.cells[error.index]
        grade_id = nbcells.grading(cell).get("grade_id")
        if grade_id:
            shown.append(f"your answer cell {grade_id} raised {error.ename}: {error.evalue[:200]}")
        else:
            shown.append(f"a given cell under \"{heading_above(nb, error.index)}\" raised {error.ename}; an answer "
                         "above it is the likely cause")
    return shown


def run_job(job: Job, settings: Settings) -> dict:
    """Run one job (see the module's docstring); returns its measurements as plain data."""
    if settings.sandboxed and (problem := worker_problem()):
        raise GraderFailure(f"no sandbox on {socket.gethostname()}: {problem}")
    tests = bank.tests(job.notebook)
    ref, verdicts, measured, started, wall_start = Reference(), [], {}, time.monotonic(), time.time()
    snapshot = None if settings.sandboxed else unsandboxed.guard()
    deadline = started + settings.notebook_timeout     # the probes and the notebook share the notebook's time
    # mkdtemp and rmtree, not TemporaryDirectory: its cleanup follows links when it resets permissions (CVE-2023-6597)
    work = Path(tempfile.mkdtemp(prefix=f"dgm-job-{job.slug[:20]}-"))
    control = Path(tempfile.mkdtemp(prefix="dgm-control-"))
    try:
        (control / "lib" / "answers").mkdir(parents=True)
        (control / "lib" / "answers" / "__init__.py").write_text("")
        for name, text in job.answers.items():
            (control / "lib" / "answers" / f"{name}.py").write_text(text)
        (work / "out").mkdir()
        torch.save(digits.given_to_the_sandbox(), control / DIGITS)
        handed = {}
        if tests:
            results, inputs, handed = run_probes(tests, job, control, settings, deadline)
            for test in tests:
                if isinstance(test, bank.ModelTest):
                    verdict, measured[test.name] = score.evaluate_trained(
                        test, results[test.name], settings.key.get(test.name), ref, digits.grader_digits())
                    verdicts.append(verdict)
                else:
                    verdicts.append(score.judge(test, inputs[test.name], results[test.name], ref))
        if settings.execute_notebooks:
            if any(digits.CLASSIFIER in "".join(c["source"]) for c in job.rebuilt["cells"] if c["cell_type"] == "code"):
                given = work / "out" / "checkpoints" / digits.CLASSIFIER  # the course's classifier, trained once
                given.parent.mkdir()
                given.write_bytes(digits.classifier_checkpoint(settings.mode))
            for relative, content in handed.items() if settings.mode == "quick" else ():   # trained in quick settings
                target = work / "out" / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            run = kernel.execute_notebook(nbformat.from_dict(job.rebuilt), workdir=work,
                                          readonly=visible_paths(control), env=sandbox_env(work, control, settings),
                                          limits=settings.limits, cell_timeout=settings.cell_timeout,
                                          sandboxed=settings.sandboxed,
                                          notebook_timeout=max(1.0, deadline - time.monotonic()),
                                          watch=disk_watch(work, settings))
        else:
            run = kernel.RunResult(nbformat.from_dict(job.rebuilt), "ok", message="not executed: models measured only")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(control, ignore_errors=True)
    damage = []
    if snapshot is not None:
        reaper().reap()                    # every process of the job is dead before the grader's files are put back
        damage = snapshot.restore()
    return {"student": job.student, "slug": job.slug, "notebook": job.notebook, "status": run.status,
            "status_message": run.message.splitlines()[0][:200] if run.message else "",
            "errors": cell_errors(run.notebook, run.errors), "verdicts": [asdict(v) for v in verdicts],
            "written": job.written, "figures": figures(run.notebook), "problems": job.problems, "measured": measured,
            "damage": damage,
            "executed": run.notebook, "seconds": round(time.monotonic() - started, 1),
            "worker": f"{socket.gethostname()}:{os.getpid()}", "interval": [wall_start, time.time()]}
