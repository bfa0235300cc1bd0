"""Attacks a submission could make on the grader, each run in the sandbox and asserted to fail without changing
anything outside the job's own folder; and the kernel runner's statuses, timeouts and caps."""
import json
import os
import resource
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from instructor.grader import kernel, sandbox

pytestmark = pytest.mark.skipif(sandbox.problem() is not None, reason=f"no sandbox here: {sandbox.problem()}")
ROOT = Path(__file__).resolve().parents[2]


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


@pytest.fixture
def area(tmp_path):
    """A fresh job folder and outside folder."""
    return Area(tmp_path)


def alive(marker: str, settle: float = 2.0) -> list[int]:
    """Processes (other than this one) whose command line holds `marker`, after up to `settle` s for them to end."""
    deadline = time.monotonic() + settle
    while True:
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if marker.encode() in cmdline.read_bytes() and int(cmdline.parent.name) != os.getpid():
                    found.append(int(cmdline.parent.name))
            except OSError:
                pass
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def attempts(calls: list) -> str:
    """Code that makes each call (Python statements) and prints `worked` if it did, `blocked` if it raised OSError."""
    return "".join(f"try:\n    {call}\n    print('worked', {call!r})\nexcept OSError:\n    print('blocked', {call!r})\n"
                   for call in calls)


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


# A notebook cell that starts a detached process (its own session) holding `marker`
SPAWN = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)  # {}'], " \
        "start_new_session=True)"


def execute(area: Area, *sources: str, **overrides):
    """Run a notebook with one code cell per source in the kernel sandbox of `area`, with short timeouts."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(textwrap.dedent(s)) for s in sources])
    options = dict(workdir=area.job, readonly=[], env={"DGM_MODE": "quick"}, limits=sandbox.Limits(),
                   cell_timeout=20, notebook_timeout=40)
    return kernel.execute_notebook(nb, **{**options, **overrides})


def texts(result) -> list[str]:
    """Each cell's outputs as one string."""
    return ["".join(o.get("text", "") + str(o.get("data", "")) + o.get("ename", "") for o in cell.outputs)
            for cell in result.notebook.cells]


def test_kernel_runs_a_notebook(area):
    """A four-cell notebook runs in the sandbox with the job's environment, and its outputs and figures come back."""
    result = execute(area, "import os; print(os.getuid(), os.getcwd())", "print(os.environ['DGM_MODE'])", "6 * 7",
                     "import matplotlib.pyplot as plt; plt.plot([1, 2]);")
    assert result.status == "ok" and result.errors == [], result.message
    assert texts(result)[:3] == [f"65534 {area.job}\n", "quick\n", "{'text/plain': '42'}"] and area.unchanged()
    assert "image/png" in result.notebook.cells[3].outputs[0]["data"]        # figures come back for the TAs


def test_kernel_cannot_reach_the_runners_status(area):
    """The kernel cannot write the runner's status or copy, finds only its own ipc sockets, and forges nothing."""
    status = area.outside / "status.json"
    status.write_text(json.dumps({"status": "pending"}))
    area.before = area.snapshot()
    forge = attempts([f"open({str(p)!r}, 'w').write('ok')" for p in (status, area.outside / "copy.ipynb")])
    result = execute(area, forge + textwrap.dedent("""
    import json, os, ipykernel
    folder, info = os.path.dirname(ipykernel.get_connection_file()), json.load(open(ipykernel.get_connection_file()))
    own = {f"{info['ip']}-{info[name]}" for name in info if name.endswith('_port')}
    print('foreign', sorted({f'{folder}/{n}' for n in os.listdir(folder) if n not in ('kernel.json', 'ipython')} - own))
    open(ipykernel.get_connection_file(), 'w').write('{}')
    """), "raise ValueError('a real error')")
    assert result.status == "errors" and [e.ename for e in result.errors] == ["ValueError"], result.message
    assert texts(result)[0].count("blocked") == 2 and "foreign []" in texts(result)[0], texts(result)
    assert json.loads(status.read_text()) == {"status": "pending"} and area.unchanged()


def test_kernel_cell_timeout(area):
    """A cell that loops forever stops the run with status "timeout" soon after cell_timeout."""
    result = execute(area, "print('start')", "while True: pass", "print('never')", cell_timeout=2)
    assert result.status == "timeout" and "cell" in result.message, result.message
    assert result.seconds < 15 and "never" not in "".join(texts(result))


def test_kernel_notebook_timeout_kills_everything(area):
    """Past notebook_timeout the run stops with "timeout", and the kernel's sandbox (a detached child too) is gone."""
    marker = f"dgm-nbtimeout-{uuid.uuid4().hex}"
    result = execute(area, SPAWN.format(marker), *["import time; time.sleep(1)"] * 20, notebook_timeout=4)
    assert result.status == "timeout" and "notebook" in result.message, result.message
    assert result.seconds < 15 and alive(marker) == [] and area.unchanged()


def test_kernel_exit_is_a_crash(area):
    """A cell calling os._exit kills the kernel: status "crash", later cells not run."""
    result = execute(area, "print('before')", "import os; os._exit(3)", "print('after')")
    assert result.status == "crash" and texts(result)[0] == "before\n" and "after" not in texts(result)[2], result


def test_kernel_continues_after_an_error(area):
    """With allow_errors a failing cell is recorded and the next cell still runs; without, the run stops there."""
    result = execute(area, "1 / 0", "print('next ran')")
    assert result.status == "errors" and texts(result)[1] == "next ran\n", result.message
    assert [(e.index, e.ename, e.evalue) for e in result.errors] == [(0, "ZeroDivisionError", "division by zero")]
    stopped = execute(area, "1 / 0", "print('next ran')", allow_errors=False)
    assert stopped.status == "errors" and texts(stopped)[1] == ""


def test_kernel_outputs_are_capped(area):
    """Outputs over 1 MB are cut, past 20 MB dropped as they arrive (the runner stays small), saying so; the last
    cell first undoes the kernel's own cap on printing, as a submission may."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    uncapped = "import sys; sys.stdout.write = type(sys.stdout).write.__get__(sys.stdout)\n"
    result = execute(area, "print('x' * 3_000_000)", "for i in range(3000): print('y' * 999)", "print('small')",
                     uncapped + "for i in range(150): print('z' * 999_000, flush=True)")
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert result.status == "ok", result.message
    for cell in texts(result)[:2]:
        assert "truncated by the grader" in cell and len(cell) < kernel.OUTPUT_CAP + 200
    assert texts(result)[2] == "small\n" and "dropped by the grader" in texts(result)[3]
    assert len(json.dumps(result.notebook)) < kernel.NOTEBOOK_CAP
    assert grew < 100 * 1024, f"{grew} kB"     # the runner kept ~20 MB of the 150 MB, not all of it


def test_a_huge_print_costs_its_own_output_only(area):
    """200 MB printed at once is cut in the kernel: the cells after it run at once and keep their outputs."""
    started = time.monotonic()
    result = execute(area, "print('x' * 200_000_000)", "print('after')",
                     "import sys; print('y' * 30, file=sys.stderr)")
    assert result.status == "ok" and time.monotonic() - started < 30, result.message
    assert "truncated by the grader" in texts(result)[0] and len(texts(result)[0]) < kernel.OUTPUT_CAP + 200
    assert texts(result)[1:] == ["after\n", "y" * 30 + "\n"]


def test_kernel_without_sandbox_reaps_its_leftovers(area):
    """The opt-in unsandboxed runner (in a process of its own) still kills a detached process of the notebook."""
    marker = f"dgm-nosandbox-{uuid.uuid4().hex}"
    spawn = SPAWN.format(marker) + "; print('spawned')"
    script = f"""
import sys, nbformat
sys.path.insert(0, {str(ROOT)!r})
from instructor.grader import kernel, sandbox
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell({spawn!r})])
r = kernel.execute_notebook(nb, workdir={str(area.job)!r}, readonly=[], env={{}}, limits=sandbox.Limits(),
                            cell_timeout=20, notebook_timeout=40, sandboxed=False)
print(r.status, r.notebook.cells[0].outputs[0].text.strip())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90)
    assert "ok spawned" in result.stdout and alive(marker) == [], result.stdout + result.stderr
