"""Where a notebook's grading time goes: `python -m instructor.bench.profile [--notebooks 03_kl_divergence ...]`.

Grades one submission of the solution notebooks, quick settings, sandboxed, one notebook after the other in this
process (the direct route of `make grade`), and times each stage of each job by wrapping the grader's functions (the
grader itself is unchanged): the probes (each probe process, sandbox start and torch's import included), the kernel's
start, each cell (the cells that train, those that call `trained(`, apart), the checks and the model evaluations
outside the sandbox, and the executed copy's writing. Before that, it times what every sandboxed process pays before
it runs anything of a job: bubblewrap's start, Python's, and importing torch and the notebooks' helpers there.

Each figure is wall seconds and CPU seconds (this process and the children it waited for): on a loaded machine the
wall time stretches, the CPU time much less.
"""
import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


CPUACCT = Path("/sys/fs/cgroup/cpuacct")
_group: list = []          # the cpuacct cgroup this process moved into, if it could


def count_descendants() -> bool:
    """Move this process into a fresh cgroup v1 `cpuacct` group, which every descendant joins at birth: its usage is
    then the CPU time of this process and of all it starts, sandboxed processes included (bubblewrap does not hand
    its children's CPU time back to the waiting parent, so getrusage misses it). False where that cannot be done."""
    group = CPUACCT / f"dgm-profile-{os.getpid()}"
    try:
        group.mkdir()
        (group / "cgroup.procs").write_text(f"{os.getpid()}\n")
    except OSError:
        return False
    _group.append(group)
    return True


def leave_group() -> None:
    for group in _group:
        try:
            (CPUACCT / "cgroup.procs").write_text(f"{os.getpid()}\n")
            group.rmdir()
        except OSError:
            pass


def cpu() -> float:
    """CPU seconds of this process and its descendants (see count_descendants), else of this process and the children
    it has waited for."""
    if _group:
        return int((_group[0] / "cpuacct.usage").read_text()) / 1e9
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Clock:
    """Wall and CPU seconds summed per (notebook, stage)."""

    def __init__(self) -> None:
        self.wall, self.cpu, self.count = defaultdict(float), defaultdict(float), defaultdict(int)
        self.notebook = ""

    def add(self, stage: str, wall: float, used: float) -> None:
        key = (self.notebook, stage)
        self.wall[key] += wall
        self.cpu[key] += used
        self.count[key] += 1

    def wrap(self, owner, name: str, stage: str) -> None:
        """Time every call of owner.name as `stage`."""
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            wall, used = time.perf_counter(), cpu()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - wall, cpu() - used)
        setattr(owner, name, timed)

    def wrap_async(self, owner, name: str, stage) -> None:
        """Time every await of owner.name as `stage` (a string, or a function of the call's arguments)."""
        original = getattr(owner, name)

        async def timed(*args, **kwargs):
            wall, used = time.perf_counter(), cpu()
            try:
                return await original(*args, **kwargs)
            finally:
                self.add(stage(*args, **kwargs) if callable(stage) else stage, time.perf_counter() - wall,
                         cpu() - used)
        setattr(owner, name, timed)


def sandboxed(argv: list, folder: Path) -> tuple:
    """(wall, CPU) seconds of one sandboxed process, started as the grader starts its probe processes."""
    from instructor.grader import launch, run, sandbox

    settings = run.Settings()
    command = sandbox.command(argv, writable=folder, readonly=[ROOT / "helpers"],
                              env=launch.sandbox_env(folder, folder, settings), limits=settings.limits, cwd=folder)
    wall, used = time.perf_counter(), cpu()
    subprocess.run(command, cwd=folder, env={"PATH": "/usr/bin:/bin"}, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - wall, cpu() - used


def start_costs(repeats: int = 3) -> dict:
    """Median (wall, CPU) of what a sandboxed process pays before it runs any of a job's code."""
    costs = {}
    with tempfile.TemporaryDirectory(prefix="dgm-profile-") as tmp:
        folder = Path(tmp)
        (folder / "out").mkdir()
        for label, argv in (("bubblewrap, running /bin/true", ["/bin/true"]),
                            ("+ Python, doing nothing", [sys.executable, "-c", "pass"]),
                            ("+ import torch", [sys.executable, "-c", "import torch"]),
                            ("+ import helpers (torch, matplotlib, ...), as a notebook's first cell",
                             [sys.executable, "-c", "import helpers"])):
            runs = [sandboxed(argv, folder) for _ in range(repeats)]
            costs[label] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
    return costs


def trains(cell, nb) -> bool:
    """Whether a cell trains a model: it calls `trained(` or `train_classifier(`, or a function that a cell calling
    `trained(` defines (04's `train_vae`)."""
    names = {"trained", "train_classifier"}
    for other in nb.cells:
        if other.cell_type == "code" and "trained(" in other.source:
            names |= set(re.findall(r"^def (\w+)\(", other.source, re.M))
    return any(re.search(rf"(?<![\w.]){name}\(", line) for name in names
               for line in cell.source.splitlines() if not line.lstrip().startswith("def "))


def instrument(clock: Clock) -> None:
    """Wrap the grader's stages (see the module's docstring)."""
    from instructor.grader import __main__ as grader
    from instructor.grader import jobs, kernel, probing, report, run, score

    original_run_job = run.run_job

    def run_job(job, settings):
        clock.notebook = job.notebook
        wall, used = time.perf_counter(), cpu()
        try:
            return original_run_job(job, settings)
        finally:
            clock.add("whole job (run_job)", time.perf_counter() - wall, cpu() - used)
    run.run_job = run_job
    import instructor.grader.cluster as cluster
    cluster.run_job = run_job
    clock.wrap(run, "run_probes", "probes (all of their processes, the model tests' training included)")
    clock.wrap(probing, "spawn", "probe processes started")
    clock.wrap(kernel, "execute_notebook", "notebook run (kernel start to kill)")
    clock.wrap_async(kernel.CappedClient, "async_start_new_kernel_client", "kernel start (until it answers)")
    clock.wrap_async(kernel.CappedClient, "async_execute_cell",
                     lambda self, cell, *a, **k: "cells that train" if trains(cell, self.nb) else "other cells")
    clock.wrap(score, "judge", "checks of the probes' outputs")
    clock.wrap(score, "evaluate_trained", "model evaluations")
    clock.wrap(jobs, "jobs_for", "rebuild and export (per submission)")
    clock.wrap(grader, "write_outputs", "reports and executed copies (per submission)")
    original_write_text = report.write_text

    def write_text(path, text):
        if Path(path).parent.name and Path(path).suffix == ".ipynb" and "executed" in Path(path).parts:
            clock.notebook = Path(path).stem
            wall, used = time.perf_counter(), cpu()
            try:
                return original_write_text(path, text)
            finally:
                clock.add("executed copy written", time.perf_counter() - wall, cpu() - used)
        return original_write_text(path, text)
    report.write_text = write_text


STAGES = ["probes (all of their processes, the model tests' training included)", "probe processes started",
          "kernel start (until it answers)",
          "other cells", "cells that train", "notebook run (kernel start to kill)", "checks of the probes' outputs",
          "model evaluations", "executed copy written", "whole job (run_job)"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--notebooks", nargs="*", default=None, help="stems (default: every graded notebook)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    from instructor import course_model

    notebooks = args.notebooks or course_model.load().graded_notebooks()
    try:
        return profile(notebooks, args.json)
    finally:
        leave_group()


def profile(notebooks: list, json_path: Path | None) -> int:
    from instructor.grader import __main__ as grader

    counted = count_descendants()
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the start; CPU time "
          + ("of this process and every process it starts (a cpuacct cgroup)" if counted else
             "of this process and its waited-for children only (no cpuacct cgroup here: sandboxed processes missed)"))
    print("what a sandboxed process pays before a job's code runs (median of 3; wall s, CPU s):")
    for label, (wall, used) in start_costs().items():
        print(f"  {label:<72} {wall:6.2f} {used:6.2f}")
    clock = Clock()
    instrument(clock)
    with tempfile.TemporaryDirectory(prefix="dgm-profile-class-") as tmp:
        student = Path(tmp) / "submissions" / "reference"
        student.mkdir(parents=True)
        for stem in notebooks:
            shutil.copy(ROOT / "notebooks" / f"{stem}.ipynb", student / f"{stem}.ipynb")
        wall, used = time.perf_counter(), cpu()
        code = grader.main(["grade", str(student.parent), "--grades", str(Path(tmp) / "grades"), "--jobs", "1"])
        total = (time.perf_counter() - wall, cpu() - used)
    print(f"\none submission of {len(notebooks)} solution notebook(s), graded one after the other (wall s / CPU s; "
          f"load average {os.getloadavg()[0]:.1f} at the end):")
    header = f"{'stage':<40}" + "".join(f"{stem[:2]:>13}" for stem in notebooks)
    print(header)
    for stage in STAGES:
        cells = [f"{clock.wall.get((s, stage), 0):6.1f}/{clock.cpu.get((s, stage), 0):5.1f}"
                 if (s, stage) in clock.wall else f"{'-':>12}" for s in notebooks]
        counts = {clock.count.get((s, stage), 0) for s in notebooks}
        suffix = f" (x{max(counts)})" if stage == "probe processes started" else ""
        print(f"{stage + suffix:<40}" + "".join(f"{c:>13}" for c in cells))
    for stage in ("rebuild and export (per submission)", "reports and executed copies (per submission)"):
        seconds = [(clock.wall[k], clock.cpu[k]) for k in clock.wall if k[1] == stage]
        print(f"{stage:<60} {sum(s[0] for s in seconds):6.1f}/{sum(s[1] for s in seconds):5.1f}")
    print(f"{'the whole grade command, in this process':<60} {total[0]:6.1f}/{total[1]:5.1f}")
    if json_path:
        json_path.write_text(json.dumps({"total": total, "stages": [
            {"notebook": k[0], "stage": k[1], "wall": clock.wall[k], "cpu": clock.cpu[k], "count": clock.count[k]}
            for k in clock.wall]}, indent=1))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
