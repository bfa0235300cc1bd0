"""`make bench`, part 2 (python -m instructor.bench.grading): how fast the grader grades, and what Dask costs.

A class of copies of the solution notebooks (complete submissions, unless --notebooks names a subset) is graded once
per route, each into a fresh grades folder with no cache: in this process one notebook after the other (the direct
route), then on a Dask LocalCluster of 1 and of 2 workers (--routes picks some). For each route it prints the wall
seconds per submission, submissions per hour and the CPU seconds per submission (the grader and every process it
starts, sandboxed ones included, where a cpuacct cgroup can be made; on a machine shared with other work the wall
time stretches, the CPU time much less); for the direct route, the seconds of each notebook (the job's own time, from
its result); then Dask's overhead against the direct route, 2 workers against 1, and what a class of N students takes
on W workers from the figures just measured. docs/instructors.md quotes these lines.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from instructor import course_model
from instructor.bench.profile import count_descendants, cpu, leave_group

ROOT = Path(__file__).resolve().parents[2]
ROUTES = {"direct": (1, False), "dask1": (1, True), "dask2": (2, True)}
NAMES = {"direct": "direct, 1 at a time", "dask1": "Dask, 1 worker", "dask2": "Dask, 2 workers"}


def make_class(folder: Path, students: int, notebooks: list) -> Path:
    for number in range(students):
        student = folder / f"student{number:03d}"
        student.mkdir(parents=True)
        for stem in notebooks:
            shutil.copy(ROOT / "notebooks" / f"{stem}.ipynb", student / f"{stem}.ipynb")
    return folder


def grade(submissions: Path, workers: int, dask: bool) -> dict:
    """One `make grade`-equivalent run into a fresh grades folder: its wall and CPU seconds, and each job's result."""
    with tempfile.TemporaryDirectory(prefix="dgm-bench-grades-") as grades:
        env = {**os.environ, "DASK_SCHEDULER": ""}
        command = [sys.executable, "-m", "instructor.grader", "grade", str(submissions), "--grades", grades,
                   "--jobs", str(workers)]
        if dask and workers == 1:
            env["DGM_FORCE_DASK"] = "1"          # a one-worker LocalCluster, to time Dask against the direct route
        start, used = time.perf_counter(), cpu()
        subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        wall, used = time.perf_counter() - start, cpu() - used
        results = json.loads((Path(grades) / "details.json").read_text())["results"]
    return {"wall": wall, "cpu": used, "results": results}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=2)
    parser.add_argument("--notebooks", nargs="*", default=None, help="stems (default: every graded notebook)")
    parser.add_argument("--routes", nargs="*", default=list(ROUTES), choices=list(ROUTES))
    args = parser.parse_args(argv)
    try:
        return bench(args.students, args.notebooks, args.routes)
    finally:
        leave_group()


def bench(students: int, notebooks: list | None, routes: list) -> int:
    notebooks = notebooks or course_model.load().graded_notebooks()
    counted = count_descendants()
    with tempfile.TemporaryDirectory(prefix="dgm-bench-class-") as tmp:
        submissions = make_class(Path(tmp), students, notebooks)
        print(f"\ngrading {students} submissions of {len(notebooks)} notebook(s) each, {os.cpu_count()} CPU cores, "
              f"quick settings, sandboxed; load average {os.getloadavg()[0]:.1f} at the start")
        runs = {}
        for route in routes:
            runs[route] = grade(submissions, *ROUTES[route])
    print(f"{'route':<22} {'s per submission':>16} {'submissions/h':>14} "
          f"{'CPU s per submission' if counted else '(CPU time: no cpuacct cgroup here)':>21}")
    for route, run in runs.items():
        cpu_text = f"{run['cpu'] / students:21.0f}" if counted else ""
        print(f"  {NAMES[route]:<20} {run['wall'] / students:16.0f} {students * 3600 / run['wall']:14.1f} {cpu_text}")
    print(f"  load average at the end: {os.getloadavg()[0]:.1f}")
    first = runs.get("direct") or next(iter(runs.values()))
    print("seconds per notebook (each job's own time, mean over the students"
          + (", direct route):" if "direct" in runs else f", {NAMES[next(iter(runs))]}):"))
    by_notebook = {}
    for result in first["results"].values():
        if result.get("status") not in (None, "missing"):
            by_notebook.setdefault(result["notebook"], []).append(result["seconds"])
    for stem in notebooks:
        print(f"  {stem:<28} {statistics.mean(by_notebook.get(stem, [0])):6.1f}")
    job_seconds = sum(statistics.mean(s) for s in by_notebook.values())
    print(f"  {'all notebooks, one after the other':<28} {job_seconds:6.1f}  (the rest of a submission's time is the "
          "grader's own start, rebuilding and the reports)")
    if "direct" in runs and "dask1" in runs:
        direct, one = runs["direct"]["wall"], runs["dask1"]["wall"]
        print(f"  Dask's overhead against the direct route: {(one - direct) / direct:+.1%} "
              f"({(one - direct) / students:+.1f} s per submission)")
    if "dask1" in runs and "dask2" in runs:
        print(f"  2 workers against 1: {runs['dask1']['wall'] / runs['dask2']['wall']:.2f}x faster")
    one_worker = runs.get("dask1") or first
    for what, seconds in (("wall seconds, at this machine's load", one_worker["wall"] / students),
                          ("CPU seconds: the floor on idle cores", one_worker["cpu"] / students if counted else None)):
        if seconds:
            print(f"a class of N students on W workers, a core each ({what}): about N x {seconds:.0f} s / W; 500 "
                  f"students: {500 * seconds / 3600:.1f} h on 1 worker, {500 * seconds / 16 / 3600:.1f} h on 16, "
                  f"{500 * seconds / 64 / 60:.0f} min on 64")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
