"""`make run`: execute notebooks so that an interrupted or failing run loses nothing and a repeated run changes nothing.

Each notebook runs in a fresh kernel on a copy; only when every cell succeeded is the executed notebook moved over the
committed one, and its records (written to a staging folder during the run) replace results/<notebook>.json as one
set. No execution timestamps or widget state are stored, and progress bars are written as plain text without timings,
so re-running an unchanged tree leaves `git status` clean.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbconvert.preprocessors import CellExecutionError, ExecutePreprocessor

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from helpers import runtime  # noqa: E402


def execute(notebook: Path, kernel: str, timeout: int | None) -> float:
    """Run one notebook; on success replace it and its records atomically. Returns the seconds it took."""
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{notebook.stem}-", dir=runtime.results_dir()))
    os.environ[runtime.STAGING_VARIABLE] = str(staging)
    os.environ[runtime.PLAIN_PROGRESS_VARIABLE] = "1"
    start = time.perf_counter()
    try:
        nb = nbformat.read(notebook, as_version=4)
        for cell in nb.cells:  # timestamps of earlier runs would differ from run to run
            cell.metadata.pop("execution", None)
        nb.metadata.pop("widgets", None)
        executor = ExecutePreprocessor(timeout=timeout, kernel_name=kernel, record_timing=False,
                                       store_widget_state=False, coalesce_streams=True)
        executor.preprocess(nb, {"metadata": {"path": str(notebook.parent)}})
        runtime.write_atomically(notebook, lambda tmp: nbformat.write(nb, tmp))
        staged = staging / f"{notebook.stem}.json"
        if staged.exists():
            os.replace(staged, runtime.results_dir() / staged.name)
    finally:
        for leftover in staging.glob("*"):
            leftover.unlink()
        staging.rmdir()
        del os.environ[runtime.STAGING_VARIABLE]
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--kernel", default="python3")
    parser.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: none)")
    args = parser.parse_args(argv)
    runtime.results_dir().mkdir(parents=True, exist_ok=True)
    for notebook in args.notebooks:
        print(f"running {notebook} ({runtime.mode()} settings)", flush=True)
        try:
            seconds = execute(notebook.resolve(), args.kernel, args.timeout)
        except CellExecutionError as error:
            print(f"\n{notebook} failed; it and its records were left as they were.\n{error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"\ninterrupted: {notebook} and its records were left as they were.", file=sys.stderr)
            return 130
        print(f"  done in {seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
