"""Every question of the index has a record under its id in its notebook's committed results."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def index_rows():
    """(id, notebook) for each row of QUESTIONS.md's table."""
    rows = re.findall(r"^\| (\w[\w-]*) \| .+ \| (\d\d_\w+) \|$", (ROOT / "QUESTIONS.md").read_text(), re.M)
    assert len(rows) > 40, "QUESTIONS.md's table could not be read"
    return rows


@pytest.mark.parametrize("question_id, notebook", index_rows(), ids=lambda v: v)
def test_every_question_has_a_record(question_id, notebook):
    path = ROOT / "results" / f"{notebook}.json"
    assert path.exists(), f"{notebook} has no committed results: run `make run`"
    records = json.loads(path.read_text())
    assert question_id in records, \
        f"{notebook} records no {question_id}: add record({question_id!r}, ...) beside its check"


def test_every_notebook_of_the_index_exists():
    assert {nb for _, nb in index_rows()} <= {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")}
