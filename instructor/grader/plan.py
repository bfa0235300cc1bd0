"""Stage 1 of grading: read the submissions folder into jobs, one per student and notebook, and say what is wrong
with each student's files (never failing the class for one student's files).

A submission is a folder per student holding that student's notebooks, named as released, at its top or in its
`notebooks/`. Every check here reads files as data: nothing of a submission runs before the sandbox.
"""
import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
MAX_NOTEBOOK_BYTES = 20 * 2**20          # the released notebooks are well under 1 MB without outputs
MAX_FILES = 200
SLUG = re.compile(r"[^A-Za-z0-9._-]")
COLLECTED = (".collected.json", ".unmatched")      # what `make collect` writes beside the students' folders


@dataclass
class Student:
    """One student's folder: the notebooks found, and the problems met reading it."""
    name: str                     # the folder's name, as the gradebook shows it
    slug: str                     # safe as a file name
    folder: Path
    notebooks: dict = field(default_factory=dict)     # stem -> nbformat.NotebookNode, read and validated
    digests: dict = field(default_factory=dict)       # stem -> sha256 of the file's bytes
    problems: list = field(default_factory=list)      # sentences for the student's feedback


def slug_for(name: str, taken: set) -> str:
    """A file name for the student, unique even where file names ignore case (macOS, Windows)."""
    base = SLUG.sub("_", name)[:60].strip("._") or "student"
    slug, n = base, 1
    while slug.lower() in taken:
        n += 1
        slug = f"{base}-{n}"
    taken.add(slug.lower())
    return slug


def closest(name: str, expected: list) -> str | None:
    """The expected name a misnamed notebook most likely meant: the one with the same two-digit number."""
    number = name[:2]
    return next((e for e in expected if e.startswith(number)), None) if number.isdigit() else None


def read_notebook(path: Path) -> tuple:
    """(notebook, None) or (None, the problem): a notebook file read as data and validated, v4 or converted."""
    if path.is_symlink():
        return None, f"{path.name} is a symbolic link: hand in the notebook file itself"
    if not path.is_file():
        return None, f"{path.name} is not a regular file"
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        return None, f"{path.name} is {size / 2**20:.0f} MB, over the {MAX_NOTEBOOK_BYTES // 2**20} MB limit: clear " \
                     "its outputs (Kernel > Restart & Clear Output) and hand it in again"
    try:
        raw = json.loads(path.read_bytes())
        nb = nbformat.reads(json.dumps(raw), as_version=4)   # converts notebooks of format 3 to 4
        nbformat.validate(nb)
    except RecursionError:
        return None, f"{path.name} nests its JSON too deeply to be a notebook"
    except Exception as error:
        return None, f"{path.name} is not a readable Jupyter notebook ({type(error).__name__}): open it in Jupyter, " \
                     "save it, and hand it in again"
    if raw.get("nbformat") != 4:
        return nb, f"{path.name} was in notebook format {raw.get('nbformat')}; it was converted to format 4"
    return nb, None


@cache
def released_stems() -> frozenset:
    """Every notebook the release ships, graded or not."""
    return frozenset(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def read_student(folder: Path, name: str, slug: str, expected: list) -> Student:
    """One student's notebooks: the expected ones found, each problem named with its fix."""
    student = Student(name, slug, folder)
    places = [folder, folder / "notebooks"]
    found = {}
    try:
        for place in places:
            if place.is_symlink():
                student.problems.append(f"{place.name}/ is a symbolic link: it was not followed")
                continue
            if not place.is_dir():
                continue
            entries = sorted(place.iterdir())[:MAX_FILES]
            for path in entries:
                if path.suffix == ".ipynb" and path.stem not in found:
                    found[path.stem] = path
    except OSError as error:
        student.problems.append(f"the folder could not be read ({type(error).__name__})")
    for stem, path in found.items():
        if stem not in expected and stem in released_stems():
            continue                                # a notebook the release ships that asks nothing (00_setup)
        if stem not in expected:
            guess = closest(stem, [e for e in expected if e not in found])
            student.problems.append(f"{printable(path.name)} is not a notebook of this homework" +
                                    (f": {guess}.ipynb expected, found {printable(path.name)}" if guess else ""))
            continue
        nb, problem = read_notebook(path)
        if problem:
            student.problems.append(problem)
        if nb is not None:
            student.notebooks[stem] = nb
            student.digests[stem] = hashlib.sha256(path.read_bytes()).hexdigest()
    missing = [e for e in expected if e not in student.notebooks and e not in found]
    if missing:
        student.problems.append("not handed in: " + ", ".join(f"{m}.ipynb" for m in missing))
    return student


def printable(name: str) -> str:
    """A file name as text, one for one: bytes that are not UTF-8 (an old zip tool's Latin-1, say) shown escaped
    (`zo\\xeb`), so that two names never read alike."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def read_class(submissions: Path, expected: list, then=None) -> tuple:
    """(every student folder of `submissions`, the entries skipped and why): symbolic links, plain files and hidden
    names at the top are named, not followed. `then(student)` runs on each student as soon as it is read, before the
    next is: the grader builds its jobs there and lets go of the notebooks, so that a class is never in memory."""
    students, taken, skipped = [], set(), []
    for entry in sorted(submissions.iterdir()):
        if entry.name.startswith("."):
            if entry.name not in COLLECTED:
                skipped.append(f"{printable(entry.name)}: a hidden name (rename it without the leading dot)")
            continue
        if entry.is_symlink() or not entry.is_dir():
            skipped.append(f"{printable(entry.name)}: not a folder (each student's notebooks go in one of their own)")
            continue
        name = printable(entry.name)
        students.append(read_student(entry, name, slug_for(name, taken), expected))
        if then is not None:
            then(students[-1])
    return students, skipped
