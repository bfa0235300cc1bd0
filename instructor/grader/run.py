"""Stage 3 of grading: run one job (one student's notebook) in the sandbox, then measure it with the grader's own code.

A job is plain data (the rebuilt notebook, the student's exported answers, the settings), so that it runs the same
in this process, in a local pool or on a Dask worker. In its own fresh folder, the job
  1. runs the hidden tests' probes on the student's exported answers (probes.py, sandboxed, in folders of their
     own; a probe that hangs or kills its process costs that test only: the rest run again in a fresh process; a
     probe that carries another question's answer runs beside only those that carry the same), the model tests'
     probes training the grader's models with the student's functions on the training digits (06's by the notebook's
     own training cell, whose checkpoint is then laid where the notebook's run loads it: trained once),
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
import stat
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path

import nbformat
import torch

from answers import export
from helpers import cpu
from tools import nbcells

from . import bank, forking, kernel, sandbox, score, unsandboxed
from .bank import digits
from .reference import Reference

ROOT = Path(__file__).resolve().parents[2]
PROBES = Path(__file__).with_name("probes.py")
DIGITS = "digits.pt"          # in the control folder: the digits the sandbox may read
NOTEBOOK_OUTPUT = "notebook"  # in the probes' folder: where a model test runs the notebook's cells (DGM_OUTPUT)
HANDED_BYTES = 16 * 2**20      # the largest checkpoint a probe may hand over (06's generator: 1.7 MB)


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


def sandbox_env(work: Path, control: Path, settings: Settings) -> dict:
    """The job's variables: the grader's own CPU path for PyTorch (helpers/cpu.py), so that the probes, which import
    torch before anything else, round as the grader's process and the notebooks do."""
    pinned = {name: value for name, value in os.environ.items() if name in cpu.PINNED or name == cpu.PATH_VARIABLE}
    return {**pinned, "DGM_MODE": settings.mode, "DGM_DATA_SOURCE": "given", "DGM_DATA_FILE": str(control / DIGITS),
            "DGM_OUTPUT": str(work / "out"),
            "PYTHONPATH": f"{control / 'lib'}:{ROOT}", "OMP_NUM_THREADS": str(settings.threads),
            "MKL_NUM_THREADS": str(settings.threads)}


def visible_paths(control: Path) -> list:
    """What the sandbox shows beyond the job's folder, read-only: the helpers the notebooks import, and the job's
    control folder (the student's exported answers, with the reference answers of the notebooks it imports, and the
    digits it may read: what the job must read but never replace). Never the notebooks, the solutions, the results,
    the checkpoints, the key, the grader, the hidden tests of other processes or .git."""
    return [ROOT / "helpers", control]


BLOCK = 4096          # what the smallest file or folder takes of a disk, whatever its size says


def folder_usage(folder: Path, cap_bytes: int, cap_files: int) -> tuple:
    """(bytes, entries) under `folder` (links not followed), each file or folder at least one block, counted up to
    just past either cap: a scan stops early rather than walk what a job made to be slow to walk."""
    total, count, todo = 0, 0, [folder]
    while todo and total <= cap_bytes and count <= cap_files:
        try:
            with os.scandir(todo.pop()) as entries:
                for entry in entries:
                    count += 1
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
                        total += BLOCK
                    else:
                        total += max(BLOCK, entry.stat(follow_symlinks=False).st_size)
                    if total > cap_bytes or count > cap_files:
                        break
        except OSError:
            continue
    return total, count


def disk_watch(work: Path, settings: Settings):
    """The watchdog of a job's folder: the limit it went over, in words, or None."""
    limits = settings.limits

    def over() -> str | None:
        used, entries = folder_usage(work, limits.disk_bytes, limits.files)
        if used > limits.disk_bytes:
            return f"its folder took more than {limits.disk_bytes // 2**20} MB of disk"
        if entries > limits.files:
            return f"its folder held more than {limits.files:,} files and folders"
        return None
    return over


def spawn(argv: list, work: Path, control: Path, settings: Settings, timeout: float, progress=None,
          runner: Path | None = None, forked: bool = False) -> None:
    """Run argv sandboxed (or only limited, without the sandbox) within `timeout`, within a cell's time of the last
    change of `progress()`, and within the disk limit; a hang is killed, with everything inside. `runner`: a folder
    shown read-only to this process alone. `forked`: argv is a Python program, which the fork server forks into the
    sandbox where it can (forking.py), instead of a new Python importing torch again."""
    env = sandbox_env(work, control, settings)
    process = None
    if settings.sandboxed:
        readonly = visible_paths(control) + ([runner] if runner else [])
        if forked:
            process = forking.start(argv, work, readonly, env, settings.limits, cwd=work)
        if process is None:
            command = sandbox.command(argv, writable=work, readonly=readonly, env=env,
                                      limits=settings.limits, cwd=work)
        popen_env = {"PATH": "/usr/bin:/bin"}
    else:
        command, popen_env = sandbox.limited(argv, settings.limits), {**sandbox.base_env(work), **env}
    if process is None:
        process = subprocess.Popen(command, cwd=work, env=popen_env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline, seen, changed, over = time.monotonic() + timeout, None, time.monotonic(), disk_watch(work, settings)
    try:
        while process.poll() is None:
            try:
                now = progress() if progress else None
            except OSError:                            # the job replaced what progress() looks at: no progress
                now = seen
            if now != seen:
                seen, changed = now, time.monotonic()
            if time.monotonic() > min(deadline, changed + settings.cell_timeout) or over():
                break
            time.sleep(0.2)
    finally:
        if process.poll() is None:                     # whatever ended the wait, nothing of the job outlives it
            process.kill()
        process.wait()
        if not settings.sandboxed:
            reaper().reap()                            # a detached grandchild of the job dies here


@cache
def reaper() -> sandbox.Reaper:
    """This worker process as the subreaper of what unsandboxed jobs leave behind (one per process)."""
    return sandbox.Reaper()


def probe_groups(tests: list) -> list:
    """The tests as the processes that run them: first those whose probes carry no other question's answer, then
    one process for each set of carried answers (`bank.runs_alone`), holding only the probes that carry exactly that
    set: the answers a probe carries are never within reach of code graded for a question whose probe lacks them;
    and one for each model test that hands a file over to the notebook's run, alone: what its process could read
    (its own probe and inputs, no other test's) is all that file could carry to the kernel."""
    groups = {frozenset(): []}
    for test in tests:
        own = isinstance(test, bank.ModelTest) and test.hands_over     # what its process can read may reach the kernel
        groups.setdefault(("hands over", test.name) if own else test.carried, []).append(test)
    return [group for group in groups.values() if group]


def run_probes(tests: list, job: Job, control: Path, settings: Settings, deadline: float) -> tuple:
    """(test name -> the probe's result, or None when it never finished; the inputs; the files the probes hand over
    to the notebook's run, by their path under its output folder), each group of `probe_groups` in a process and
    folder of its own."""
    inputs = {t.name: score.draw_inputs(t, score.seed_for(settings.key_version, job.slug, t.name)) for t in tests}
    module = export.module_name(Path(f"{job.notebook}.ipynb"))
    results, handed = {}, {}
    for group in probe_groups(tests):
        results.update(probe_processes(group, module, inputs, control, settings, deadline, handed))
    return {t.name: results.get(t.name) for t in tests}, inputs, handed


def handed_over(path: Path, folder: Path, limit: int = HANDED_BYTES) -> bytes | None:
    """The bytes of a file a probe saved for the notebook's run: a regular file of at most `limit` bytes, reached from
    `folder` one name at a time through no link (each opened relative to the last, so that nothing the job's
    processes might still rename while they are being killed can point the grader elsewhere); else None (the
    notebook then trains its model itself)."""
    try:
        parts = Path(path).relative_to(folder).parts
        at = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except (ValueError, OSError):
        return None
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=at)
            os.close(at)
            at = inner
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=at)
    except (OSError, IndexError):
        return None
    finally:
        os.close(at)
    with os.fdopen(fd, "rb") as f:
        found = os.fstat(f.fileno())
        if not stat.S_ISREG(found.st_mode) or found.st_size > limit:
            return None
        content = f.read(limit + 1)
    return content if len(content) <= limit else None


def holds_the_measured_model(content: bytes, outputs) -> bool:
    """True when a handed-over checkpoint, read as data (score.safe_load), holds exactly the weights the probe
    returned, those the grader measures: the notebook's run then shows the model that was scored, never another."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "checkpoint.pt"
        path.write_bytes(content)
        payload = score.safe_load(path, Path(folder), HANDED_BYTES)
    try:
        saved, state = payload["state_dict"], outputs["state"]
        return saved.keys() == state.keys() and all(torch.equal(saved[k], state[k]) for k in state)
    except Exception:                         # not a checkpoint, or not of that model
        return False


def probe_processes(tests: list, module: str, inputs: dict, control: Path, settings: Settings,
                    deadline: float, handed: dict | None = None) -> dict:
    """Run `tests` until each reports or kills its process (a test that hangs or crashes is not run again, the tests
    after it are), in a fresh folder with a job file that no other process sees: the notebook's kernel, which runs
    after, sees neither the probes' code nor what they wrote, but for the files that model tests hand over (read
    into `handed`, by their path under the notebook's output folder, when their test reported)."""
    folder = Path(tempfile.mkdtemp(prefix="dgm-probes-"))
    runner = Path(tempfile.mkdtemp(prefix="dgm-runner-"))
    hands_over = [t for t in tests if isinstance(t, bank.ModelTest) and t.hands_over]
    try:
        out = folder / "probes"
        out.mkdir()
        for test in hands_over:     # the notebook's cells run there (quick), with the classifier they load laid
            inputs[test.name]["output"] = str(folder / NOTEBOOK_OUTPUT)
            given = folder / NOTEBOOK_OUTPUT / "checkpoints" / digits.CLASSIFIER
            given.parent.mkdir(parents=True, exist_ok=True)
            given.write_bytes(digits.classifier_checkpoint("quick"))
        shutil.copy(PROBES, runner / "probes.py")
        results, remaining = {}, list(tests)
        while remaining and time.monotonic() < deadline:
            torch.save({"module": module, "path": str(control / "lib"), "tests": [
                {"name": t.name, "source": t.probe_source, "inputs": inputs[t.name], "seconds": settings.cell_timeout,
                 "trains": isinstance(t, bank.ModelTest)} for t in remaining]}, runner / "job.pt")
            spawn([sys.executable, str(runner / "probes.py"), str(runner / "job.pt"), str(out)], folder, control,
                  settings, deadline - time.monotonic(), progress=lambda: len(list(out.iterdir())), runner=runner,
                  forked=True)
            before = len(remaining)
            for test in list(remaining):
                result = score.read_result(out / f"{test.name}.pt", folder)
                if result is not None or (out / f"{test.name}.started").exists():
                    results[test.name] = result        # None: it started and never reported (a hang, a crash)
                    remaining.remove(test)
            if len(remaining) == before:
                break                                  # nothing started at all: running again would not help
        for test in hands_over:
            if handed is not None and results.get(test.name) and "outputs" in results[test.name]:
                found = handed_over(folder / NOTEBOOK_OUTPUT / test.hands_over, folder)
                if found is not None and holds_the_measured_model(found, results[test.name]["outputs"]):
                    handed[test.hands_over] = found
        return results
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(runner, ignore_errors=True)


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
