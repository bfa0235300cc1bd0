"""Where the jobs run: here, one after the other, or as tasks of a Dask distributed cluster.

One task per student and notebook. A student's notebooks need nothing from each other at run time (the answers that
notebook 04 imports from 02 and 03 are exported before any task starts), so the tasks are independent. The cluster
is a LocalCluster of `workers` processes by default, the scheduler at DASK_SCHEDULER (tcp://host:8786) when that is
set, or, with DASK_CLUSTER=slurm or kubernetes, workers that dask-jobqueue or dask-kubernetes start (their settings
come from Dask's own configuration files; docs/instructors.md shows both). Every worker runs from a copy of this
repository with its .venv, the same sandbox around each job.

A result is stored in the cache folder as soon as it arrives, keyed on what decides it (the rebuilt notebook, the
answers it imports, the key): a grader killed halfway resumes where it stopped, and a late submission grades alone.
Dask runs a task again elsewhere when its worker dies, and a result counts once per job whatever ran it.
"""
import json
import os
import time
from functools import cache
from pathlib import Path

from tqdm.auto import tqdm

from .config import Dask
from .report import NOT_GRADED
from .run import Job, Settings, run_job


def cached(cache: Path, key: str) -> dict | None:
    path = cache / f"{key}.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def store(cache: Path, key: str, result: dict) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".{key}.tmp"
    tmp.write_text(json.dumps(result))
    os.replace(tmp, cache / f"{key}.json")


def without_copy(result: dict, cache: Path, key: str) -> dict:
    """The result as the grader keeps it while the class runs: its executed copy stays in the cache's file, read back
    once, when the copies are written (executed_copy)."""
    if result.get("executed") is None:
        return result
    return {**result, "executed": None, "executed_file": str(cache / f"{key}.json")}


def executed_copy(result: dict) -> dict | None:
    """The executed notebook of a result kept without it, from its cache file."""
    path = result.get("executed_file")
    try:
        return json.loads(Path(path).read_text()).get("executed") if path else None
    except (OSError, json.JSONDecodeError):
        return None


def failed(job: Job, error: BaseException) -> dict:
    """The result of a job the grader could not run: "not graded", never a student's points. The cause is for the
    instructor (details.json and the grader's output), never cached, so the next `make grade` runs the job again."""
    from .jobs import not_handed_in
    from .plan import Student

    result = not_handed_in(Student(job.student, job.slug, Path(".")), job.notebook)
    result.update(status=NOT_GRADED, status_message="the grader failed on this notebook; it will be graded again",
                  written=job.written, problems=job.problems, grader_failure=f"{type(error).__name__}: {error}"[:300])
    for verdict in result["verdicts"]:
        verdict.update(earned=None, message="not graded yet: the grader failed on this notebook, not your work")
    return result


def slurm_cluster():
    """Workers as Slurm jobs (dask-jobqueue): cores, memory, walltime and the job script's prologue (`cd` to the
    repository, activate its .venv) come from Dask's configuration, ~/.config/dask/jobqueue.yaml."""
    from dask_jobqueue import SLURMCluster

    return SLURMCluster()


def kubernetes_spec(workers: int) -> dict:
    """The dask-kubernetes operator's cluster spec: `workers` pods of the image set in Dask's configuration
    (`kubernetes.image`), which holds this repository, its .venv and bubblewrap."""
    import dask.config
    from dask_kubernetes.operator import make_cluster_spec

    image = dask.config.get("kubernetes.image", default=None)
    if not image:
        raise SystemExit("DASK_CLUSTER=kubernetes needs the grader's image: set kubernetes.image in Dask's "
                         "configuration (~/.config/dask/kubernetes.yaml), docs/instructors.md section 5")
    return make_cluster_spec(name="dgm-grader", image=image, n_workers=workers)


DASK_SETTINGS = Path(__file__).with_name("dask.yaml")


@cache
def use_grading_settings() -> None:
    """Dask's settings for grading (dask.yaml) in this process, before any client or cluster starts (a LocalCluster's
    workers receive them from it), under what Dask's configuration files and DASK_* variables say: an instructor's own
    value wins, even one that is Dask's default."""
    import dask.config
    import yaml

    dask.config.update_defaults(yaml.safe_load(DASK_SETTINGS.read_text()))
    dask.config.update(dask.config.config, dask.config.collect(), priority="new")


def client_for(workers: int, dask: Dask | None = None):
    """A Dask client: to DASK_SCHEDULER, to a Slurm or Kubernetes cluster (DASK_CLUSTER), or to a LocalCluster."""
    from dask.distributed import Client, LocalCluster

    use_grading_settings()
    dask = dask or Dask.from_environ()
    address, kind = dask.scheduler, dask.cluster
    if address:
        return Client(address)
    if kind == "slurm":
        cluster = slurm_cluster()
        cluster.scale(jobs=workers)
        return Client(cluster)
    if kind == "kubernetes":
        from dask_kubernetes.operator import KubeCluster

        return Client(KubeCluster(custom_cluster_spec=kubernetes_spec(workers)))
    # one single-threaded process per worker: a job's own threads are set by Settings.threads
    # the dashboard lists students' names: it listens on this machine only
    return Client(LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address="127.0.0.1:0"))


def run_all(jobs: list, settings: Settings, cache: Path, workers: int = 1, report=print,
            regrade: set | None = None, dask: Dask | None = None, in_memory: bool = False) -> tuple:
    """(job key -> result, how many ran now) for every job, from the cache or run; a progress bar meanwhile. With
    `regrade` (student slugs), only those students' jobs run, whatever the cache holds; the others come from the
    cache or are "not graded" (never run behind the instructor's back). The executed copies stay in the cache's
    files (`executed_copy` reads one back), unless `in_memory` (a cache that is deleted before they are written)."""
    def kept(result: dict, key: str) -> dict:
        return result if in_memory else without_copy(result, cache, key)

    keys = {job_key(job, settings): job for job in jobs}
    if len(keys) != len(jobs):
        raise RuntimeError("two jobs share a cache key: every job names its student and notebook, so this is a bug")
    results = {k: kept(r, k) for k, j in keys.items()
               if not (regrade and j.slug in regrade) and (r := cached(cache, k)) is not None}
    pending = {k: j for k, j in keys.items() if k not in results}
    if regrade:
        for key in [k for k, j in pending.items() if j.slug not in regrade]:
            results[key] = failed(pending.pop(key), RuntimeError("not graded yet: run make grade without STUDENT"))
    report(f"{len(jobs)} job(s): {len(results)} from the cache, {len(pending)} to run "
           f"({len({j.student for j in pending.values()})} student(s))")
    if not pending:
        return results, 0
    bar = tqdm(total=len(pending), unit="notebook", desc="grading", dynamic_ncols=True)
    failures = 0

    def arrived(key: str, result: dict) -> None:
        nonlocal failures
        failures += bool(result.get("grader_failure"))
        results[key] = result
        if not result.get("grader_failure"):           # the grader's own failure is tried again next time
            store(cache, key, result)
            results[key] = kept(result, key)
        bar.set_postfix(not_graded=failures, refresh=False)
        bar.update()

    dask = dask or Dask.from_environ()
    if not dask.used(workers):
        for key, job in pending.items():
            try:
                arrived(key, run_job(job, settings))
            except Exception as error:          # a bug of the grader on one notebook never stops the class
                arrived(key, failed(job, error))
    else:
        from dask.distributed import as_completed

        try:
            client = client_for(workers, dask)
        except OSError as error:                        # no scheduler at DASK_SCHEDULER: nothing was graded
            raise SystemExit(f"cannot reach the Dask scheduler ({error}): start it as docs/instructors.md says, or "
                             "unset DASK_SCHEDULER to grade on this machine") from None
        with client:
            report(f"Dask dashboard: {client.dashboard_link}")
            futures = dict(zip(submit(client, pending, results, settings), pending))
            for future in as_completed(futures):
                key = futures[future]
                try:
                    arrived(key, future.result())
                except Exception as error:      # KilledWorker after repeated deaths, or a grader bug
                    arrived(key, failed(pending[key], error))
    bar.close()
    return results, len(pending)


def submit(client, pending: dict, results: dict, settings: Settings) -> list:
    """The futures of the `pending` jobs (in its order), submitted as one graph with the longest jobs at the highest
    priorities: a class's jobs are then one group of independent tasks, which the scheduler hands out in priority
    order as workers free up (dask.yaml keeps them there, not queued on a worker, for a group of more tasks than
    twice the workers' threads); jobs submitted one at a time would be placed on workers as they arrive, a long one
    behind another."""
    import dask
    from dask import delayed

    ranked = longest_first(pending, results)
    tasks = {}
    for rank, key in enumerate(ranked):
        with dask.annotate(priority=len(ranked) - rank):
            tasks[key] = delayed(run_job, pure=False)(pending[key], settings, dask_key_name=f"grade-{key}")
    return client.compute([tasks[key] for key in pending], optimize_graph=False)


def longest_first(pending: dict, results: dict) -> list:
    """The keys of `pending` in the order Dask should start them: the longest jobs first, so that no long job starts
    last while the other workers idle: the notebooks on which the grader trains models (their model tests), which
    take far the longest, then the others; within each, by the mean time of the notebook's jobs already in the cache
    (a class graded in part)."""
    from . import bank

    seconds = {}
    for result in results.values():
        if result.get("seconds"):
            seconds.setdefault(result["notebook"], []).append(result["seconds"])
    trains = {test.notebook for test in bank.tests() if isinstance(test, bank.ModelTest)}

    def length(key: str) -> tuple:
        notebook = pending[key].notebook
        known = seconds.get(notebook)
        return notebook in trains, sum(known) / len(known) if known else 0.0
    return sorted(pending, key=length, reverse=True)     # stable: the students' order within a notebook


def job_key(job: Job, settings: Settings) -> str:
    return job.cache_key(settings)


def wait_for_workers(client, count: int, timeout: float = 60) -> None:
    """Block until `count` workers have joined (a scheduler started by hand starts empty)."""
    deadline = time.monotonic() + timeout
    while len(client.scheduler_info()["workers"]) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} Dask workers joined within {timeout:g} s")
        time.sleep(0.2)
