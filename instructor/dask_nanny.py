"""Dask's nanny preload for grading (dask.yaml): the workers are forked from one server process that has imported the
grader and torch once, instead of each new worker importing them again (about 4 CPU seconds a worker)."""


def dask_setup(nanny):
    """Before the nanny starts its worker: the modules its multiprocessing forkserver imports before it forks."""
    from distributed.utils import get_mp_context

    context = get_mp_context()              # Dask's own context, with its own preload list set first
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(["distributed", "instructor.grader.run"])
