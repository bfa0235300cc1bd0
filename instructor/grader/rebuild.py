"""Stage 2 of grading: the notebook the grader runs is the release's, with only the student's answers put back in.

Everything outside the answer regions (the given code, the self-checks, the records, the settings) comes from the
release, as nbgrader's OverwriteCells does for locked cells: a student's edits there are not run, and cells a student
added are not run either (the feedback says so). Answers are found by their cell's nbgrader grade_id (then by cell
id): code between the markers, and the whole text of a written Markdown answer.
"""
from dataclasses import dataclass, field

import nbformat

from answers import export
from tools import nbcells


@dataclass
class Rebuilt:
    """The notebook to run, the student's written answers, and what could not be taken over."""
    notebook: nbformat.NotebookNode
    written: dict = field(default_factory=dict)        # grade_id -> the student's Markdown (or '' when missing)
    problems: list = field(default_factory=list)


def indentation(line: str) -> str:
    return line[:len(line) - len(line.lstrip())]


def region_bodies(source: str) -> list:
    """(the indentation of the BEGIN marker, the lines between the markers) of each region of a cell, in order."""
    lines = source.split("\n")
    return [(indentation(lines[first]), lines[first + 1:last]) for first, last in export.regions(source)]


def put_back(released: str, bodies: list) -> str:
    """The released cell's source with its regions' stubs replaced by the student's `bodies`: each line moved from
    the student's marker indentation to the release's, the rest of its indentation (tabs too) kept."""
    lines = released.split("\n")
    out, last = [], 0
    for (first, end), (theirs, body) in zip(export.regions(released), bodies):
        out += lines[last:first + 1]
        ours = indentation(lines[first])
        out += [ours + line[len(theirs):] if line.startswith(theirs) else line for line in body]
        last = end
    return "\n".join(out + lines[last:])


MAX_ANSWER_CHARS = 100_000        # far above any answer; parsing is bounded by what it reads (a long line costs GBs)


def standing_alone(released: str, bodies: list, grade_id: str) -> tuple:
    """(the cell's source, the problem or None): the student's code put back when the cell then compiles; else the
    released cell whose regions raise a SyntaxError naming the problem, so that only this cell's functions fail and
    the rest of the notebook's answers are graded as written."""
    size = sum(len(line) + 1 for _, body in bodies for line in body)
    if size > MAX_ANSWER_CHARS:
        problem = f"the answer in cell {grade_id} is {size:,} characters, over the {MAX_ANSWER_CHARS:,} allowed"
    else:
        source = put_back(released, bodies)
        try:
            compile(source, f"<answer cell {grade_id}>", "exec", dont_inherit=True)
            return source, None
        except SyntaxError as error:
            problem = f"your answer cell {grade_id} does not parse (line {error.lineno}: {error.msg})"
        except (ValueError, RecursionError, MemoryError) as error:
            problem = f"your answer cell {grade_id} does not parse ({type(error).__name__})"
    stub = [(indent, [f"{indent}# YOUR CODE HERE", f"{indent}raise SyntaxError({problem!r})"])
            for indent, _ in region_bodies(released)]
    return put_back(released, stub), problem + ": its functions raise that error, the rest is graded as written"


def find(submitted: nbformat.NotebookNode, cell) -> nbformat.NotebookNode | None:
    """The student's cell answering the same part: by grade_id, else by cell id."""
    grade_id = nbcells.grading(cell).get("grade_id")
    for candidate in submitted.cells:
        if grade_id and nbcells.grading(candidate).get("grade_id") == grade_id:
            return candidate
    cell_id = cell.get("id")
    return next((c for c in submitted.cells if cell_id and c.get("id") == cell_id), None)


def rebuild(release: nbformat.NotebookNode, submitted: nbformat.NotebookNode) -> Rebuilt:
    """The release notebook with the student's answers in its regions (see the module's docstring)."""
    notebook = nbformat.from_dict(nbformat.NotebookNode(release))
    result = Rebuilt(notebook)
    released_ids = {nbcells.grading(c).get("grade_id") for c in release.cells} | {c.get("id") for c in release.cells}
    for cell in notebook.cells:
        meta = nbcells.grading(cell)
        if not meta.get("solution"):
            continue
        grade_id = meta["grade_id"]
        theirs = find(submitted, cell)
        if cell.cell_type == "markdown":
            text = nbcells.source_of(theirs) if theirs is not None else ""
            result.written[grade_id] = "" if "YOUR ANSWER HERE" in text and len(text) < 300 else text
            if theirs is None:
                result.problems.append(f"the answer cell {grade_id} is missing from the submitted notebook")
            continue
        if theirs is None or theirs.cell_type != "code":
            result.problems.append(f"the answer cell {grade_id} is missing from the submitted notebook: it ran as "
                                   "released (unanswered)")
            continue
        try:
            bodies = region_bodies(nbcells.source_of(theirs))
        except export.ExportError as error:
            result.problems.append(f"the markers of cell {grade_id} are broken ({error}): it ran as released")
            continue
        if len(bodies) != len(export.regions(cell.source)):
            result.problems.append(f"cell {grade_id} has {len(bodies)} answer regions where the release has "
                                   f"{len(export.regions(cell.source))}: keep every `### BEGIN SOLUTION` / "
                                   "`### END SOLUTION` pair; it ran as released")
            continue
        cell.source, problem = standing_alone(cell.source, bodies, grade_id)
        if problem:
            result.problems.append(problem)
    seen = [nbcells.grading(c).get("grade_id") for c in submitted.cells if nbcells.grading(c).get("grade_id")]
    for grade_id in sorted({g for g in seen if seen.count(g) > 1 and g in released_ids}):
        result.problems.append(f"the answer cell {grade_id} appears {seen.count(grade_id)} times: the first was "
                               "graded, the copies below it were not")
    added = [c for c in submitted.cells if c.get("id") not in released_ids and
             nbcells.grading(c).get("grade_id") not in released_ids and "".join(c.get("source", "")).strip()]
    if added:
        result.problems.append(f"{len(added)} cell(s) you added were not run: the grader runs the released cells, "
                               "with your answers between the markers")
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return result
