"""How the grader starts a job's processes (the probes' runner, a program of the tests) and watches them: in the
sandbox or only limited, with the job's variables and the folders it may read, killed at a hang, past its time or
past its disk limit, with everything inside."""
from __future__ import annotations

import os
import subprocess
import time
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from helpers import cpu

from . import forking, sandbox

if TYPE_CHECKING:
    from .run import Settings

ROOT = Path(__file__).resolve().parents[2]
DIGITS = "digits.pt"          # in the control folder: the digits the sandbox may read


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
