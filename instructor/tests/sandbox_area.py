"""What the sandbox tests share: a job folder beside an outside folder, and ways to look at what a run left."""
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psutil

from instructor.grader import sandbox


class Area:
    """A job folder (bound writable) next to an outside folder with a secret (never bound), and a snapshot of it."""

    def __init__(self, tmp_path: Path) -> None:
        """Create both folders and remember the outside as it is."""
        self.job, self.outside = tmp_path / "job", tmp_path / "outside"
        self.job.mkdir()
        self.outside.mkdir()
        self.secret = self.outside / "secret.txt"
        self.secret.write_text("the-answer-key-" + uuid.uuid4().hex)
        self.before = self.snapshot()   # tests that add things outside take it again

    def snapshot(self) -> dict:
        """Every path under the test's folder outside the job, with its size, mtime and mode."""
        return {str(p): (p.lstat().st_size, p.lstat().st_mtime_ns, p.lstat().st_mode)
                for p in self.job.parent.rglob("*") if self.job not in (p, *p.parents)}

    def unchanged(self) -> bool:
        """Whether nothing outside the job folder changed since the snapshot."""
        return self.snapshot() == self.before

    def run(self, code: str, limits: sandbox.Limits | None = None, env: dict | None = None,
            readonly: list | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run `code` with this environment's python in the sandbox; return what it printed."""
        argv = sandbox.command([sys.executable, "-c", textwrap.dedent(code)], writable=self.job,
                               readonly=readonly or [], env=env or {}, limits=limits or sandbox.Limits())
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def alive(marker: str, settle: float = 2.0) -> list[int]:
    """Processes (other than this one) whose command line holds `marker`, after up to `settle` s for them to end."""
    deadline = time.monotonic() + settle
    while True:
        found = [p.pid for p in psutil.process_iter(["cmdline"])
                 if p.pid != os.getpid() and marker in "\0".join(p.info["cmdline"] or [])]
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def attempts(calls: list) -> str:
    """Code that makes each call (Python statements) and prints `worked` if it did, `blocked` if it raised OSError."""
    return "".join(f"try:\n    {call}\n    print('worked', {call!r})\nexcept OSError:\n    print('blocked', {call!r})\n"
                   for call in calls)
