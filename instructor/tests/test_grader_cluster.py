"""`make grade` on Dask: a real `dask scheduler` and two `dask worker` processes on localhost grade a small class; one
worker is killed while it runs a task; the gradebook equals the one graded here without Dask; and grading again after
one submission changed runs that one notebook only, the rest coming from the cache."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from answers import export
from instructor.grader import sandbox

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "01_ancestral_sampling"
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(sandbox.problem() is not None, reason=f"no sandbox here: {sandbox.problem()}")


def write_student(subs: Path, name: str, wrong: bool = False) -> None:
    nb = nbformat.read(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb", as_version=4)
    if wrong:
        cell = next(c for c in nb.cells if export.grading(c).get("grade_id") == "A1_standard_error")
        assert "(p * (1 - p) / n).sqrt()" in cell.source
        cell.source = cell.source.replace("(p * (1 - p) / n).sqrt()", "p * (1 - p) / n")    # the variance
    (subs / name).mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, subs / name / f"{NOTEBOOK}.ipynb")


def grade(subs: Path, grades: Path, env: dict, jobs: int = 2) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "instructor.grader", "grade", str(subs), "--grades", str(grades),
                             "--jobs", str(jobs), "--cell-timeout", "60", "--timeout", "300"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def gradebook(grades: Path) -> list:
    with open(grades / "gradebook.csv", newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two single-threaded workers, each its own process, started as an instructor would."""
    base = tmp_path_factory.mktemp("dask")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    scheduler_file = base / "scheduler.json"
    processes = {"scheduler": subprocess.Popen([str(BIN / "dask"), "scheduler", "--scheduler-file", str(scheduler_file),
                                                "--port", "0", "--dashboard-address", ":0"], cwd=ROOT, env=env,
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)}
    deadline, address = time.monotonic() + 60, None
    while address is None and time.monotonic() < deadline:
        try:
            address = json.loads(scheduler_file.read_text())["address"]
        except (OSError, ValueError, KeyError):        # not written yet, or only half: Dask writes it in place
            time.sleep(0.2)
    assert address, "the dask scheduler did not write its address within 60 s"
    for name in ("w1", "w2"):
        processes[name] = subprocess.Popen([str(BIN / "dask"), "worker", address, "--name", name, "--nthreads", "1",
                                            "--nworkers", "1", "--no-nanny", "--no-dashboard"], cwd=ROOT, env=env,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    from dask.distributed import Client

    from instructor.grader.cluster import wait_for_workers

    client = Client(address)
    wait_for_workers(client, 2)
    yield {"address": address, "client": client, "processes": processes, "base": base, "env": env}
    client.close()
    for process in processes.values():
        process.kill()
        process.wait()


def test_a_killed_worker_loses_nothing_and_a_regrade_runs_only_what_changed(cluster):
    base, client = cluster["base"], cluster["client"]
    subs = base / "class"
    write_student(subs, "ada")
    write_student(subs, "cy", wrong=True)
    local = grade(subs, base / "local", {**os.environ, "DASK_SCHEDULER": ""}, jobs=1)
    assert local.wait(timeout=600) == 0, local.stdout.read()

    env = {**cluster["env"], "DASK_SCHEDULER": cluster["address"]}
    on_dask = grade(subs, base / "dask", env)
    killed, deadline = None, time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and on_dask.poll() is None:
        busy = [info["name"] for address, info in client.scheduler_info()["workers"].items()
                if client.processing().get(address)]
        if busy:
            killed = busy[0]
            cluster["processes"][killed].send_signal(signal.SIGKILL)
        time.sleep(0.2)
    assert killed, "no worker was ever seen running a task"
    output = on_dask.communicate(timeout=600)[0]
    assert on_dask.returncode == 0, output
    assert gradebook(base / "dask") == gradebook(base / "local"), output
    assert json.loads((base / "dask" / "details.json").read_text())["ran"] == 2
    rows = {row[0]: row for row in gradebook(base / "dask")}
    assert rows["ada"][1:] != rows["cy"][1:]

    write_student(subs, "ada", wrong=True)                     # one late change
    again = grade(subs, base / "dask", env)
    output = again.communicate(timeout=600)[0]
    assert again.returncode == 0, output
    details = json.loads((base / "dask" / "details.json").read_text())
    assert details["ran"] == 1 and "1 from the cache, 1 to run" in output
    rows = {row[0]: row for row in gradebook(base / "dask")}
    assert rows["ada"][1:] == rows["cy"][1:]                    # now exactly as wrong as cy


def test_the_slurm_and_kubernetes_routes_build_their_workers_from_dask_configuration():
    """As far as a machine without Slurm or Kubernetes allows: the job script and the cluster spec, not submitted."""
    import dask.config

    from instructor.grader import cluster

    settings = {"jobqueue.slurm.cores": 1, "jobqueue.slurm.processes": 1, "jobqueue.slurm.memory": "8GB",
                "jobqueue.slurm.walltime": "02:00:00",
                "jobqueue.slurm.job-script-prologue": ["cd /shared/dgm-course", "source .venv/bin/activate"],
                "kubernetes.image": "registry.example/dgm-grader:2026"}
    with dask.config.set(settings):
        slurm = cluster.slurm_cluster()
        try:
            script = slurm.job_script()
        finally:
            slurm.close()
        spec = cluster.kubernetes_spec(32)
    assert "#SBATCH --mem=8G" in script and "cd /shared/dgm-course" in script and "--nthreads 1" in script
    assert spec["metadata"]["name"] == "dgm-grader" and spec["spec"]["worker"]["replicas"] == 32
    assert spec["spec"]["worker"]["spec"]["containers"][0]["image"] == "registry.example/dgm-grader:2026"
    with dask.config.set({"kubernetes.image": None}), pytest.raises(SystemExit, match="kubernetes.image"):
        cluster.kubernetes_spec(2)
