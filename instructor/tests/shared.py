"""What several test files build alike, built once per version of the code and shared between pytest-xdist's workers.

`make test` runs each file in one worker (`--dist loadfile`), so a session fixture would still build once per
worker. `once(name, build)` builds into a folder under the system's temporary folder instead, keyed by a digest of
every file of the work tree that git tracks or would track (so any change of the code, the notebooks or the tests
builds again), under a file lock: the first worker builds, the others wait and read. Nothing is written in the work
tree. What is built must be read only by the tests that share it (each copies what it changes).
"""
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from functools import cache
from pathlib import Path

from filelock import FileLock

ROOT = Path(__file__).resolve().parents[2]
KEEP_SECONDS = 6 * 3600          # other versions' builds are removed once unused this long


@cache
def code_digest() -> str:
    """A digest of the content of every file git tracks or would track here (untracked files that are not ignored
    included), as the work tree has it now."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    digest = hashlib.sha256()
    for name in sorted(n for n in names if n):
        path = ROOT / os.fsdecode(name)
        digest.update(name + b"\0")
        if path.is_file() and not path.is_symlink():
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:20]


def area() -> Path:
    """This work tree's folder of shared builds (work trees of one repository never share one)."""
    where = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"dgm-tests-{os.getuid()}-{where}"


def once(name: str, build) -> Path:
    """The folder `name` built by `build(folder)` for this version of the code: built by the first caller, then read."""
    base = area()
    base.mkdir(parents=True, exist_ok=True)
    version = base / code_digest()
    version.mkdir(exist_ok=True)
    folder, done = version / name, version / f"{name}.done"
    with FileLock(str(version / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            build(folder)
            done.touch()
        os.utime(version)
    forget_old(base, keep=version)
    return folder


def forget_old(base: Path, keep: Path) -> None:
    """Remove the builds of other versions of the code that no run has used for KEEP_SECONDS."""
    for other in base.iterdir():
        try:
            if other != keep and time.time() - other.stat().st_mtime > KEEP_SECONDS:
                shutil.rmtree(other, ignore_errors=True)
        except OSError:
            pass


def release(repository: str) -> Path:
    """`make student STUDENT_REPO=<repository>`'s release folder, for this version of the code."""
    import sys

    def build(folder: Path) -> None:
        result = subprocess.run([sys.executable, "-m", "instructor.release", "--out", str(folder), "--repository",
                                 repository], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout + result.stderr

    return once("release-" + hashlib.sha256(repository.encode()).hexdigest()[:12], build)
