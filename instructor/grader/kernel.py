"""Execute a student's notebook with nbclient in this (trusted) process while its kernel runs in the sandbox.

The executed copy, the cell errors and the status live only in this process's memory: the kernel, inside its
sandbox, sees its working folder, the read-only paths it is given, and one fresh folder holding its own connection
file and ZeroMQ ipc sockets (its network namespace has no route to this process, so tcp cannot be used).
"""
import asyncio
import copy
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

import nbformat
import zmq
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from instructor.grader import forking, sandbox

OUTPUT_CAP = 1_000_000         # characters of one output (as JSON) kept in the executed copy
NOTEBOOK_CAP = 20_000_000      # characters of all outputs kept; later outputs are dropped
DISPLAY_MESSAGES = {"execute_result", "display_data", "update_display_data"}   # what may rewrite a display
MESSAGE_CAP = 8 * 2**20        # bytes of one ZeroMQ message this process accepts from the kernel
QUEUE_CAP = 8                  # messages ZeroMQ queues for this process before the kernel's outputs are dropped
EVALUE_CAP = 300


@dataclass
class CellError:
    """A cell that raised: its index in the notebook, the exception's name and (truncated) value."""
    index: int
    ename: str
    evalue: str


@dataclass
class RunResult:
    """What running one notebook gave: the executed copy, how the run ended, which cells raised, and its duration."""
    notebook: nbformat.NotebookNode
    status: str                                  # "ok", "errors", "timeout" or "crash"
    errors: list[CellError] = field(default_factory=list)
    seconds: float = 0.0
    message: str = ""                            # why the run stopped early, for "timeout", "crash" and "errors"


class SandboxedKernelManager(AsyncKernelManager):
    """jupyter_client's kernel manager whose kernel command is ipykernel wrapped by `sandbox.command` (or, without a
    sandbox, by `sandbox.limited`); everything else (connection file, ports, kill) is the library's own."""

    job: dict = {}  # the keyword arguments of sandbox.command, and "sandboxed"; set by execute_notebook

    def kernel_argv(self, extra_arguments: list[str] | None = None) -> list[str]:
        """This environment's ipykernel on our connection file."""
        # The kernelspec's argv is ignored on purpose: a kernelspec found on the instructor's paths must not decide
        # what runs the student's code.
        return [sys.executable, "-m", "ipykernel_launcher", "-f", self.connection_file, *(extra_arguments or [])]

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        """The kernel's argv inside the job's sandbox; where the fork server can fork the kernel (forking.py), the
        sandbox holds the door that the forked kernel joins instead."""
        job = dict(self.job)
        sandboxed, forked = job.pop("sandboxed"), job.pop("forked", True)
        if not sandboxed:
            return sandbox.limited(self.kernel_argv(extra_arguments), job["limits"])
        self.fork_server = forking.usable(job["env"]) if forked else None
        self.extra_arguments = extra_arguments
        return sandbox.command([forking.DOOR] if self.fork_server else self.kernel_argv(extra_arguments), **job)

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
        """Launch the sandbox; with a door in it, have the kernel forked into it, or else launch it as a program."""
        if not getattr(self, "fork_server", None):
            return await super()._async_launch_kernel(kernel_cmd, **kw)
        read, write = os.pipe()
        try:
            await super()._async_launch_kernel(kernel_cmd, **{**kw, "stdin": read})
        finally:
            os.close(read)
        try:
            output = kw.get("stdout")
            forked = forking.hand_over(self.fork_server, self.provisioner.process, write,
                                       self.kernel_argv(self.extra_arguments),
                                       self.job["env"], cwd=self.job["writable"], home=self.job["writable"],
                                       output=output.fileno() if hasattr(output, "fileno") else None)
        finally:
            os.close(write)
        if not forked:
            await self.provisioner.kill()
            self.fork_server = None
            job = {key: value for key, value in self.job.items() if key not in ("sandboxed", "forked")}
            await super()._async_launch_kernel(sandbox.command(self.kernel_argv(self.extra_arguments), **job), **kw)

    def client(self, **kwargs):
        """A kernel client on this manager's ZeroMQ context, which caps the size of incoming messages."""
        return super().client(context=self.context, **kwargs)


class CappedClient(NotebookClient):
    """nbclient's client that keeps each output under OUTPUT_CAP and all of them under NOTEBOOK_CAP as they arrive,
    so that a kernel printing without end cannot fill this process's memory."""

    def __init__(self, *args, **kwargs) -> None:
        """The usual client, with counters of what was received and dropped, and of the outputs of each display."""
        super().__init__(*args, **kwargs)
        self.received = 0
        self.dropped: dict[int, int] = {}
        self.displayed: dict[str, dict[int, int]] = {}      # display_id -> cell index -> outputs it shows there

    def reset_execution_trackers(self) -> None:
        super().reset_execution_trackers()
        self.displayed = {}

    def process_message(self, msg, cell, cell_index):
        """A message of a display (one with a display_id) rewrites every output that display already shows: it is
        applied only while those rewrites keep the outputs under NOTEBOOK_CAP (each of them cap_outputs would later
        measure again); over it, the message goes on without its display_id, so that nbclient rewrites nothing."""
        content = msg.get("content") or {}
        display_id = (content.get("transient") or {}).get("display_id")
        if display_id and msg.get("msg_type") in DISPLAY_MESSAGES:
            touched = sum(self.displayed.get(display_id, {}).values())
            self.received += len(json.dumps(content, default=str)) * max(touched, 1)
            if self.received > NOTEBOOK_CAP:
                msg = {**msg, "content": {**content, "transient": {}}}
        return super().process_message(msg, cell, cell_index)

    def output(self, outs, msg, display_id, cell_index):
        """Record one output message unless the notebook's outputs are already over NOTEBOOK_CAP; cut it to
        OUTPUT_CAP."""
        size = len(json.dumps(msg["content"], default=str))
        self.received += size
        if self.received > NOTEBOOK_CAP:
            self.dropped[cell_index] = self.dropped.get(cell_index, 0) + 1
            return None
        out = super().output(outs, msg, display_id, cell_index)
        if out is not None and display_id:
            shown = self.displayed.setdefault(display_id, {})
            shown[cell_index] = shown.get(cell_index, 0) + 1
        if out is not None and size > OUTPUT_CAP:
            shrink(out)
        return out

    def clear_display_id_mapping(self, cell_index: int) -> None:
        """A cell's outputs were cleared: its displays show nothing there any more."""
        super().clear_display_id_mapping(cell_index)
        for shown in self.displayed.values():
            shown.pop(cell_index, None)

    def handle_comm_msg(self, outs, msg, cell_index) -> None:
        """Ignore widget messages: a grader shows no widgets, and their state would otherwise grow here unbounded."""


def shrink(out: nbformat.NotebookNode, cap: int = OUTPUT_CAP) -> None:
    """Cut one output, in place, to about `cap` characters, saying so in it."""
    note = f"\n[output truncated by the grader: it was over {cap:,} characters]\n"
    if out.output_type == "stream":
        out.text = out.text[:cap] + note
    elif out.output_type == "error":
        out.ename, out.evalue = out.ename[:EVALUE_CAP], out.evalue[:cap // 2]
        out.traceback = ["\n".join(out.traceback)[:cap // 2] + note]
    else:
        # Images and HTML cannot be cut meaningfully: keep a cut text/plain only.
        out.data = {"text/plain": str(out.get("data", {}).get("text/plain", ""))[:cap] + note}
        out.metadata = {}


def merge_streams(outputs: list) -> list:
    """Join each run of consecutive stream outputs of one name (stdout, stderr) into one output, in linear time."""
    merged = []
    # Non-stream outputs get a key of their own (their id), so that they are never grouped.
    for _, run in groupby(outputs, key=lambda out: out.get("name") if out.output_type == "stream" else id(out)):
        run = list(run)
        if run[0].output_type == "stream":
            run[0].text = "".join(out.text for out in run)
        merged.append(run[0])
    return merged


def cap_outputs(nb: nbformat.NotebookNode, dropped: dict[int, int]) -> None:
    """Merge each cell's streams, bring the executed copy within the caps once more (merged streams and display
    updates bypass `output`), and say in each cell how many of its outputs were dropped."""
    total = 0
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        kept = []
        for out in merge_streams(cell.outputs):
            if len(json.dumps(out, default=str)) > OUTPUT_CAP:
                shrink(out)
            size = len(json.dumps(out, default=str))
            if total + size > NOTEBOOK_CAP:
                dropped[index] = dropped.get(index, 0) + 1
                continue
            total += size
            kept.append(out)
        if dropped.get(index):
            kept.append(nbformat.v4.new_output("stream", name="stderr", text=(
                f"[{dropped[index]} output(s) dropped by the grader: the notebook's outputs passed "
                f"{NOTEBOOK_CAP:,} characters]\n")))
        cell.outputs = kept


class NotebookTimeout(Exception):
    """The whole notebook ran past its time."""


class OverLimit(Exception):
    """The job went over a limit that its watchdog measures (the disk its folder takes)."""


async def _run(client: CappedClient, km: SandboxedKernelManager, notebook_timeout: float, watch=None,
               **start) -> None:
    """Execute the notebook within `notebook_timeout` seconds, then kill the kernel whatever happened; every few
    seconds `watch()` may name a limit the job went over, which stops it too."""
    execution = asyncio.ensure_future(client.async_execute(**start))
    deadline = time.monotonic() + notebook_timeout
    try:
        while True:
            done, _ = await asyncio.wait([execution], timeout=min(2.0, max(0.0, deadline - time.monotonic())))
            over = None if done else (watch() if watch else None)
            if done or over or time.monotonic() >= deadline:
                break
        if not done:
            # nbclient reports any cancellation as "Kernel died", so the timeout is decided here, not from that.
            execution.cancel()
            await asyncio.gather(execution, return_exceptions=True)
            raise OverLimit(over) if over else NotebookTimeout()
        execution.result()
    finally:
        # nbclient leaves a kernel it did not create running, and its client's channels (one a thread) open.
        if client.kc is not None:
            client.kc.stop_channels()
        await _kill(km)


async def _kill(km: SandboxedKernelManager) -> None:
    """SIGKILL the kernel's process group (bwrap: and so its whole PID namespace) and remove its files."""
    try:
        if km.has_kernel:
            await km.shutdown_kernel(now=True)
    except Exception:
        # Should the library fail here, kill the process ourselves: nothing may outlive the run.
        process = getattr(km.provisioner, "process", None)
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _tail(stream, limit: int = 2000) -> str:
    """The last `limit` characters the kernel wrote to its own stdout and stderr (bwrap's errors land there too)."""
    stream.seek(0, os.SEEK_END)
    stream.seek(max(0, stream.tell() - limit))
    return stream.read().decode(errors="replace").strip()


def execute_notebook(nb: nbformat.NotebookNode, *, workdir: Path, readonly: list[Path], env: dict[str, str],
                     limits: sandbox.Limits, cell_timeout: float, notebook_timeout: float, sandboxed: bool = True,
                     allow_errors: bool = True, watch=None, forked: bool = True) -> RunResult:
    """Run a copy of `nb` with nbclient here while its kernel runs in the sandbox (cwd and only writable place
    `workdir`, `env` over the sandbox's base environment); any failure of the runner counts as "crash". `forked`: the
    kernel is forked from the fork server where it can be (forking.py), else started as a program."""
    nb, start = copy.deepcopy(nb), time.monotonic()
    workdir = Path(workdir).resolve()
    reaper = None if sandboxed else sandbox.Reaper()
    # inside the job's folder, so that what the kernel writes there counts towards the job's disk limit too
    share = Path(tempfile.mkdtemp(prefix=".kernel-", dir=workdir))
    # IPython's profile (startup scripts!) goes to the run's own fresh folder, not to one that a later run reads.
    # Figures are shown as in Jupyter (the sandbox's Agg would leave a TA nothing to look at).
    kernel_env = {"IPYTHONDIR": str(share / "ipython"), "MPLBACKEND": "module://matplotlib_inline.backend_inline",
                  **env}
    startup = share / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    shutil.copy(Path(__file__).with_name("kernel_startup.py"), startup / "00-cap-printing.py")
    context = zmq.asyncio.Context()
    context.setsockopt(zmq.MAXMSGSIZE, MESSAGE_CAP)  # a bigger message drops the connection instead of our memory
    context.setsockopt(zmq.RCVHWM, QUEUE_CAP)        # a flood of outputs waits (or is dropped) in the kernel, not here
    km = SandboxedKernelManager(transport="ipc", connection_file=str(share / "kernel.json"), ip=str(share / "ipc"),
                                context=context)
    km.job = {"sandboxed": sandboxed, "forked": forked, "limits": limits, "writable": workdir,
              "readonly": list(readonly), "env": kernel_env, "share_paths": [share]}
    errors: list[CellError] = []

    def on_cell_executed(cell, cell_index, execute_reply) -> None:
        """Note the cells whose reply says they raised."""
        content = (execute_reply or {}).get("content", {})
        if content.get("status") == "error":
            errors.append(CellError(cell_index, str(content.get("ename", ""))[:EVALUE_CAP],
                                    str(content.get("evalue", ""))[:EVALUE_CAP]))

    # Outputs that arrive after a cell's reply are awaited as long as a cell may run (nbclient's 4 s lost some on a
    # busy machine). nbclient's coalesce_streams stays off: its regexes take time quadratic in a line's length.
    client = CappedClient(nb, km=km, timeout=cell_timeout, allow_errors=allow_errors, shutdown_kernel="immediate",
                          record_timing=False, startup_timeout=60, on_cell_executed=on_cell_executed,
                          iopub_timeout=max(4, int(min(cell_timeout, 60))),
                          resources={"metadata": {"path": str(workdir)}})
    # Sandboxed, bwrap clears the environment itself; without it the kernel inherits exactly this.
    popen_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")} if sandboxed else {
        **sandbox.base_env(workdir), **kernel_env}
    status, message = "ok", ""
    with tempfile.TemporaryFile() as output:
        try:
            asyncio.run(_run(client, km, notebook_timeout, watch, env=popen_env, stdout=output, stderr=output))
        except CellTimeoutError as error:
            status, message = "timeout", f"a cell ran over {cell_timeout} s: {str(error)[:EVALUE_CAP]}"
        except NotebookTimeout:
            status, message = "timeout", f"the notebook ran over {notebook_timeout} s"
        except OverLimit as error:
            status, message = "crash", f"stopped: {error}"
        except CellExecutionError as error:
            status, message = "errors", f"stopped at the first error: {error.ename}"
        except DeadKernelError as error:
            status, message = "crash", f"the kernel died: {str(error)[:EVALUE_CAP]}\n{_tail(output)}"
        except Exception as error:  # noqa: BLE001 - any failure of the runner is a crash, never a success
            status, message = "crash", f"the runner failed: {type(error).__name__}: {str(error)[:EVALUE_CAP]}\n" \
                                       f"{_tail(output)}"
        finally:
            if reaper is not None:
                reaper.reap()
            context.destroy(linger=0)
            shutil.rmtree(share, ignore_errors=True)
    if status == "ok" and errors:
        status = "errors"
    cap_outputs(nb, client.dropped)
    return RunResult(nb, status, errors, time.monotonic() - start, message)
