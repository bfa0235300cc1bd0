"""`make run`: execute notebooks so that an interrupted or failing run loses nothing and a repeated run changes nothing.

Each notebook runs in a fresh kernel (nbclient) on a copy; only when every cell succeeded is the executed notebook
moved over the committed one, and its records (written to a staging folder during the run) replace
results/<notebook>.json as one set. The terminal shows which section runs and the training bars as they move; the
notebook keeps each bar's final line only, without timings, and no execution timestamps or widget state, so that
re-running an unchanged tree leaves `git status` clean. On another CPU the last digits of floating-point results
differ: a figure whose pixels differ only in a handful of places, and records whose numbers agree to 1e-5, keep their
committed bytes (tools/repeatable.py).
"""
import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from helpers import records, runtime
from tools import repeatable

ROOT = Path(__file__).resolve().parent.parent


class Runner(NotebookClient):
    """nbclient's client, echoing the section that runs and every stream to the terminal as it arrives."""

    def __init__(self, nb, **kwargs):
        super().__init__(nb, on_cell_start=self.announce, **kwargs)
        self.section = None

    def announce(self, cell, cell_index):
        if cell.cell_type == "markdown":
            headings = [line.lstrip("#").strip() for line in cell.source.split("\n") if re.match(r"#{1,2} ", line)]
            self.section = headings[0] if headings else self.section
        elif cell.cell_type == "code":
            total = sum(c.cell_type == "code" for c in self.nb.cells)
            number = sum(c.cell_type == "code" for c in self.nb.cells[:cell_index + 1])
            print(f"\r  cell {number}/{total}" + (f" · {self.section[:70]}" if self.section else ""), end="",
                  flush=True)

    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] == "stream" and "\r" in msg["content"]["text"]:
            text = msg["content"]["text"]
            print("\n    " + text.strip("\r\n").split("\r")[-1], end="", flush=True)   # the bar's newest state
        return super().output(outs, msg, display_id, cell_index)


def execute(notebook: Path, kernel: str, timeout: int | None) -> float:
    """Run one notebook; on success replace it and its records atomically. Returns the seconds it took."""
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{notebook.stem}-", dir=runtime.results_dir()))
    sockets = Path(tempfile.mkdtemp(prefix="dgm-kernel-"))
    os.environ[runtime.STAGING_VARIABLE] = str(staging)
    os.environ[runtime.PLAIN_PROGRESS_VARIABLE] = "1"
    start = time.perf_counter()
    try:
        committed = nbformat.read(notebook, as_version=4)
        nb = nbformat.read(notebook, as_version=4)
        for cell in nb.cells:  # timestamps of earlier runs would differ from run to run
            cell.metadata.pop("execution", None)
        nb.metadata.pop("widgets", None)
        # local sockets, not TCP: no port to take, and no "running over TCP without encryption" warning
        manager = KernelManager(kernel_name=kernel, transport="ipc", ip=str(sockets / "kernel"))
        try:
            Runner(nb, km=manager, timeout=timeout, record_timing=False, store_widget_state=False,
                   coalesce_streams=True, resources={"metadata": {"path": str(notebook.parent)}}).execute()
        finally:
            if manager.has_kernel:          # nbclient shuts down only the kernels it started itself
                manager.shutdown_kernel(now=True)
        print("\r", end="")
        repeatable.keep_unchanged_figures(committed, nb)
        runtime.write_atomically(notebook, lambda tmp: nbformat.write(nb, tmp))
        staged, target = staging / f"{notebook.stem}.json", runtime.results_dir() / f"{notebook.stem}.json"
        if staged.exists():
            if target.exists() and repeatable.same_records(records.read_records(target), records.read_records(staged)):
                staged.unlink()
            else:
                os.replace(staged, target)
    finally:
        for folder in (staging, sockets):
            for leftover in folder.glob("*"):
                leftover.unlink()
            folder.rmdir()
        del os.environ[runtime.STAGING_VARIABLE]
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
            message = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
            print(f"\n{notebook} failed; it and its records were left as they were.\n{message}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"\ninterrupted: {notebook} and its records were left as they were.", file=sys.stderr)
            return 130
        print(f"  done in {seconds:.0f} s" + " " * 60, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
