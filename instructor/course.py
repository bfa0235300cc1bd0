"""The course file (course.toml): the deadline, the late policy and the roster, and what lateness costs.

    deadline = "2026-03-13T23:59:00+01:00"   # ISO 8601 with its offset
    roster = "roster.csv"                     # relative to the course file: id,name,email,github[,canvas_id]
    [late]
    grace_minutes = 15
    penalty_per_day = 0.1                     # fraction of the points, per day started after deadline + grace
    cap = 0.5                                 # the most deducted; and/or refuse_after_days = 7 (then 100%)

`late(course, submitted)` is pure: the grader calls it with each student's hand-in time from .collected.json.
"""
import math
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path


@dataclass(frozen=True)
class Course:
    """The deadline, the late policy and the roster's path, as read from the course file."""
    path: Path
    deadline: datetime
    grace: timedelta
    penalty_per_day: float
    cap: float
    refuse_after_days: int | None
    roster: Path
    github: dict


@dataclass(frozen=True)
class Lateness:
    """How late a hand-in was, what it costs, and the sentence that tells the student."""
    after_deadline: timedelta | None     # None: no hand-in time is known
    days: int                            # days started after deadline + grace
    deducted: float                      # fraction of the points taken off, 0 to 1
    refused: bool
    sentence: str


def _bad(path: Path, key: str, problem: str, fix: str) -> SystemExit:
    return SystemExit(f"error: {path}: `{key}` {problem}. {fix}")


def _number(path: Path, table: dict, key: str, low: float, high: float, example: str) -> float:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _bad(path, f"late.{key}", f"is {value!r}, not a number from {low:g} to {high:g}",
                   f"Write it under [late], e.g. {key} = {example}.")
    return float(value)


def load(path) -> Course:
    """The course file at `path`, every value checked: a bad one stops with the file, the key and the fix."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"error: no course file {path}: copy the repository's course.toml and edit it, or give "
                         "--course (make collect COURSE=...)") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SystemExit(f"error: {path} is not valid TOML ({error}): fix the line it names") from None
    raw = data.get("deadline")
    try:
        deadline = datetime.fromisoformat(raw) if isinstance(raw, str) else raw
    except ValueError:
        deadline = None
    if not isinstance(deadline, datetime) or deadline.utcoffset() is None:
        raise _bad(path, "deadline", f"is {raw!r}, not a date and time with its offset",
                   'Write it as ISO 8601 with the offset, e.g. deadline = "2026-03-13T23:59:00+01:00".')
    late = data.get("late")
    if not isinstance(late, dict):
        raise _bad(path, "late", "is missing", "Add a [late] table with grace_minutes, penalty_per_day and cap.")
    grace = _number(path, late, "grace_minutes", 0, 7 * 24 * 60, "15")
    penalty = _number(path, late, "penalty_per_day", 0, 1, "0.1")
    if "cap" not in late and "refuse_after_days" not in late:
        raise _bad(path, "late.cap", "is missing", "Say the most deducted, e.g. cap = 0.5, or refuse_after_days = 7.")
    cap = _number(path, late, "cap", 0, 1, "0.5") if "cap" in late else 1.0
    refuse = late.get("refuse_after_days")
    if refuse is not None and (isinstance(refuse, bool) or not isinstance(refuse, int) or refuse < 0):
        raise _bad(path, "late.refuse_after_days", f"is {refuse!r}, not a whole number of days",
                   "Write e.g. refuse_after_days = 7, or leave it out.")
    roster = data.get("roster")
    if not isinstance(roster, str) or not roster:
        raise _bad(path, "roster", f"is {roster!r}, not a file name",
                   'Name the roster CSV (columns id,name,email,github), e.g. roster = "roster.csv".')
    github = data.get("github", {})
    if not isinstance(github, dict) or not all(isinstance(v, str) for v in github.values()):
        raise _bad(path, "github", "is not a table of strings", 'Write e.g. [github] org = "dgm-course".')
    return Course(path, deadline, timedelta(minutes=grace), penalty, cap, refuse, path.parent / roster, github)


def duration(span: timedelta) -> str:
    """A span as a student reads it: its two largest units that are not 0, e.g. '1 day 3 hours', '1 day 15 minutes'."""
    minutes = int(span.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in ((days, "day"), (hours, "hour"),
                                                                    (minutes, "minute")) if n]
    return " ".join(parts[:2]) or "less than a minute"


def percent(fraction: float) -> str:
    return f"{fraction * 100:.4g}%"


def late(course: Course, submitted: datetime | None) -> Lateness:
    """What a hand-in at `submitted` (timezone-aware; None: unknown) costs under the course's late policy."""
    if submitted is None:
        return Lateness(None, 0, 0.0, False, "no hand-in time is known: no late deduction")
    if submitted.utcoffset() is None:
        raise ValueError(f"{submitted} has no time zone: a hand-in time must carry its offset")
    after = submitted - course.deadline
    if after <= timedelta(0):
        return Lateness(after, 0, 0.0, False, "handed in on time")
    if after <= course.grace:
        return Lateness(after, 0, 0.0, False, f"handed in {duration(after)} after the deadline, inside the "
                                              f"{duration(course.grace)} of grace: nothing deducted")
    days = math.ceil((after - course.grace) / timedelta(days=1))
    if course.refuse_after_days is not None and days > course.refuse_after_days:
        return Lateness(after, days, 1.0, True, f"handed in {duration(after)} late, after the last day accepted "
                                                f"({course.refuse_after_days} days late): not accepted, 100% deducted")
    deducted = round(min(days * course.penalty_per_day, course.cap), 6)
    return Lateness(after, days, deducted, False,
                    f"handed in {duration(after)} late: {percent(deducted)} deducted "
                    f"({percent(course.penalty_per_day)} per started day, at most {percent(course.cap)})")
