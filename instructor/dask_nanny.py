"""Dask's nanny preload for grading (dask.yaml): the workers are forked from one server process that has imported the
grader and torch once, instead of each new worker importing them again (about 3 CPU seconds a worker)."""
import tempfile
from pathlib import Path


def dask_setup(nanny):
    """Before the nanny starts its worker: the modules its multiprocessing forkserver imports before it forks. The
    forkserver takes requests, with no password, on a socket in the temporary folder; a job's sandbox has a /tmp of its
    own, so under /tmp no job can reach it. Anywhere else (TMPDIR elsewhere) the workers are started as new Pythons."""
    import dask.config
    from distributed.utils import get_mp_context

    if not Path(tempfile.gettempdir()).resolve().is_relative_to("/tmp"):
        dask.config.set({"distributed.worker.multiprocessing-method": "spawn"})
        return
    context = get_mp_context()              # Dask's own context, with its own preload list set first
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(["distributed", "instructor.grader.run"])
