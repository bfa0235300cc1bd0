"""Stage 4 of grading: what the grader measured, written for people: the gradebook, each student's feedback, the
pages where TAs read the written answers side by side, and the sheet of their points.

Nothing here reads a submission: only the jobs' results (plain data) and the TAs' sheet. Every file is written
atomically, after every job has ended. The TAs' sheet, grades/manual-points.csv, keeps the points already entered:
`make grade` adds rows for new students and parts, `make gradebook` merges the sheet into gradebook.csv again
without running anything (nbgrader's manual grading, in a spreadsheet instead of the formgrader).
"""
import csv
import io
import json
import sys
from pathlib import Path

from instructor import course_model

from . import handback, lms, pages
from .files import write_text

SHEET_FIELDS = ["student", "notebook", "part", "question", "max_points", "points", "comment"]
MAXIMUM = "maximum/"        # the gradebook's row of maxima: no folder name can end in a slash
FORMULA = ("=", "+", "-", "@", "\t", "\r")
NOT_GRADED = "not graded"    # a notebook the grader failed on: no points yet, in no direction


def cell(text: str) -> str:
    """A spreadsheet cell that stays text: a leading quote disarms what a spreadsheet would run as a formula (a
    student's folder named `=HYPERLINK(...)`, say), and marks a text that starts with a quote itself, so that
    read_sheet takes off exactly what was added (`=x` and `'=x` stay two names)."""
    return f"'{text}" if str(text).startswith((*FORMULA, "'")) else str(text)


def uncell(text: str) -> str:
    return text[1:] if text.startswith("'") and text[1:].startswith((*FORMULA, "'")) else text


def columns() -> list:
    """(notebook, question id, column name) in the course model's order; an id two notebooks ask is `id@NN`."""
    return [(q.notebook, q.id, q.column) for q in course_model.load().questions]


def column_of(notebook: str, question: str, what: str) -> str:
    """The gradebook column of a verdict's or a TA part's question; a question the course does not ask stops the
    report, naming it, rather than losing its points."""
    try:
        return course_model.load().column(notebook, question)
    except course_model.CourseError as error:
        raise course_model.CourseError(f"{what}: {error}") from None


def read_sheet(path: Path) -> dict:
    """(student, notebook, part) -> row of the TAs' sheet; a row whose points are not a number in range is named."""
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = [{k: uncell(v or "") for k, v in r.items() if k} for r in csv.DictReader(f)]
    return {(r.get("student", ""), r.get("notebook", ""), r.get("part", "")): r for r in rows}


def manual_points(row: dict | None) -> tuple:
    """(points, problem) of one sheet row: blank is 'not graded yet', anything else must be 0..max."""
    text = (row or {}).get("points", "").strip()
    if not text:
        return None, None
    try:
        points = float(text)
    except ValueError:
        return None, f"points {text!r} is not a number"
    maximum = float(row["max_points"])
    if not 0 <= points <= maximum:
        return None, f"points {points:g} is outside 0..{maximum:g}"
    return points, None


def handed_in(results: dict) -> set:
    """(student, notebook) of every notebook a student handed in: a TA reads only those."""
    return {(r["student"], r["notebook"]) for r in results.values() if r["status"] != "missing"}


def sheet_text(results: dict, parts: dict, previous: dict) -> str:
    """The TAs' sheet: one row per student and manual part of a notebook they handed in, earlier entries kept."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, SHEET_FIELDS, quoting=csv.QUOTE_ALL)     # a `;` is no separator either
    writer.writeheader()
    present = handed_in(results)
    for student in sorted({r["student"] for r in results.values()}):
        for (notebook, part), (question, maximum) in sorted(parts.items()):
            if (student, notebook) not in present:
                continue
            old = previous.get((student, notebook, part), {})
            writer.writerow({"student": cell(student), "notebook": notebook, "part": part, "question": question,
                             "max_points": f"{maximum:g}", "points": cell(old.get("points", "")),
                             "comment": cell(old.get("comment", ""))})
    return buffer.getvalue()


def totals(results: dict, parts: dict, sheet: dict, late: dict | None = None) -> dict:
    """student -> {column: points, "before late": points, "late deduction": fraction, "total": points, "problems":
    [...]} from the verdicts, the sheet and each student's late deduction (a fraction of the whole)."""
    book, ungraded = {}, {}
    for result in results.values():
        row = book.setdefault(result["student"], {"problems": []})
        for verdict in result["verdicts"]:
            name = column_of(verdict["notebook"], verdict["question"], f"the result of test {verdict['test']}")
            if verdict["earned"] is None:
                ungraded.setdefault(result["student"], set()).add(name)
            else:
                row[name] = row.get(name, 0.0) + verdict["earned"]
    present = handed_in(results)
    for student, row in book.items():
        pending = 0
        for (notebook, part), (question, _) in parts.items():
            if (student, notebook) not in present:
                continue                              # nothing to read: its points stay 0
            points, problem = manual_points(sheet.get((student, notebook, part)))
            if problem:
                row["problems"].append(f"student {student!r}, {notebook} part {part}: {problem} (ignored)")
            pending += points is None
            if points is not None:
                name = column_of(notebook, question, f"the TA part {part}")
                row[name] = row.get(name, 0.0) + points
        before = sum(v for k, v in row.items() if k != "problems")
        row["TA parts to grade"] = pending
        deducted = (late or {}).get(student, {}).get("deducted", 0.0)
        row.update({"before late": before, "late deduction": deducted, "total": round(before * (1 - deducted), 4)})
        for name in ungraded.get(student, ()):       # the grader failed there: no number, and so no total
            row[name] = row["before late"] = row["total"] = NOT_GRADED
    return book


def shown(points) -> str:
    return points if isinstance(points, str) else f"{points:g}"


def gradebook_text(book: dict, maxima: dict) -> str:
    names = [name for _, _, name in columns()]
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL)
    writer.writerow(["student", *names, "TA parts to grade", "before late", "late deduction", "total"])
    writer.writerow([MAXIMUM, *(f"{maxima.get(n, 0):g}" for n in names), "", f"{sum(maxima.values()):g}", "",
                     f"{sum(maxima.values()):g}"])
    for student in sorted(book):
        writer.writerow([cell(student), *(shown(book[student].get(n, 0)) for n in names),
                         book[student]["TA parts to grade"], shown(book[student]["before late"]),
                         f"{book[student]['late deduction']:g}", shown(book[student]["total"])])
    return buffer.getvalue()


def in_table(text: str) -> str:
    """Text for a cell of a Markdown table: its bars escaped, so `KL(p || q)` reads as written."""
    return text.replace("|", "\\|")


def feedback_text(student: str, results: list, parts: dict, sheet: dict, show_expected: bool,
                  late: dict | None = None) -> str:
    """One student's feedback: lateness, how each notebook ran, and per question what was tested and earned."""
    lines = [f"# Feedback for {student}", ""]
    if late:
        lines += [f"Hand-in: {late['sentence']}."] + [f"- {p}" for p in late.get("problems", [])] + [""]
    overall = [p for r in results for p in r.get("student_problems", [])]
    lines += [f"- {p}" for p in dict.fromkeys(overall)] + ([""] if overall else [])
    for result in sorted(results, key=lambda r: r["notebook"]):
        if result["status"] == "missing":
            points = sum(v["points"] for v in result["verdicts"]) + sum(
                maximum for (notebook, _), (_, maximum) in parts.items() if notebook == result["notebook"])
            lines += [f"## {result['notebook']}", "", f"Not handed in: its {points:g} points count 0.", ""]
            continue
        if result.get("grader_failure"):
            lines += [f"## {result['notebook']}", "", "Not graded yet: the grader failed on this notebook, not your "
                      "work. It will be graded again; nothing of it counts until then.", ""]
            continue
        lines += [f"## {result['notebook']}", "", f"Ran to the end: {'yes' if result['status'] == 'ok' else 'no'} "
                  f"({result['status']}{': ' + result['status_message'] if result['status_message'] else ''}), "
                  f"{result['seconds']:g} s."]
        lines += [f"- {problem}" for problem in dict.fromkeys(result["problems"] + result["errors"])]
        lines += ["", "| question | what the grader checked | points | |", "|---|---|---|---|"]
        for v in result["verdicts"]:
            note = v["message"] + (f" (expected {v['detail']})" if show_expected and v["detail"] else "")
            lines.append(f"| {v['question']} | {in_table(v['description'])} | {v['earned']:g} / {v['points']:g} | "
                         f"{in_table(note or 'right')} |")
        for (notebook, part), (question, maximum) in sorted(parts.items()):
            if notebook == result["notebook"]:
                row = sheet.get((student, notebook, part), {})
                points, _ = manual_points(row)
                shown = f"{points:g} / {maximum:g}" if points is not None else f"? / {maximum:g}"
                comment = in_table("awaiting a TA" if points is None else row.get("comment", ""))
                lines.append(f"| {question} | a TA reads your `{part}` | {shown} | {comment} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_reports(grades: Path, results: dict, parts: dict, show_expected: bool, details: dict) -> dict:
    """Write everything under `grades`; returns the gradebook's rows."""
    sheet_path = grades / "manual-points.csv"
    write_text(sheet_path, sheet_text(results, parts, read_sheet(sheet_path)))
    sheet = read_sheet(sheet_path)
    late = details.get("late", {})
    book = totals(results, parts, sheet, late)
    highest = maxima(results, parts)
    write_text(grades / "gradebook.csv", gradebook_text(book, highest))
    for student in lms.write_exports(grades, book, sum(highest.values()), details.get("roster", {})):
        print(f"canvas.csv, moodle.csv: {student}'s total is left empty (not graded)", file=sys.stderr)
    by_student = {}
    for result in results.values():
        by_student.setdefault((result["student"], result["slug"]), []).append(result)
    feedback = {}
    for (student, slug), own in by_student.items():
        feedback[student, slug] = feedback_text(student, own, parts, sheet, show_expected, late.get(student))
        write_text(grades / "feedback" / f"{slug}.md", feedback[student, slug])
    drawn = {(student, slug): handback.pages_of(grades, slug, own, manual_rows(student, parts, sheet))
             for (student, slug), own in by_student.items()}
    handback.render_pages([page for own in drawn.values() for page in own])     # the class's pages, a core each
    for (student, slug), text in feedback.items():
        handback.write_handback(grades, student, slug, drawn[student, slug], text)
    from instructor.site import local_mathjax

    local_mathjax(grades)                  # the TA pages typeset LaTeX with it, offline
    course = course_model.load()
    for (notebook, part), (question, maximum) in parts.items():
        answers = [(r["student"], r["slug"], r["written"].get(part, ""), r["figures"].get(part, []),
                    r.get("handed_in_figures", {}).get(part, []))
                   for r in sorted(results.values(), key=lambda r: r["student"])
                   if r["notebook"] == notebook and r["status"] != "missing"]
        write_text(grades / "manual" / notebook / f"{part}.html",
                   pages.ta_page(notebook, part, question, course.question(notebook, question).text, maximum, answers,
                                 details.get("mode", "quick")))
    write_text(grades / "details.json", json.dumps({**details, "gradebook": book}, indent=1, sort_keys=True))
    return book


def manual_rows(student: str, parts: dict, sheet: dict) -> dict:
    """notebook -> (question, part, points or None, maximum, comment) of each TA part, for the hand-back pages."""
    rows = {}
    for (notebook, part), (question, maximum) in sorted(parts.items()):
        row = sheet.get((student, notebook, part), {})
        rows.setdefault(notebook, []).append((question, part, manual_points(row)[0], maximum, row.get("comment", "")))
    return rows


def maxima(results: dict, parts: dict) -> dict:
    """column -> the most points it can give: the hidden tests' and the TAs'."""
    best = {}
    for result in results.values():
        for v in result["verdicts"]:
            key = (v["notebook"], v["question"], v["test"])
            best[key] = v["points"]
    out = {}
    for (notebook, question, test), points in best.items():
        name = column_of(notebook, question, f"the result of test {test}")
        out[name] = out.get(name, 0) + points
    for (notebook, part), (question, maximum) in parts.items():
        name = column_of(notebook, question, f"the TA part {part}")
        out[name] = out.get(name, 0) + maximum
    return out
