"""What a notebook cell says about the exercise, read from its metadata: nbgrader's marks of an answer (`solution`,
`grade`, `grade_id`, `points`) and the course's own `questions` key, the statement of each question a Markdown cell
asks (`{"A3": "Derive the KL divergence between two univariate Gaussians; ..."}`).

Shared by `make answers` (answers/export.py), `make check` (tools/check.py) and the instructors' course model
(instructor/course_model.py), so that a cell is read the same way everywhere.
"""


def source_of(cell) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def grading(cell) -> dict:
    """The cell's nbgrader metadata ({} for a cell that is not part of the exercise, or whose metadata is not a
    mapping: a notebook from elsewhere may hold anything there)."""
    metadata = cell.get("metadata") if isinstance(cell, dict) else None
    meta = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    return meta if isinstance(meta, dict) and isinstance(meta.get("grade_id", ""), str) else {}


def question_of(cell) -> str | None:
    """The question id a solution cell answers: the part of its grade_id before the first '_'."""
    meta = grading(cell)
    return meta["grade_id"].split("_", 1)[0] if meta.get("solution") and meta.get("grade_id") else None


def is_code_answer(cell) -> bool:
    """A code cell holding answer code to run and export (nbgrader's "autograded answer")."""
    return cell["cell_type"] == "code" and grading(cell).get("solution", False) and not grading(cell).get("grade")


def is_ta_part(cell) -> bool:
    """A part a TA grades (nbgrader's "manually graded answer"): a written answer or a figure, with its points."""
    return bool(grading(cell).get("solution") and grading(cell).get("grade"))


def statements(cell) -> dict:
    """question id -> statement, of each question this (Markdown) cell asks; {} for any other cell."""
    metadata = cell.get("metadata") if isinstance(cell, dict) else None
    asked = metadata.get("questions") if isinstance(metadata, dict) else None
    if cell.get("cell_type") != "markdown" or not isinstance(asked, dict):
        return {}
    return {str(k): str(v) for k, v in asked.items()}
