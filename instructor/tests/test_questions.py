"""The course model (instructor/course_model.py): read from the notebooks and the bank's declarations, it agrees with
the committed QUESTIONS.md and the instructors' guide, with the bank as the grader imports it, and with the records;
what it cannot place stops it, named."""
import json
import shutil
from pathlib import Path

import pytest

from instructor import course_model

ROOT = Path(__file__).resolve().parents[2]


def index_rows():
    """(id, notebook) of every question the notebooks ask."""
    rows = [(q.id, q.notebook) for q in course_model.load().questions]
    assert len(rows) > 40, "the notebooks' question metadata could not be read"
    return rows


@pytest.mark.parametrize("question_id, notebook", index_rows(), ids=lambda v: v)
def test_every_question_has_a_record(question_id, notebook):
    path = ROOT / "results" / f"{notebook}.json"
    assert path.exists(), f"{notebook} has no committed results: run `make run`"
    records = json.loads(path.read_text())
    assert question_id in records, \
        f"{notebook} records no {question_id}: add record({question_id!r}, ...) beside its check"


@pytest.mark.parametrize("name", ["QUESTIONS.md", "docs/instructors.md"])
def test_the_committed_file_is_what_the_notebooks_give(name):
    expected = course_model.generated(course_model.load())[name]
    assert (ROOT / name).read_text() == expected, f"{name} differs from the notebooks: run `make questions`"


def test_the_model_reads_the_bank_as_the_grader_imports_it():
    """The declarations read as text are the tests the grader runs: same names, questions, points, descriptions."""
    from instructor.grader import bank

    imported = [(t.notebook, t.question, t.name, t.points, t.description, isinstance(t, bank.ModelTest))
                for t in bank.tests()]
    read = [(p.notebook, p.question, p.name, p.points, p.description, p.grader == course_model.MODEL_TEST)
            for p in course_model.load().tests()]
    assert imported == read and len(read) > 50


def test_every_question_is_graded_and_every_column_is_unique():
    course = course_model.load()
    assert all(q.points > 0 for q in course.questions), [q.id for q in course.questions if not q.points]
    columns = [q.column for q in course.questions]
    assert len(columns) == len(set(columns)) and "A2@02" in columns and "A1" in columns


def copy_of_the_course(tmp_path: Path) -> Path:
    root = tmp_path / "course"
    for name in ("notebooks", "instructor/grader/bank", "docs"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def edit(path: Path, change) -> None:
    nb = json.loads(path.read_text())
    change(nb["cells"])
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def test_a_part_or_test_without_its_question_stops_the_model_naming_it(tmp_path):
    root = copy_of_the_course(tmp_path)
    notebook = root / "notebooks" / "03_kl_divergence.ipynb"

    def unask(cells):                        # the statement of C1h removed: its answer cells have no question
        next(c for c in cells if "C1h" in c["metadata"].get("questions", {}))["metadata"]["questions"].pop("C1h")
    edit(notebook, unask)
    with pytest.raises(course_model.CourseError, match="answer cell .C1h_derivation. answers question .C1h."):
        course_model.load(root)

    shutil.copy(ROOT / "notebooks" / notebook.name, notebook)
    course_model.load.cache_clear()
    bank = root / "instructor" / "grader" / "bank" / "kl_divergence.py"
    bank.write_text(bank.read_text() + '\n\n@hidden_test("Z9", points=1)\nclass Stray:\n    """A stray test."""\n')
    with pytest.raises(course_model.CourseError, match="Stray.*'Z9'.*03_kl_divergence"):
        course_model.load(root)

    bank.unlink()
    (bank.parent / "klx_divergence.py").write_text('@hidden_test("A3", points=1)\nclass Lost:\n    """Lost."""\n')
    course_model.load.cache_clear()
    with pytest.raises(course_model.CourseError, match="klx_divergence.py declares tests \\(Lost\\)"):
        course_model.load(root)


def test_a_result_of_a_question_the_course_does_not_ask_stops_the_gradebook():
    from instructor.grader import report

    verdict = {"question": "Z9", "notebook": "03_kl_divergence", "test": "Stray", "description": "d", "points": 1.0,
               "earned": 1.0, "message": "", "detail": ""}
    results = {"ada/03": {"student": "ada", "slug": "ada", "notebook": "03_kl_divergence", "status": "ok",
                          "verdicts": [verdict]}}
    with pytest.raises(course_model.CourseError, match="test Stray.*'Z9'"):
        report.totals(results, {}, {})
    with pytest.raises(course_model.CourseError, match="TA part Z9_essay.*'Z9'"):
        report.maxima({}, {("03_kl_divergence", "Z9_essay"): ("Z9", 2.0)})


def test_the_release_and_the_site_read_the_course_without_importing_the_bank():
    import subprocess
    import sys

    code = ("import sys; from instructor import release, site; release.questions_table; "
            "from instructor import course_model; course_model.load().tests(); "
            "print(sorted(m for m in sys.modules if m.startswith('instructor.grader')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_a_notebook_without_a_row_in_the_instructors_table_gets_one():
    course = course_model.load()
    guide = (ROOT / "docs" / "instructors.md").read_text()
    without = "\n".join(line for line in guide.split("\n") if not line.startswith("| 07 |"))
    rows = course_model.instructors_guide(course, without).split("\n")
    row = next(line for line in rows if line.startswith("| 07 |"))
    assert row.startswith("| 07 | - | `Linear` (A18)") and "`sgd_step` (A20)" in row
    assert row.endswith("| - | 9 + 2 + 7 |")
