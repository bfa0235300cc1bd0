"""Stage 3a of grading: the hidden tests' probes of one job, each group in a sandboxed process and folder of its own
(probes.py runs there); a model test may hand a file over to the notebook's run (06's generator: its checkpoint,
which the notebook's `trained(...)` then loads instead of training it again)."""
from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from answers import export

from . import bank, score
from .bank import digits
from .launch import spawn

if TYPE_CHECKING:
    from .run import Job, Settings

PROBES = Path(__file__).with_name("probes.py")
NOTEBOOK_OUTPUT = "notebook"  # in the probes' folder: where a model test runs the notebook's cells (DGM_OUTPUT)
HANDED_BYTES = 16 * 2**20      # the largest checkpoint a probe may hand over (06's generator: 1.7 MB)


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
