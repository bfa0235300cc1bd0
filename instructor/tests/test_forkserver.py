"""A probe process forked from the fork server into its sandbox is confined as one that bubblewrap started: what it
sees, what it may do, the limits it runs under, and nothing that outlives it or reaches the next one."""
import json
import os
import re
import resource
import shutil
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from instructor.grader import forking, launch, probing, run, sandbox

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(sandbox.problem() is not None, reason=f"no sandbox here: {sandbox.problem()}")

# What a probe reports of its own process, read from inside the sandbox.
LOOKS_AROUND = '''
def probe(module, inputs):
    import ctypes, os
    status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\\t" in line)
    fds = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
           if os.path.exists(f"/proc/self/fd/{fd}") or os.path.islink(f"/proc/self/fd/{fd}")}
    libc = ctypes.CDLL(None, use_errno=True)
    return {"uid": status["Uid"].split()[0], "caps": [status[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd",
            "CapAmb")], "no_new_privs": status["NoNewPrivs"], "pids": sorted(int(p) for p in os.listdir("/proc")
            if p.isdigit()), "me": os.getpid(), "sockets": [t for t in fds.values() if "socket" in t],
            "fds": sorted(int(fd) for fd in fds), "grader_visible": os.path.exists(inputs["grader"]),
            "new_user_namespace": libc.unshare(0x10000000), "hostname": os.uname().nodename, "cwd": os.getcwd(),
            "marked": hasattr(os, "dgm_mark"), "forked": b"forkserver.py" in open("/proc/self/cmdline", "rb").read(),
            "home": os.environ.get("HOME"), "argv": __import__("sys").argv[1:],
            "limits": {name: __import__("resource").getrlimit(getattr(__import__("resource"), name))
                       for name in ("RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_NOFILE")}}
'''
MARKS_THE_SERVERS_COPY = '''
def probe(module, inputs):
    import os
    os.dgm_mark = True                  # in this fork's copy of the fork server's memory only
    return {"marked": True}
'''
FORKS_MANY = '''
def probe(module, inputs):
    import subprocess
    started = []
    try:
        for _ in range(inputs["n"]):
            started.append(subprocess.Popen(["sleep", "30"]))
    except OSError:
        pass
    return {"started": len(started)}
'''
TAKES_MEMORY = '''
def probe(module, inputs):
    block = bytearray(inputs["bytes"])
    block[::4096] = b"x" * len(block[::4096])      # touched: real memory, not address space only
    return {"held": len(block)}
'''
LEAVES_A_DAEMON = '''
def probe(module, inputs):
    import os, subprocess
    if inputs["how"] == "detached":
        subprocess.Popen(["sleep", "1000"], start_new_session=True)
    else:
        os.system("sleep 1000 &")
    return {"left": True}
'''


STARTS_AS = '''
def probe(module, inputs):
    import os, resource, signal, sys
    return {"signals": [str(signal.getsignal(number)) for number in signal.valid_signals()],
            "path": sys.path, "argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd(), "uid": os.getuid(),
            "bytecode": sys.dont_write_bytecode, "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd"))[:3],
            "limits": [list(resource.getrlimit(getattr(resource, name))) for name in dir(resource)
                       if name.startswith("RLIMIT_")], "main": sys.modules["__main__"].__file__}
'''


def probe_job(tmp_path: Path, source: str, inputs: dict, settings: run.Settings, timeout: float = 60,
              forked: bool = True) -> dict | None:
    """Run one probe as probe_processes does (its harness forked into a fresh sandbox); its result, or None."""
    folder, runner, control = (tmp_path / name for name in ("folder", "runner", "control"))
    for path in (folder / "probes", runner, control / "lib" / "answers"):
        path.mkdir(parents=True)
    (control / "lib" / "answers" / "__init__.py").write_text("")
    (control / "lib" / "answers" / "empty.py").write_text("")
    shutil.copy(probing.PROBES, runner / "probes.py")
    torch.save({"module": "empty", "path": str(control / "lib"), "tests": [
        {"name": "t", "source": source, "inputs": inputs, "seconds": 60, "trains": False}]}, runner / "job.pt")
    launch.spawn([sys.executable, str(runner / "probes.py"), str(runner / "job.pt"), str(folder / "probes")], folder,
              control, settings, timeout, progress=lambda: len(list((folder / "probes").iterdir())), runner=runner,
              forked=forked)
    result = run.score.read_result(folder / "probes" / "t.pt", folder)
    return result["outputs"] if result and "outputs" in result else result


def test_a_forked_probe_is_confined_as_one_that_bubblewrap_started(tmp_path):
    settings = run.Settings(cell_timeout=60)
    seen = probe_job(tmp_path / "a", LOOKS_AROUND, {"grader": str(ROOT / "instructor" / "grader")}, settings)
    assert seen is not None and "error" not in seen, seen
    assert seen["forked"], "the probe ran as a program of its own, not forked from the fork server"
    assert seen["uid"] == str(sandbox.SANDBOX_ID) and seen["hostname"] == "sandbox"
    assert seen["caps"] == ["0000000000000000"] * 5 and seen["no_new_privs"] == "1"
    assert seen["new_user_namespace"] != 0                    # bwrap's --disable-userns holds for it too
    assert len(seen["pids"]) == 3 and seen["me"] in seen["pids"], seen["pids"]   # bwrap, the door, itself
    assert seen["sockets"] == [] and seen["fds"] == [0, 1, 2], seen["fds"]
    assert not seen["grader_visible"]
    assert seen["cwd"] == str((tmp_path / "a" / "folder").resolve()) and seen["home"] == seen["cwd"]
    assert seen["argv"][0].endswith("job.pt")
    door = sandbox.Limits()
    assert seen["limits"]["RLIMIT_FSIZE"] == [door.file_bytes] * 2 and seen["limits"]["RLIMIT_NOFILE"] == [1024] * 2


def test_a_forked_probe_starts_as_the_program_would(tmp_path):
    """The same probe forked and started as a program: the same path, arguments, variables, folder and limits."""
    settings = run.Settings(cell_timeout=60)
    seen = {forked: probe_job(tmp_path / str(forked), STARTS_AS, {}, settings, forked=forked)
            for forked in (True, False)}
    for forked, outputs in seen.items():
        assert outputs is not None and "error" not in outputs, outputs
        text = json.dumps(outputs).replace(str((tmp_path / str(forked)).resolve()), "<area>")
        seen[forked] = json.loads(re.sub(r" at 0x[0-9a-f]+", "", text))
    assert seen[True]["env"] == seen[False]["env"]
    assert seen[True] == seen[False]


def test_what_a_forked_probe_changes_in_its_copy_of_the_server_reaches_no_later_probe(tmp_path):
    settings = run.Settings(cell_timeout=60)
    assert probe_job(tmp_path / "a", MARKS_THE_SERVERS_COPY, {}, settings) == {"marked": True}
    seen = probe_job(tmp_path / "b", LOOKS_AROUND, {"grader": "/"}, settings)
    assert seen["forked"] and seen["marked"] is False


def test_a_forked_probe_runs_under_the_jobs_process_and_memory_limits(tmp_path):
    few = run.Settings(cell_timeout=60, limits=sandbox.Limits(processes=20))
    assert probe_job(tmp_path / "a", FORKS_MANY, {"n": 60}, few)["started"] < 20
    small = run.Settings(cell_timeout=60, limits=sandbox.Limits(memory_bytes=2**30))
    held = probe_job(tmp_path / "b", TAKES_MEMORY, {"bytes": 3 * 2**30}, small)
    assert held is None or "error" in held, held                  # killed, or refused: never 3 GB held


@pytest.mark.parametrize("how", ["detached", "in the background of a shell"])
def test_nothing_a_forked_probe_starts_outlives_its_sandbox_nor_keeps_it(tmp_path, how):
    """The sandbox ends when the probe's process does, as when a program ends (its cell time is a minute here)."""
    settings = run.Settings(cell_timeout=60)
    before = {p.pid for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "1000"]}
    started = time.monotonic()
    assert probe_job(tmp_path / "a", LEAVES_A_DAEMON, {"how": how}, settings, timeout=60) == {"left": True}
    time.sleep(0.5)
    after = {p.pid for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", "1000"]}
    assert after <= before and time.monotonic() - started < 15


def test_without_its_fork_server_a_probe_runs_as_a_program_of_its_own(tmp_path):
    settings = run.Settings(cell_timeout=60)
    assert probe_job(tmp_path / "a", MARKS_THE_SERVERS_COPY, {}, settings) == {"marked": True}
    for server in [p for p in psutil.process_iter(["cmdline"]) if "forkserver.py" in " ".join(p.info["cmdline"] or [])
                   and p.ppid() == psutil.Process().pid]:
        server.kill()
        server.wait()
    seen = probe_job(tmp_path / "b", LOOKS_AROUND, {"grader": "/"}, settings)
    assert seen["uid"] == str(sandbox.SANDBOX_ID) and seen["argv"][0].endswith("job.pt") and seen["marked"] is False
    assert not seen["forked"]


def test_with_more_than_one_thread_for_the_libraries_nothing_is_forked():
    """Their thread pools, started when torch is imported, would be missing in a fork: such jobs start programs."""
    assert forking.usable({"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}) is None
    assert forking.usable({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}) is not None


def test_no_file_of_the_grading_process_reaches_a_forked_probe_whatever_its_number(tmp_path):
    """The fork server's channel takes whatever number the grader had free, here above the sandbox's 1024 files."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    forking.server.cache_clear()                 # a server of its own, started while 1100 files are open
    held = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    try:
        seen = probe_job(tmp_path / "a", LOOKS_AROUND, {"grader": "/"}, run.Settings(cell_timeout=60))
    finally:
        for fd in held:
            os.close(fd)
        forking.server.cache_clear()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert seen["forked"] and seen["sockets"] == [] and seen["fds"] == [0, 1, 2], seen["fds"]
