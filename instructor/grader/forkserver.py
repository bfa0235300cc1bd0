"""The sandboxed processes (the probes, the kernels) forked from one process that imported torch once, each into a
sandbox that bubblewrap made.

Every probe process and every kernel would otherwise import torch anew (1.5 to 2 seconds, 21 times a submission).
Here one process per grading process, the fork server, imports torch, the probes' harness, the kernel and `helpers`
(the notebooks' first import: matplotlib and its list of fonts) and then only forks; it never reads a request (a fork
of it does), so a fork holds nothing of any job. For each process to run, the grader starts a bubblewrap sandbox
exactly as for any other (sandbox.command) around a door, a `cat` that waits on a pipe, and sends the pipe's other
end here. The fork joins the door's confinement: first its cgroups and resource limits, then its namespaces (user,
mount, PID, network, IPC, UTS, cgroup), then the door's root; it forks once more to be inside the PID namespace, and
that second fork drops every capability, sets no_new_privs, closes every other file and runs its program as `python
<file> ...` or `python -m <module> ...` would. The first fork holds the door's pipe, outside the sandbox's processes,
until the program's process ends; then the door ends, and the sandbox with it, as when the program bubblewrap started
ends.

Hand-written because no maintained library enters an existing sandbox from a forked process: bubblewrap sets a
sandbox up and then executes a program, which would import torch again (the kernel's `setns(2)` is the documented way
in; `nsenter(1)` and `flatpak enter` do the same from a fresh program).

    python forkserver.py <socket fd> <pid of the grading process>        (started by forking.py, never by hand)
"""
import atexit
import ctypes
import fcntl
import json
import os
import resource
import runpy
import select
import shutil
import signal
import socket
import sys
import tempfile
import traceback

import ipykernel.kernelapp  # noqa: F401  (the kernel's own imports)
import probes  # noqa: F401  (and with it torch: what every fork starts from)
from sandbox import CGROUP_PREFIX, cgroup_mounts


def import_helpers() -> None:
    """Import `helpers`, every notebook's first import, with matplotlib and its list of the fonts (which a fresh
    HOME, as every sandbox has, would otherwise build again in each kernel): where the repository is on the path."""
    folder = tempfile.mkdtemp(prefix="dgm-forkserver-matplotlib-")
    os.environ["MPLCONFIGDIR"] = folder          # not HOME's, which the server has none of: no warning, no atexit
    try:
        import helpers  # noqa: F401
    except ImportError:                          # each program imports it itself
        pass
    finally:
        del os.environ["MPLCONFIGDIR"]
        shutil.rmtree(folder, ignore_errors=True)   # the fonts are listed in memory; nothing is written there later


import_helpers()

CLONE = {"user": 0x10000000, "cgroup": 0x02000000, "mnt": 0x00020000, "pid": 0x20000000, "net": 0x40000000,
         "ipc": 0x08000000, "uts": 0x04000000}
NS_GET_PARENT = 0xB702                   # ioctl: the user namespace that owns this one
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38
LIMITS = ("RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_NPROC")
libc = ctypes.CDLL(None, use_errno=True)
SITE = sys.path[1:]                      # the interpreter's own path, without this file's folder


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def call(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def join_cgroups(door: int) -> None:
    """Move this process into every cgroup of the door (the job's memory and process limits)."""
    mounts = cgroup_mounts()
    for line in open(f"/proc/{door}/cgroup").read().splitlines():
        _, names, relative = line.split(":", 2)
        mount = mounts.get("") if not names else next((mounts[n] for n in names.split(",") if n in mounts), None)
        if mount is not None and CGROUP_PREFIX in relative:
            with open(os.path.join(mount, relative.lstrip("/"), "cgroup.procs"), "w") as procs:
                procs.write(str(os.getpid()))


def enter(door: int) -> None:
    """Take the door's confinement: cgroups, resource limits, namespaces, root (see the module's docstring)."""
    join_cgroups(door)
    for name in LIMITS:
        which = getattr(resource, name)
        resource.setrlimit(which, resource.prlimit(door, which))
    spaces = {name: os.open(f"/proc/{door}/ns/{name}", os.O_RDONLY) for name in CLONE}
    root = os.open(f"/proc/{door}/root", os.O_RDONLY | os.O_DIRECTORY)
    mine = os.stat("/proc/self/ns/user").st_ino
    owner = fcntl.ioctl(spaces["user"], NS_GET_PARENT)    # bwrap --disable-userns nests the door's user namespace
    if os.fstat(owner).st_ino != mine:
        call(libc.setns(owner, CLONE["user"]), "setns(user namespace that owns the sandbox)")
    for name in ("cgroup", "mnt", "pid", "net", "ipc", "uts"):
        call(libc.setns(spaces[name], CLONE[name]), f"setns({name})")
    call(libc.setns(spaces["user"], CLONE["user"]), "setns(user)")
    os.fchdir(root)
    os.chroot(".")
    for fd in [*spaces.values(), owner, root]:
        os.close(fd)


def drop_privileges() -> None:
    """No capability left in any set, none to gain (bubblewrap's --cap-drop ALL), and no_new_privs."""
    for capability in range(64):
        libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)
    call(libc.capset(ctypes.byref(CapHeader(0x20080522, 0)), ctypes.byref((CapData * 2)())), "capset")
    call(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")


def become(request: dict, output: int | None) -> None:
    """This process as `python <argv>` would start in the sandbox: its files (output: its stdout and stderr, else
    /dev/null; no other file, whatever number the server's own had), session, variables and folder (its signals are
    Python's own: this server changes none)."""
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    for fd in (1, 2):
        os.dup2(null if output is None else output, fd)
    os.closerange(3, 2**31 - 1)                 # not up to RLIMIT_NOFILE: the door's limit is lower than the server's
    if sorted(map(int, os.listdir("/proc/self/fd"))) != [0, 1, 2, 3]:   # 3: the listing's own
        raise OSError("a file of the fork server is still open")
    os.setsid()
    os.environ.clear()
    os.environ.update(request["env"])
    if "matplotlib" in sys.modules and os.environ.get("MPLBACKEND"):
        sys.modules["matplotlib"].rcParams["backend"] = os.environ["MPLBACKEND"]   # as its import reads it
    os.chdir(request["cwd"])
    sys.dont_write_bytecode = True
    tempfile.tempdir = None


def run_program(argv: list) -> int:
    """Run `argv` ([python, file, ...] or [python, -m, module, ...]) in this process as Python would; its exit code."""
    arguments = argv[1:]
    first = os.getcwd() if arguments[0] == "-m" else os.path.dirname(os.path.abspath(arguments[0]))
    given = [first, *filter(None, os.environ.get("PYTHONPATH", "").split(":"))]
    sys.path[:] = given + [folder for folder in SITE if folder not in given]   # as site.py skips known folders
    code = 0
    try:
        if arguments[0] == "-m":
            sys.argv = [arguments[1], *arguments[2:]]
            runpy.run_module(arguments[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(arguments)
            runpy.run_path(arguments[0], run_name="__main__")
    except SystemExit as end:
        code = end.code if isinstance(end.code, int) else (0 if end.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    return code


def alive(pidfd: int) -> bool:
    """Whether the process of `pidfd` still runs (so its pid, read before, was not reused)."""
    try:
        signal.pidfd_send_signal(pidfd, 0)
        return True
    except ProcessLookupError:
        return False


def fork_into(channel: socket.socket, server_end: int, started: int) -> None:
    """The first fork: take the request (fds: the door's pipe, a pidfd of the door, maybe the output file), enter the
    door's sandbox, fork the program's process inside it, drop its own capabilities, write a byte to `started`,
    answer (status 0), then hold the door's pipe until that process ends and end with it: the sandbox ends as it does
    when the program bubblewrap started ends, and nothing inside can reach the pipe. A failure ends this fork with
    status 2 before the byte, and the server answers. Never returns."""
    try:
        os.close(server_end)
        message, fds, _, _ = socket.recv_fds(channel, 1 << 20, 3)
        request = json.loads(message)
        door_pipe, door, output = fds[0], fds[1], (fds[2] if len(fds) > 2 else None)
        enter(request["door"])
        if not alive(door):
            raise ProcessLookupError("the door ended before its sandbox was entered")
        program = os.fork()
        if program == 0:
            code = 1
            try:
                drop_privileges()
                become(request, output)
                code = run_program(request["argv"])
            finally:
                os._exit(code)
        drop_privileges()
        os.write(started, b"1")
        channel.send(json.dumps({"status": 0}).encode())
        for fd in [door, started, channel.detach(), *([output] if output is not None else [])]:
            os.close(fd)
        os.waitpid(program, 0)
        os.close(door_pipe)
        os._exit(0)
    except BaseException as error:
        try:
            os.write(2, f"forkserver: {error}\n".encode())
        finally:
            os._exit(2)


def reap() -> None:
    """Collect the first forks that ended (each lives as long as the program it started)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def serve(channel: socket.socket) -> None:
    """For each request (JSON, with the door's pipe attached), a fork that reads it and answers it: this process
    never holds a request, so no fork finds an earlier job's paths or variables in its copy of this one's memory. It
    ends when the grading process closes its end (when it ends, however it ends)."""
    waiting = select.poll()                      # not select(): the channel's number may be above 1023
    waiting.register(channel, select.POLLIN)
    while True:
        reap()
        if not waiting.poll(1000):
            continue
        if not channel.recv(1, socket.MSG_PEEK):
            return
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            fork_into(channel, read, write)
        os.close(write)
        started = os.read(read, 1)
        os.close(read)
        if not started:                          # it failed before answering: answer for it
            status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            channel.send(json.dumps({"status": status or 2}).encode())


REFUSED = 3        # the exit status of a server that will not fork here: the programs' route, without retrying

if __name__ == "__main__":
    if os.getppid() != int(sys.argv[2]):
        sys.exit(0)                  # that process is already gone
    if len(os.listdir("/proc/self/task")) != 1:
        sys.exit(REFUSED)            # a library started a thread at import, which a fork would lack
    serve(socket.socket(fileno=int(sys.argv[1])))
