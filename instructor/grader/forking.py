"""The grader's side of the fork server (forkserver.py): start a sandbox around a door and have a process forked into
it, or say that it could not (the caller then starts its program as usual)."""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from functools import cache
from pathlib import Path

import psutil

from helpers import cpu

from . import sandbox

SERVER = Path(__file__).with_name("forkserver.py")
REFUSED = 3                                      # forkserver.py's status when it will not fork on this machine
DOOR = shutil.which("cat") or "/bin/cat"        # waits for the end of its input: the last holder of the pipe
DOOR_NAME = Path(DOOR).name


class ForkServer:
    """One fork server process, started with the variables that its forks' libraries read when imported."""

    def __init__(self, env: dict) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.process = subprocess.Popen([sys.executable, str(SERVER), str(theirs.fileno()), str(os.getpid())],
                                        pass_fds=[theirs.fileno()], env=env, cwd="/", stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        mine.settimeout(120)                     # its first answer waits for torch's import
        self.channel, self.lock = mine, threading.Lock()

    def fork_into(self, fds: list, request: dict) -> bool:
        """Have a process forked into the sandbox of the door `request` names, given `fds` (the door's pipe, a pidfd
        of the door, and maybe a file for its output); True once it runs there."""
        with self.lock:
            try:
                socket.send_fds(self.channel, [json.dumps(request).encode()], fds)
                reply = self.channel.recv(4096)
            except OSError:
                return False
        return bool(reply) and json.loads(reply).get("status") == 0


@cache
def server(settings_env: tuple):
    """This process's fork server for these variables (started again after one failed)."""
    return ForkServer({**sandbox.base_env(Path("/nonexistent")), **dict(settings_env)})


def door_of(process: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """The pid of the door inside the sandbox `process` started, once bubblewrap has executed it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            doors = [p.pid for p in psutil.Process(process.pid).children(recursive=True) if p.name() == DOOR_NAME]
        except psutil.Error:
            doors = []
        if doors:
            return doors[0]
        time.sleep(0.005)
    return None


def imported(env: dict) -> dict:
    """The variables of `env` that torch's libraries read when imported: the fork server's own."""
    return {name: value for name, value in env.items()
            if name in cpu.PINNED or name in (cpu.PATH_VARIABLE, "OMP_NUM_THREADS", "MKL_NUM_THREADS")}


def usable(env: dict) -> ForkServer | None:
    """The fork server for a sandbox with these variables, or None where forking does not fit: more than one thread
    for the libraries (their thread pools, started at import, would be missing in a fork), or a server that died."""
    server_env = imported(env)
    if server_env.get("OMP_NUM_THREADS") != "1" or server_env.get("MKL_NUM_THREADS") != "1":
        return None
    try:
        fork_server = server(tuple(sorted(server_env.items())))
    except OSError:
        return None
    if fork_server.process.poll() is not None:
        if fork_server.process.returncode != REFUSED:      # killed, say: another one next time
            server.cache_clear()
        return None
    return fork_server


def hand_over(fork_server: ForkServer, process: subprocess.Popen, pipe: int, argv: list, env: dict, cwd: Path,
              home: Path, output: int | None = None) -> bool:
    """Have `argv` forked into the door's sandbox that `process` started (`pipe`: the door's input; `output`: a file
    for its stdout and stderr); True once it runs there. A server that failed is stopped, and started again later."""
    door = door_of(process)
    if door is None:
        return False
    try:
        pidfd = os.pidfd_open(door)              # the fork checks through it that this pid is still the door's
    except OSError:
        return False
    try:
        if psutil.Process(door).name() != DOOR_NAME:
            return False
        cwd = Path(cwd).resolve()
        # the variables bwrap gives the program it starts: the sandbox's base, the job's, and PWD (bwrap's --chdir)
        request = {"argv": argv, "env": {**sandbox.base_env(Path(home).resolve()), **env, "PWD": str(cwd)},
                   "cwd": str(cwd), "door": door}
        if fork_server.fork_into([pipe, pidfd] + ([output] if output is not None else []), request):
            return True
    except psutil.Error:
        return False
    finally:
        os.close(pidfd)
    fork_server.process.kill()               # a server that failed once is not trusted to answer in step again
    fork_server.process.wait()
    server.cache_clear()
    return False


def start(argv: list, writable: Path, readonly: list, env: dict, limits, cwd: Path) -> subprocess.Popen | None:
    """The sandbox (as sandbox.command makes it) holding `argv` forked from the fork server: its Popen, which ends
    when that process ends (and kills what it started); None when forking does not fit or failed."""
    fork_server = usable(env)
    if fork_server is None:
        return None
    command = sandbox.command([DOOR], writable=writable, readonly=readonly, env=env, limits=limits, cwd=cwd)
    read, write = os.pipe()
    try:
        process = subprocess.Popen(command, cwd=writable, env={"PATH": "/usr/bin:/bin"}, stdin=read,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    finally:
        os.close(read)
    try:
        if hand_over(fork_server, process, write, argv, env, cwd, home=writable):
            return process
    finally:
        os.close(write)
    process.kill()
    process.wait()
    return None
