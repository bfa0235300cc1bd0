"""`make bench`, part 2 (python -m instructor.bench.grading): how fast the grader grades, and what Dask costs.

A class of copies of the solution notebooks (complete submissions, unless --notebooks names a subset) is graded
three times, each into a fresh grades folder with no cache: in this process one notebook after the other (the direct
route), then on a Dask LocalCluster of 1 and of 2 workers. It prints submissions per hour for each, the seconds of
notebook time per submission, and Dask's overhead against the direct route on the same class; docs/instructors.md
turns them into the time for N students on W workers.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from instructor import course_model

ROOT = Path(__file__).resolve().parents[2]


def make_class(folder: Path, students: int, notebooks: list) -> Path:
    for number in range(students):
        student = folder / f"student{number:03d}"
        student.mkdir(parents=True)
        for stem in notebooks:
            shutil.copy(ROOT / "notebooks" / f"{stem}.ipynb", student / f"{stem}.ipynb")
    return folder


def grade(submissions: Path, workers: int, dask: bool) -> float:
    """Wall seconds of one `make grade`-equivalent run into a fresh grades folder."""
    with tempfile.TemporaryDirectory(prefix="dgm-bench-grades-") as grades:
        env = {**os.environ, "DASK_SCHEDULER": ""}
        command = [sys.executable, "-m", "instructor.grader", "grade", str(submissions), "--grades", grades,
                   "--jobs", str(workers)]
        if dask and workers == 1:
            env["DGM_FORCE_DASK"] = "1"          # a one-worker LocalCluster, to time Dask against the direct route
        start = time.perf_counter()
        subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=2)
    parser.add_argument("--notebooks", nargs="*", default=None, help="stems (default: every graded notebook)")
    args = parser.parse_args(argv)

    notebooks = args.notebooks or course_model.load().graded_notebooks()
    with tempfile.TemporaryDirectory(prefix="dgm-bench-class-") as tmp:
        submissions = make_class(Path(tmp), args.students, notebooks)
        print(f"grading {args.students} submissions of {len(notebooks)} notebook(s) each, "
              f"{os.cpu_count()} CPU cores, quick settings, sandboxed")
        direct = grade(submissions, 1, dask=False)
        one = grade(submissions, 1, dask=True)
        two = grade(submissions, 2, dask=True)
    per_hour = {name: args.students * 3600 / seconds for name, seconds in
                (("direct, 1 at a time", direct), ("Dask, 1 worker", one), ("Dask, 2 workers", two))}
    for name, rate in per_hour.items():
        print(f"  {name:<20} {rate:7.1f} submissions per hour")
    print(f"  notebook time per submission (direct): {direct / args.students:.0f} s")
    print(f"  Dask's overhead against the direct route: {(one - direct) / direct:+.1%} "
          f"({(one - direct) / args.students:+.1f} s per submission)")
    print(f"  2 workers against 1: {one / two:.2f}x faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
