"""QUESTIONS.md, read once for everything that needs it: the release, the grader, the HTML pages and the tests."""
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(r"^\| (?P<id>\w[\w-]*) \| (?P<question>.+) \| (?P<notebook>\d\d_\w+) \|$", re.M)


@dataclass(frozen=True)
class Question:
    """One row of QUESTIONS.md: a question id as one notebook asks it."""
    id: str
    text: str
    notebook: str


def questions(path: Path = ROOT / "QUESTIONS.md") -> list:
    """Every row of the table, in order (an id asked by two notebooks has a row for each)."""
    rows = [Question(m["id"], m["question"].replace("\\|", "|"), m["notebook"]) for m in ROW.finditer(path.read_text())]
    if not rows:
        raise ValueError(f"{path} holds no question table (rows like `| A1 | question | 01_notebook |`)")
    return rows


def ids_by_notebook(path: Path = ROOT / "QUESTIONS.md") -> dict:
    """notebook stem -> its question ids, in the table's order."""
    found = {}
    for row in questions(path):
        found.setdefault(row.notebook, [])
        if row.id not in found[row.notebook]:
            found[row.notebook].append(row.id)
    return found
