"""The course file and the late policy, against cases worked out by hand."""
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from instructor import course

ROOT = Path(__file__).resolve().parents[2]
COURSE = """deadline = "2026-03-13T23:59:00+01:00"
roster = "roster.csv"
[late]
grace_minutes = 15
penalty_per_day = 0.1
{limit}
"""


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "course.toml"
    path.write_text(text)
    return path


@pytest.fixture
def policy(tmp_path):
    return course.load(write(tmp_path, COURSE.format(limit="cap = 0.5")))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_the_committed_course_file_loads():
    loaded = course.load(ROOT / "course.toml")
    assert loaded.deadline == datetime(2026, 3, 13, 23, 59, tzinfo=timezone(timedelta(hours=1)))
    assert (loaded.grace, loaded.penalty_per_day, loaded.cap) == (timedelta(minutes=15), 0.1, 0.5)
    assert loaded.roster == ROOT / "roster.csv"


@pytest.mark.parametrize("submitted, days, deducted, sentence", [
    ("2026-03-13T23:00:00+01:00", 0, 0.0, "handed in on time"),
    ("2026-03-13T23:59:00+01:00", 0, 0.0, "handed in on time"),
    ("2026-03-14T00:09:00+01:00", 0, 0.0,
     "handed in 10 minutes after the deadline, inside the 15 minutes of grace: nothing deducted"),
    ("2026-03-13T23:09:00+00:00", 0, 0.0,
     "handed in 10 minutes after the deadline, inside the 15 minutes of grace: nothing deducted"),
    ("2026-03-14T00:14:00+01:00", 0, 0.0,
     "handed in 15 minutes after the deadline, inside the 15 minutes of grace: nothing deducted"),
    ("2026-03-14T00:15:00+01:00", 1, 0.1, "handed in 16 minutes late: 10% deducted (10% per started day, at most 50%)"),
    ("2026-03-15T00:14:00+01:00", 1, 0.1,
     "handed in 1 day 15 minutes late: 10% deducted (10% per started day, at most 50%)"),
    ("2026-03-15T00:15:00+01:00", 2, 0.2,
     "handed in 1 day 16 minutes late: 20% deducted (10% per started day, at most 50%)"),
    ("2026-03-15T02:59:00+01:00", 2, 0.2,
     "handed in 1 day 3 hours late: 20% deducted (10% per started day, at most 50%)"),
    ("2026-03-17T00:14:00+01:00", 3, 0.3,
     "handed in 3 days 15 minutes late: 30% deducted (10% per started day, at most 50%)"),
    ("2026-03-20T12:00:00+01:00", 7, 0.5,
     "handed in 6 days 12 hours late: 50% deducted (10% per started day, at most 50%)"),
])
def test_lateness_by_hand(policy, submitted, days, deducted, sentence):
    result = course.late(policy, at(submitted))
    assert (result.days, result.deducted, result.refused, result.sentence) == (days, deducted, False, sentence)


def test_past_the_last_day_accepted_nothing_counts(tmp_path):
    strict = course.load(write(tmp_path, COURSE.format(limit="refuse_after_days = 3")))
    assert strict.cap == 1.0
    three = course.late(strict, at("2026-03-17T00:14:00+01:00"))
    assert (three.days, three.deducted, three.refused) == (3, 0.3, False)
    four = course.late(strict, at("2026-03-17T00:15:00+01:00"))
    assert (four.days, four.deducted, four.refused) == (4, 1.0, True)
    assert four.sentence == ("handed in 3 days 16 minutes late, after the last day accepted (3 days late): "
                             "not accepted, 100% deducted")


def test_an_unknown_time_costs_nothing_and_a_time_without_zone_is_refused(policy):
    assert course.late(policy, None).deducted == 0.0
    with pytest.raises(ValueError, match="no time zone"):
        course.late(policy, datetime(2026, 3, 14, 12, 0))


@pytest.mark.parametrize("text, words", [
    (COURSE.replace("+01:00", "").format(limit="cap = 0.5"), "`deadline` is '2026-03-13T23:59:00', not a date"),
    (COURSE.replace("2026-03-13T", "13.3.2026 ").format(limit="cap = 0.5"), 'e.g. deadline = "2026-03-13T23:59'),
    (COURSE.format(limit="cap = 1.5"), "`late.cap` is 1.5, not a number from 0 to 1"),
    (COURSE.replace("0.1", '"10%"').format(limit="cap = 0.5"), "`late.penalty_per_day` is '10%'"),
    (COURSE.format(limit=""), "`late.cap` is missing"),
    (COURSE.format(limit="refuse_after_days = 2.5"), "`late.refuse_after_days` is 2.5"),
    (COURSE.split("[late]")[0], "`late` is missing. Add a [late] table"),
    (COURSE.replace('roster = "roster.csv"', "").format(limit="cap = 0.5"), "`roster` is None"),
    ("deadline = [", "is not valid TOML"),
])
def test_a_bad_value_names_the_file_the_key_and_the_fix(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(SystemExit) as stop:
        course.load(path)
    assert str(path) in str(stop.value) and words in str(stop.value)


def test_a_missing_course_file_says_where_to_start(tmp_path):
    with pytest.raises(SystemExit, match="copy the repository's course.toml"):
        course.load(tmp_path / "nowhere.toml")
