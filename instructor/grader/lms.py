"""The course around the grades: each student's late deduction, and the gradebook in the forms an LMS imports.

Lateness comes from the hand-in times that `make collect` wrote in SUBMISSIONS/.collected.json, judged by the course
file's deadline and late policy (instructor/course.py); a class laid out by hand has no times, so nothing is deducted.
The deduction is a fraction of the student's whole total (hidden tests, models and TAs' points alike), said in their
feedback.

Exports, beside gradebook.csv (one column per question):
  canvas.csv   Canvas's gradebook import: Student, ID, SIS User ID, SIS Login ID, Section, then the homework's total,
               with the "Points Possible" row. ID is the roster's `canvas_id` (empty when the roster has none: Canvas
               then matches the SIS User ID, the roster's `id`).
  moodle.csv   Moodle's "Import grades from CSV": ID number, Email address, Full name, then the total; map "ID number"
               (or the email) to the user and the total to the assignment when importing.
A total the grader could not finish ("not graded") is left empty in both, and named when they are written.
"""
import csv
import io
import json
import sys
from datetime import datetime
from pathlib import Path

from instructor import collect
from instructor import course as courses

from .files import write_text

TOTAL = "Homework total"


def course_of(submissions: Path, given: Path | None) -> Path | None:
    """The course file: the one given (COURSE=), else the one `make collect` collected the class with."""
    if given is not None:
        return given
    try:
        recorded = json.loads((submissions / ".collected.json").read_text()).get("course")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(recorded) if isinstance(recorded, str) and Path(recorded).is_file() else None


def lateness(submissions: Path, course_file: Path | None) -> dict:
    """student folder -> {"deducted": fraction, "sentence": for the feedback}, from .collected.json and the course."""
    collected = submissions / ".collected.json"
    if not collected.is_file():
        return {}
    if course_file is None:
        raise SystemExit(f"{collected} holds hand-in times but no course file was given: give COURSE=<course.toml> "
                         "(its deadline and late policy decide the deductions)")
    course = courses.load(course_file)
    try:
        students = json.loads(collected.read_text())["students"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"{collected} is not as `make collect` writes it ({type(error).__name__}): collect again") \
            from None
    found = {}
    for student, entry in students.items():
        submitted = entry.get("submitted")
        late = (courses.late(course, datetime.fromisoformat(submitted)) if submitted
                else courses.Lateness(None, 0, 0.0, False, "nothing handed in"))
        found[student] = {"deducted": late.deducted, "sentence": late.sentence,
                           "problems": [str(p) for p in entry.get("problems", [])]}
    return found


def roster(course_file: Path | None, submissions: Path) -> dict:
    """id -> the roster's row, for a class that `make collect` made (else {}: folder names stand in)."""
    if course_file is None or not (submissions / ".collected.json").is_file():
        return {}
    course = courses.load(course_file)
    print(f"course file {course_file}: deadline {course.deadline.isoformat()}, roster {course.roster}", flush=True)
    if not course.roster.is_file():
        print(f"WARNING: no roster {course.roster}: canvas.csv and moodle.csv show roster ids alone, with no names, "
              "emails or Canvas ids; give COURSE=<the course file you collected with>", file=sys.stderr)
        return {}
    return {row["id"]: row for row in collect.read_roster(course.roster)}


def csv_text(rows: list) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL).writerows(rows)      # in a `;` locale too, every field stays one field
    return buffer.getvalue()


def write_exports(grades: Path, book: dict, maximum: float, students: dict) -> list:
    """canvas.csv and moodle.csv from the gradebook's totals; returns the students left blank (not graded)."""
    from .report import NOT_GRADED, cell

    blank = sorted(s for s, row in book.items() if row["total"] == NOT_GRADED)
    canvas = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", TOTAL],
              ["Points Possible", "", "", "", "", f"{maximum:g}"]]
    moodle = [["ID number", "Email address", "Full name", TOTAL]]
    for student in sorted(book):
        row, total = students.get(student, {}), book[student]["total"]
        shown = "" if total == NOT_GRADED else f"{total:g}"
        canvas.append([cell(row.get("name") or student), cell(row.get("canvas_id", "")), cell(student),
                       cell(row.get("email", "")), "", shown])
        moodle.append([cell(student), cell(row.get("email", "")), cell(row.get("name") or student), shown])
    write_text(grades / "canvas.csv", csv_text(canvas))
    write_text(grades / "moodle.csv", csv_text(moodle))
    return blank
