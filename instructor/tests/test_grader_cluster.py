"""`make grade` on every documented route, typed as docs/instructors.md types it: `make grade -j 2` runs two notebooks
at once; a `dask scheduler` and `dask worker`s started with the guide's own command lines (read from the guide, with no
PYTHONPATH) grade the same gradebook, a worker killed mid-task loses nothing, and a regrade runs only what changed;
a worker on which the grader cannot run says "not graded", exits non-zero, and a rerun grades exactly those."""
import csv
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from instructor.grader import sandbox
from tools import nbcells

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "instructors.md"
NOTEBOOK = "01_ancestral_sampling"
VENV_BIN = Path(sys.executable).parent
pytestmark = pytest.mark.skipif(sandbox.problem() is not None, reason=f"no sandbox here: {sandbox.problem()}")


def write_student(subs: Path, name: str, wrong: bool = False) -> None:
    nb = nbformat.read(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb", as_version=4)
    if wrong:
        cell = next(c for c in nb.cells if nbcells.grading(c).get("grade_id") == "A1_standard_error")
        assert "(p * (1 - p) / n).sqrt()" in cell.source
        cell.source = cell.source.replace("(p * (1 - p) / n).sqrt()", "p * (1 - p) / n")    # the variance
    (subs / name).mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, subs / name / f"{NOTEBOOK}.ipynb")


def plain_env(**extra) -> dict:
    """The instructor's shell: no PYTHONPATH, no make of ours around it, short timeouts for the test's notebooks."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return {**env, **extra}


def make_grade(subs: Path, grades: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    """`make grade SUBMISSIONS=... -j N` as the guide types it (GRADES only keeps the test's grades out of the tree)."""
    command = ["make", "--no-print-directory", "grade", f"SUBMISSIONS={subs}", f"GRADES={grades}",
               "GRADE_ARGS=--cell-timeout 60 --timeout 300", *extra]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


def gradebook(grades: Path) -> list:
    with open(grades / "gradebook.csv", newline="") as f:
        return list(csv.reader(f))


def details(grades: Path) -> dict:
    return json.loads((grades / "details.json").read_text())


def guide_commands() -> dict:
    """The guide's own lines that start a scheduler and a worker, as argument lists."""
    text = GUIDE.read_text()
    found = {}
    for role in ("scheduler", "worker"):
        match = re.search(rf"^(\.venv/bin/dask {role} [^#\n]*?)\s*(#|$)", text, re.M)
        assert match, f"docs/instructors.md shows no `.venv/bin/dask {role}` command line"
        found[role] = shlex.split(match.group(1))
        assert match.group(1) in (ROOT / "README.md").read_text(), f"the README's {role} line is not the guide's"
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv: list, port: int, cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    """One of the guide's command lines, with this machine's address and a free port for the guide's; its temporary
    files (the nannies' forkserver folder, which a killed nanny leaves) beside its log, in the test's own folder."""
    env = {**env, "TMPDIR": str(log.parent)}
    argv = [a.replace("<scheduler>", "127.0.0.1").replace("8786", str(port)) for a in argv]
    argv[0] = str(ROOT / argv[0])
    dashboard = ["--dashboard-address", ":0"] if argv[1] == "scheduler" else ["--no-dashboard"]   # no port clash
    return subprocess.Popen(argv + dashboard, cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(processes) -> None:
    for process in processes:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def grading_settings() -> dict:
    """instructor/grader/dask.yaml as dotted keys: what every worker that grades must have."""
    import yaml

    def flat(tree, prefix=""):
        for key, value in tree.items():
            yield from flat(value, f"{prefix}{key}.") if isinstance(value, dict) else [(prefix + key, value)]
    return dict(flat(yaml.safe_load((ROOT / "instructor" / "grader" / "dask.yaml").read_text())))


def settings_of_workers(client) -> list:
    """Each worker's values of the keys of grading_settings()."""
    import dask.config

    keys = list(grading_settings())
    return list(client.run(lambda: {key: dask.config.get(key) for key in keys}).values())


def connect(address: str, workers: int):
    from dask.distributed import Client

    from instructor.grader.cluster import wait_for_workers

    client = Client(address, timeout=60)
    wait_for_workers(client, workers, timeout=120)
    return client


@pytest.fixture(scope="module")
def graded_here(tmp_path_factory):
    """The class (ada right, cy wrong) graded once on this machine by `make grade -j 2`: two notebooks at once on a
    LocalCluster. Its gradebook is what every route must reproduce: cy graded again one at a time (the direct route),
    the guide's scheduler and workers, a rerun after a worker that could not sandbox."""
    base = tmp_path_factory.mktemp("local")
    write_student(base / "class", "ada")
    write_student(base / "class", "cy", wrong=True)
    done = make_grade(base / "class", base / "grades", plain_env(DASK_SCHEDULER=""), "-j", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    return {"class": base / "class", "grades": base / "grades", "output": done.stdout,
            "gradebook": gradebook(base / "grades"), "details": details(base / "grades")}


@pytest.fixture(scope="module")
def local_gradebook(graded_here):
    return graded_here["gradebook"]


def test_make_grade_dash_j_2_runs_two_notebooks_at_once(graded_here):
    subs, grades = graded_here["class"], graded_here["grades"]
    assert "2 at a time" in graded_here["output"]
    runs = [r for r in graded_here["details"]["results"].values() if r["notebook"] == NOTEBOOK]
    assert len({r["worker"] for r in runs}) == 2, "both notebooks ran in one worker process"
    (a0, a1), (b0, b1) = (r["interval"] for r in runs)
    assert a0 < b1 and b0 < a1, "the two notebooks ran one after the other"
    rows = {row[0]: row for row in graded_here["gradebook"]}
    assert rows["ada"][1:] != rows["cy"][1:]

    again = make_grade(subs, grades, plain_env(DASK_SCHEDULER=""), "STUDENT=cy")       # no -j: one at a time
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 at a time" in again.stdout and "1 from the cache, 1 to run (1 student(s))" in again.stdout
    assert [r["student"] for r in details(grades)["results"].values()
            if r["notebook"] == NOTEBOOK and r["interval"][0] > max(a1, b1)] == ["cy"]
    assert {row[0]: row for row in gradebook(grades)} == rows              # the direct route grades cy alike
    unknown = make_grade(subs, grades, plain_env(DASK_SCHEDULER=""), "STUDENT=bo")
    assert unknown.returncode != 0 and "no student 'bo' in the submissions; they are: ada, cy" in unknown.stderr


def test_the_guides_scheduler_and_workers_grade_as_here(tmp_path, local_gradebook):
    commands, port = guide_commands(), free_port()
    env = plain_env()
    scheduler = start(commands["scheduler"], port, tmp_path, env, tmp_path / "scheduler.log")
    workers = start(commands["worker"], port, ROOT, env, tmp_path / "workers.log")
    address, client = f"tcp://127.0.0.1:{port}", None
    try:
        client = connect(address, int(commands["worker"][commands["worker"].index("--nworkers") + 1]))
        # read by the guide's workers from .venv/etc/dask, where make instructor puts them
        assert settings_of_workers(client) == [grading_settings()] * len(client.scheduler_info()["workers"])
        assert all(client.run(lambda: "instructor.grader.run" in sys.modules).values()), "workers not forked"
        subs = tmp_path / "class"
        write_student(subs, "ada")
        write_student(subs, "cy", wrong=True)
        grading = subprocess.Popen(["make", "--no-print-directory", "grade", f"SUBMISSIONS={subs}",
                                    f"GRADES={tmp_path / 'grades'}", "GRADE_ARGS=--cell-timeout 60 --timeout 300",
                                    "-j", "64"], cwd=ROOT, env={**env, "DASK_SCHEDULER": address},
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        killed, deadline = None, time.monotonic() + 300
        while killed is None and time.monotonic() < deadline and grading.poll() is None:
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                killed = client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(killed, signal.SIGKILL)          # its nanny starts a new one; the task runs again
            time.sleep(0.2)
        output = grading.communicate(timeout=900)[0]
        logs = (tmp_path / "scheduler.log").read_text()[-2000:] + (tmp_path / "workers.log").read_text()[-2000:]
        assert killed, "no worker was ever seen running a task\n" + output + logs
        assert grading.returncode == 0, output + logs
        assert "ModuleNotFoundError" not in logs
        assert gradebook(tmp_path / "grades") == local_gradebook, output
        assert details(tmp_path / "grades")["ran"] == 2

        write_student(subs, "ada", wrong=True)                 # one late change
        again = make_grade(subs, tmp_path / "grades", {**env, "DASK_SCHEDULER": address}, "-j", "64")
        assert again.returncode == 0, again.stdout + again.stderr
        assert details(tmp_path / "grades")["ran"] == 1 and "1 from the cache, 1 to run" in again.stdout
        rows = {row[0]: row for row in gradebook(tmp_path / "grades")}
        assert rows["ada"][1:] == rows["cy"][1:]                # now exactly as wrong as cy
    finally:
        if client is not None:
            client.close()
        stop([scheduler, workers])


def test_a_notebook_the_grader_fails_on_is_not_graded_and_a_rerun_grades_exactly_it(tmp_path, local_gradebook):
    """A worker without bubblewrap (its PATH lacks it) cannot sandbox: "not graded", never 0; exit 3; fixed, rerun."""
    commands, port = guide_commands(), free_port()
    address = f"tcp://127.0.0.1:{port}"
    worker = [*commands["worker"][:3], "--nthreads", "1"]
    scheduler = start(commands["scheduler"], port, tmp_path, plain_env(), tmp_path / "scheduler.log")
    broken = start(worker, port, ROOT, plain_env(PATH=str(VENV_BIN)), tmp_path / "broken.log")
    subs = tmp_path / "class"
    write_student(subs, "ada")
    try:
        connect(address, 1).close()
        failed = make_grade(subs, tmp_path / "grades", plain_env(DASK_SCHEDULER=address), "-j", "2")
        assert failed.returncode != 0 and "Error 3" in failed.stderr, failed.stdout + failed.stderr   # make says 3
        assert "NOT GRADED: the grader failed on 1 notebook(s)" in failed.stderr and "bwrap" in failed.stderr
        rows = {row[0]: row for row in gradebook(tmp_path / "grades")}
        assert rows["ada"][1] == rows["ada"][-1] == "not graded"
        feedback = (tmp_path / "grades" / "feedback" / "ada.md").read_text()
        section = feedback.split(f"## {NOTEBOOK}")[1].split("\n## ")[0]
        assert "Not graded yet: the grader failed on this notebook, not your work" in section
        assert "0 /" not in section

        stop([broken])
        fixed = start(worker, port, ROOT, plain_env(), tmp_path / "fixed.log")
        try:
            again = make_grade(subs, tmp_path / "grades", plain_env(DASK_SCHEDULER=address), "-j", "2")
            assert again.returncode == 0, again.stdout + again.stderr
            assert "0 from the cache, 1 to run" in again.stdout
            rows = {row[0]: row for row in gradebook(tmp_path / "grades")}
            assert rows["ada"] == {r[0]: r for r in local_gradebook}["ada"]
        finally:
            stop([fixed])
    finally:
        stop([scheduler, broken])


WORKERS_SETTINGS = """
import json
import dask.config
import distributed  # noqa: F401  (its own defaults)
if {no_files}:
    dask.config.paths[:] = []                              # no configuration file at all: Dask's own defaults
    dask.config.refresh()
    assert dask.config.get("distributed.worker.profile.enabled") is True
import hashlib
import time
from instructor.grader import cluster
from instructor.tests.test_grader_cluster import settings_of_workers


def grader_imported():
    import sys
    return "instructor.grader.run" in sys.modules


def started(number, settings):
    begun = time.monotonic()
    time.sleep(2.0 if number == 0 else 0.2)          # the first a long job: what is queued behind it must not wait
    return begun


with cluster.client_for(2) as client:
    settings = settings_of_workers(client)
    forked = sorted(client.run(grader_imported).values())             # before any job: imported by the forkserver
    cluster.run_job, cluster.longest_first = started, lambda pending, results: sorted(pending, key=pending.get)
    jobs = {{hashlib.sha256(bytes([n])).hexdigest(): n for n in range(8)}}     # keys like the grader's; job n: n-th
    times = client.gather(cluster.submit(client, jobs, {{}}, None))
    print(json.dumps(dict(settings=settings, forked=forked, order=sorted(range(8), key=times.__getitem__))))
"""


def local_workers_settings(no_files: bool, **env) -> dict:
    """The settings of the workers of the LocalCluster that `make grade -j 2` starts, in a process of its own, whether
    each had the grader imported before its first task, and the order in which its workers start eight short tasks
    submitted as the grader submits its jobs."""
    done = subprocess.run([sys.executable, "-c", WORKERS_SETTINGS.format(no_files=no_files)], cwd=ROOT,
                          env=plain_env(DASK_SCHEDULER="", **env), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_a_local_cluster_s_workers_grade_with_the_grading_settings_without_any_dask_configuration_file():
    """make grade -j N: the grader hands dask.yaml's settings to its LocalCluster, even where no Dask configuration
    file holds them (a .venv made before make instructor copied the file, say); with them, the workers are forked
    from a server that imported the grader once, and the jobs start in the order of their priorities, none queued on
    a worker behind another."""
    found = local_workers_settings(no_files=True)
    assert found["settings"] == [grading_settings()] * 2
    assert found["forked"] == [True, True]
    first_two, rest = found["order"][:2], found["order"][2:]          # 0 and 1 start at once, one on each worker
    assert sorted(first_two) == [0, 1] and rest == list(range(2, 8)), found["order"]


def test_the_instructors_own_dask_configuration_wins_over_the_grading_settings(tmp_path):
    """Even a value that is Dask's own default: the profiler, switched back on in a file of the instructor's."""
    (tmp_path / "mine.yaml").write_text("distributed:\n  worker:\n    profile:\n      enabled: true\n")
    mine = {**grading_settings(), "distributed.worker.profile.enabled": True}
    assert local_workers_settings(no_files=False, DASK_CONFIG=str(tmp_path))["settings"] == [mine] * 2


def test_arguments_are_checked_before_anything_is_installed(tmp_path):
    """Each refusal comes from reading the makefiles: no recipe runs, so nothing is installed first."""
    env = plain_env(VENV=str(tmp_path / "no-venv-here"))
    for argv, said in ((["student"], "make student needs STUDENT_REPO"),
                       (["grade"], "make grade needs SUBMISSIONS"),
                       (["grade", f"SUBMISSIONS={tmp_path / 'nowhere'}"], "is not a folder")):
        done = subprocess.run(["make", "--no-print-directory", *argv, f"VENV={tmp_path / 'no-venv-here'}"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and said in done.stderr, done.stdout + done.stderr
        assert not (tmp_path / "no-venv-here").exists(), f"make {' '.join(argv)} began installing"


def test_the_slurm_and_kubernetes_routes_build_their_workers_from_dask_configuration():
    """As far as a machine without Slurm or Kubernetes allows: the job script and the cluster spec, not submitted."""
    import dask.config

    from instructor.grader import cluster

    settings = {"jobqueue.slurm.cores": 1, "jobqueue.slurm.processes": 1, "jobqueue.slurm.memory": "8GB",
                "jobqueue.slurm.walltime": "02:00:00",
                "jobqueue.slurm.job-script-prologue": ["cd /shared/dgm-course"],
                "jobqueue.slurm.worker-extra-args": ["--preload-nanny", "instructor.dask_nanny"],
                "kubernetes.image": "registry.example/dgm-grader:2026"}
    with dask.config.set(settings):
        slurm = cluster.slurm_cluster()
        try:
            script = slurm.job_script()
        finally:
            slurm.close()
        spec = cluster.kubernetes_spec(32)
    assert "#SBATCH --mem=8G" in script and "cd /shared/dgm-course" in script and "--nthreads 1" in script
    assert "--preload-nanny instructor.dask_nanny" in script, script
    assert str(VENV_BIN / "python") in script or ".venv/bin/python" in script, script
    assert spec["metadata"]["name"] == "dgm-grader" and spec["spec"]["worker"]["replicas"] == 32
    assert spec["spec"]["worker"]["spec"]["containers"][0]["image"] == "registry.example/dgm-grader:2026"
    with dask.config.set({"kubernetes.image": None}), pytest.raises(SystemExit, match="kubernetes.image"):
        cluster.kubernetes_spec(2)


def test_workers_are_forked_only_where_no_sandbox_can_reach_the_forkserver():
    """The multiprocessing forkserver listens, unauthenticated, in the temporary folder: forked workers only when that
    is under /tmp, which every sandbox replaces by its own; elsewhere (here /var/tmp) a new Python per worker."""
    script = ("import dask.config\nimport distributed\nfrom instructor.grader import cluster\n"
              "from instructor import dask_nanny\n"
              "cluster.use_grading_settings()\ndask_nanny.dask_setup(None)\n"
              "print(dask.config.get('distributed.worker.multiprocessing-method'))")
    for tmpdir, method in (("/tmp", "forkserver"), ("/var/tmp", "spawn")):
        done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=plain_env(TMPDIR=tmpdir),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split()[-1] == method, (tmpdir, done.stdout)
