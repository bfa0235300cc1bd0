"""The grader's settings: one typed object, filled once from the command line and the environment.

The command line is `python -m instructor.grader grade|gradebook|key|check-key ...` (make grade, make gradebook, make
key); the environment says where Dask runs the jobs (DASK_SCHEDULER, DASK_CLUSTER, DGM_FORCE_DASK). Every variable
the project reads is in the table of docs/developers.md ("Environment variables").
"""
import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import sandbox

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Dask:
    """Where the jobs run, from the environment: a running scheduler, a Slurm or Kubernetes cluster, or this
    machine (a LocalCluster with -j N > 1; in the grader's own process with no -j)."""
    scheduler: str | None = None     # DASK_SCHEDULER: the address of a running scheduler (tcp://host:8786)
    cluster: str = "local"           # DASK_CLUSTER: local, slurm or kubernetes
    force: bool = False              # DGM_FORCE_DASK: a one-worker LocalCluster even without -j (make bench)

    @classmethod
    def from_environ(cls, environ=None) -> "Dask":
        environ = os.environ if environ is None else environ
        return cls(scheduler=environ.get("DASK_SCHEDULER") or None,
                   cluster=environ.get("DASK_CLUSTER", "local") or "local",
                   force=bool(environ.get("DGM_FORCE_DASK")))

    def used(self, workers: int) -> bool:
        """Whether the jobs go through Dask rather than run one after the other in this process."""
        return workers > 1 or bool(self.scheduler) or self.cluster != "local" or self.force

    def where(self, workers: int) -> str:
        """Where and how many at once, in words."""
        if self.scheduler:
            return f"on the Dask cluster at {self.scheduler}, as many at once as it has workers"
        if self.cluster != "local":
            return f"on {workers} {self.cluster} worker(s)"
        return f"{max(1, workers)} at a time"


@dataclass
class GraderConfig:
    """Everything the grader was asked to do and how; `jobs` drops to 1 without the sandbox."""
    command: str                                  # grade, gradebook, key or check-key
    submissions: Path | None = None
    grades: Path = ROOT / "grades"
    jobs: int = 1
    cell_timeout: float = 600
    notebook_timeout: float = sandbox.Limits.wall_seconds
    sandboxed: bool = True
    full: bool = False
    show_expected: bool = False
    course: Path | None = None
    students: tuple = ()
    dask: Dask = field(default_factory=Dask)

    @property
    def mode(self) -> str:
        return "full" if self.full else "quick"

    @classmethod
    def from_command_line(cls, argv=None, environ=None, description: str = "") -> "GraderConfig":
        args = parser(description).parse_args(argv)
        return cls(command=args.command, submissions=getattr(args, "submissions", None),
                   grades=getattr(args, "grades", ROOT / "grades"), jobs=getattr(args, "jobs", 1),
                   cell_timeout=getattr(args, "cell_timeout", 600),
                   notebook_timeout=getattr(args, "timeout", sandbox.Limits.wall_seconds),
                   sandboxed=not getattr(args, "no_sandbox", False), full=getattr(args, "full", False),
                   show_expected=getattr(args, "show_expected", False), course=getattr(args, "course", None),
                   students=tuple(getattr(args, "student", ())), dask=Dask.from_environ(environ))


def parser(description: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m instructor.grader", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("grade", "key"):
        p = sub.add_parser(name)
        if name == "grade":
            p.add_argument("submissions", type=Path)
            p.add_argument("--grades", type=Path, default=ROOT / "grades")
            p.add_argument("--show-expected", action="store_true", help="the feedback shows the expected values")
            p.add_argument("--full", action="store_true", help="full settings (hours per student on a CPU)")
            p.add_argument("--course", type=Path, help="the course file: deadline, late policy, roster (default: the "
                                                       "one `make collect` used)")
            p.add_argument("--student", action="append", default=[],
                           help="grade this student again, whatever the cache holds (repeatable); the rest as cached")
        p.add_argument("--jobs", "-j", type=int, default=1, help="notebooks at once (Dask workers)")
        p.add_argument("--cell-timeout", type=float, default=600, help="seconds per cell")
        p.add_argument("--timeout", type=float, default=sandbox.Limits.wall_seconds, help="seconds per notebook")
        p.add_argument("--no-sandbox", action="store_true", help="run submissions WITHOUT isolation (opt-in, loud)")
    g = sub.add_parser("gradebook")
    g.add_argument("--grades", type=Path, default=ROOT / "grades")
    g.add_argument("--show-expected", action="store_true")
    sub.add_parser("check-key")
    return parser
