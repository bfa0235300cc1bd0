"""Files the grader writes for people: whole or not at all, readable by the group as the umask allows."""
import os
import tempfile
from pathlib import Path


def write_text(path: Path, text: str) -> None:
    """Write a file whole or not at all; text that is not valid Unicode (a lone surrogate from a student's file name
    or answer) is written escaped rather than stopping the report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(fd, 0o666 & ~umask())           # mkstemp's 0600 would hide grades from the other TAs of the group
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def umask() -> int:
    """This process's umask (reading it means setting it: set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
