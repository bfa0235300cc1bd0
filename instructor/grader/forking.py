"""The grader's side of the fork server (forkserver.py): start a sandbox around a door and have a probe process forked
into it, or say that it could not (the caller then starts the probes as a program of their own)."""
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

from . import sandbox

SERVER = Path(__file__).with_name("forkserver.py")
DOOR = shutil.which("cat") or "/bin/cat"        # waits for the end of its input: the last holder of the pipe


class ForkServer:
    """One fork server process, started with the variables that its forks' libraries read when imported."""

    def __init__(self, env: dict) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.process = subprocess.Popen([sys.executable, str(SERVER), str(theirs.fileno())], pass_fds=[theirs.fileno()],
                                        env=env, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        start_new_session=True)
        theirs.close()
        mine.settimeout(120)                     # its first answer waits for torch's import
        self.channel, self.lock = mine, threading.Lock()

    def fork_into(self, door: int, pipe: int, request: dict) -> bool:
        """Have a process forked into the sandbox of `door` (its pid), holding `pipe`; True once it runs there."""
        with self.lock:
            try:
                socket.send_fds(self.channel, [json.dumps({**request, "door": door}).encode()], [pipe])
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
            doors = [p.pid for p in psutil.Process(process.pid).children(recursive=True) if p.name() == "cat"]
        except psutil.Error:
            doors = []
        if doors:
            return doors[0]
        time.sleep(0.005)
    return None


def start(argv: list, writable: Path, readonly: list, env: dict, limits, cwd: Path, path: list,
          server_env: dict) -> subprocess.Popen | None:
    """The sandbox (as sandbox.command makes it) holding `argv` = [python, probes.py, job, out] forked from the
    fork server: its Popen, which ends when that process and all it started end; None when that failed."""
    try:
        fork_server = server(tuple(sorted(server_env.items())))
    except OSError:
        return None
    if fork_server.process.poll() is not None:
        server.cache_clear()
        return None
    command = sandbox.command([DOOR], writable=writable, readonly=readonly, env=env, limits=limits, cwd=cwd)
    read, write = os.pipe()
    try:
        process = subprocess.Popen(command, cwd=writable, env={"PATH": "/usr/bin:/bin"}, stdin=read,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    finally:
        os.close(read)
    try:
        door = door_of(process)
        request = {"argv": argv, "env": {**sandbox.base_env(Path(writable).resolve()), **env}, "cwd": str(cwd),
                   "path": path}
        if door is not None and fork_server.fork_into(door, write, request):
            return process
        fork_server.process.kill()               # a server that failed once is not trusted to answer in step again
        server.cache_clear()
    finally:
        os.close(write)
    process.kill()
    process.wait()
    return None
