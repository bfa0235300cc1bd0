"""The second line of defence, for grading without the sandbox (opt-in, loud): a submission then runs with the
instructor's rights, so the grader keeps its own files in memory and puts them back after every job, once every
process the job started is dead. Jobs then run one at a time, so that no job sees another's damage.

What this does not protect: anything outside the files listed (the instructor's home, other repositories, the
network); a job can still read the solutions and the key while it runs. Use the sandbox for a real class.
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUARDED = ["helpers", "answers", "notebooks", "instructor", "tools", "QUESTIONS.md", "Makefile", "pyproject.toml"]


class Snapshot:
    """Every file under `paths`, in memory, to put back as it was."""

    def __init__(self, paths: list):
        self.paths = [Path(p) for p in paths]
        self.files = {}
        for root in self.paths:
            for path in ([root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []):
                if path.is_file() and not path.is_symlink() and "__pycache__" not in path.parts:
                    self.files[path] = path.read_bytes()

    def restore(self) -> list:
        """Put back what changed or vanished, remove what appeared; returns what was wrong, in words."""
        damage = []
        for path, content in self.files.items():
            try:
                same = path.is_file() and not path.is_symlink() and path.read_bytes() == content
            except OSError:
                same = False
            if not same:
                damage.append(f"{path.relative_to(ROOT) if ROOT in path.parents else path} was changed or removed")
                if path.is_symlink() or path.is_dir():
                    path.unlink() if path.is_symlink() else None
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
        for root in self.paths:
            for path in sorted(root.rglob("*"), reverse=True) if root.is_dir() else []:
                if (path.is_file() or path.is_symlink()) and path not in self.files and "__pycache__" not in path.parts:
                    damage.append(f"{path.relative_to(ROOT) if ROOT in path.parents else path} appeared")
                    path.unlink()
        return damage


def guard() -> Snapshot:
    """The snapshot of the grader's own files of this repository."""
    return Snapshot([ROOT / name for name in GUARDED])
