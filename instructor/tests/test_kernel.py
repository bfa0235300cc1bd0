"""The kernel runner: a notebook run with nbclient here while its kernel runs in the sandbox; its statuses,
timeouts and caps, and what the kernel cannot reach."""
import json
import re
import resource
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from instructor.grader import kernel, sandbox
from instructor.tests.sandbox_area import Area, alive, attempts

pytestmark = pytest.mark.skipif(sandbox.problem() is not None, reason=f"no sandbox here: {sandbox.problem()}")
ROOT = Path(__file__).resolve().parents[2]


# A notebook cell that starts a detached process (its own session) holding `marker`
SPAWN = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)  # {}'], " \
        "start_new_session=True)"


def execute(area: Area, *sources: str, **overrides):
    """Run a notebook with one code cell per source in the kernel sandbox of `area`, with short timeouts; its kernel
    forked from the fork server, as the grader's are (one thread), unless `forked=False`."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(textwrap.dedent(s)) for s in sources])
    options = dict(workdir=area.job, readonly=[], limits=sandbox.Limits(), cell_timeout=20, notebook_timeout=40,
                   env={"DGM_MODE": "quick", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    return kernel.execute_notebook(nb, **{**options, **overrides})


def texts(result) -> list[str]:
    """Each cell's outputs as one string."""
    return ["".join(o.get("text", "") + str(o.get("data", "")) + o.get("ename", "") for o in cell.outputs)
            for cell in result.notebook.cells]


@pytest.mark.parametrize("forked", [True, False], ids=["forked from the fork server", "started as a program"])
def test_kernel_runs_a_notebook(area, forked):
    """A notebook runs in the sandbox with the job's environment, and its outputs and figures come back; its kernel
    is forked from the fork server (it shows the server's command line) or started as a program."""
    result = execute(area, "import os; print(os.getuid(), os.getcwd())", "print(os.environ['DGM_MODE'])", "6 * 7",
                     "import matplotlib.pyplot as plt; plt.plot([1, 2]);",
                     "print('forkserver.py' in open('/proc/self/cmdline').read())", forked=forked)
    assert result.status == "ok" and result.errors == [], result.message
    assert texts(result)[:3] == [f"65534 {area.job}\n", "quick\n", "{'text/plain': '42'}"] and area.unchanged()
    assert "image/png" in result.notebook.cells[3].outputs[0]["data"]        # figures come back for the TAs
    assert texts(result)[4] == f"{forked}\n"


# what a kernel's process looks like from inside, beyond its process ids and the fork server's command line
LOOKS_AROUND = """
import json, os, resource, signal, sys
import matplotlib
print(json.dumps({"signals": [str(signal.getsignal(number)) for number in signal.valid_signals()],
                  "path": sys.path, "argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd(),
                  "bytecode": sys.dont_write_bytecode, "backend": matplotlib.get_backend(), "uid": os.getuid(),
                  "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd"))[:3],
                  "limits": [resource.getrlimit(getattr(resource, name)) for name in dir(resource)
                             if name.startswith("RLIMIT_")],
                  "modules": [name in sys.modules for name in ("torch", "helpers")]}))
"""


def test_a_forked_kernel_starts_as_the_program_would(tmp_path):
    """The same notebook, its kernel forked and started as a program: the same path, arguments, variables, folder,
    matplotlib backend, limits; only torch and helpers (with matplotlib) are already imported in the forked one."""
    seen = {}
    for forked in (True, False):
        folder = tmp_path / str(forked)
        folder.mkdir()
        result = execute(Area(folder), LOOKS_AROUND, forked=forked)
        assert result.status == "ok", result.message
        text = re.sub(r"\.kernel-\w+", ".kernel-*", texts(result)[0].replace(str(folder), "<area>"))
        text = re.sub(r" at 0x[0-9a-f]+", "", text)
        seen[forked] = json.loads(text)
    assert seen[True].pop("modules") == [True, True] and seen[False].pop("modules") == [False, False]
    assert seen[True]["env"] == seen[False]["env"]
    assert seen[True] == seen[False]


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


def test_what_the_kernel_writes_in_its_own_folder_counts_towards_the_jobs_disk_limit(area):
    """The kernel's connection and profile folder is writable by the kernel: it lies in the job's folder, watched."""
    from instructor.grader import launch, run

    settings = run.Settings(limits=sandbox.Limits(disk_bytes=2 * 2**20))
    writer = "import os\nopen(os.path.join(os.environ['IPYTHONDIR'], 'fill'), 'wb').write(b'x' * 3 * 2**20)\n" \
             "import time; time.sleep(15)"
    started = time.monotonic()
    result = execute(area, writer, watch=launch.disk_watch(area.job, settings))
    assert result.status != "ok" and "MB of disk" in result.message and time.monotonic() - started < 15


def test_an_update_of_a_display_rewrites_its_outputs_only_while_they_stay_under_the_cap():
    """Messages fed to the client as the kernel would send them: a display shown three times, updated, then
    updated again once the outputs are near NOTEBOOK_CAP (that update would rewrite all three: it is not applied)."""
    import nbformat

    from instructor.grader.kernel import NOTEBOOK_CAP, CappedClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("display")])
    client, cell = CappedClient(nb), nb.cells[0]
    client.reset_execution_trackers()               # as execute() and execute_cell() do first
    client.clear_before_next_output = False

    def message(kind, text):
        return {"msg_type": kind, "header": {"msg_type": kind}, "parent_header": {"msg_id": "m"},
                "content": {"data": {"text/plain": text}, "metadata": {}, "transient": {"display_id": "d"}}}
    for _ in range(3):
        client.process_message(message("display_data", "a"), cell, 0)
    client.process_message(message("update_display_data", "b"), cell, 0)
    assert [o.data["text/plain"] for o in cell.outputs] == ["b", "b", "b"]
    client.received = NOTEBOOK_CAP - 100      # one output's rewrite fits, three do not
    client.process_message(message("update_display_data", "c"), cell, 0)
    assert [o.data["text/plain"] for o in cell.outputs] == ["b", "b", "b"] and client.received > NOTEBOOK_CAP
    client.clear_display_id_mapping(0)
    assert client.displayed == {"d": {}}
