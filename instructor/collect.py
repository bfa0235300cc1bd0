"""`make collect`: a Canvas or Moodle download, or a roster's GitHub Classroom repositories, into the folder per
student that `make grade` reads, keyed by the roster's student id (docs/instructors.md).

    python -m instructor.collect canvas submissions.zip --course course.toml --out ~/hw1/submissions
    python -m instructor.collect moodle download.zip --course course.toml --out ~/hw1/submissions
    python -m instructor.collect github classroom_roster.csv --course course.toml --out ~/hw1/submissions \
        --repo-template 'https://github.com/{org}/{assignment}-{github}'

It writes OUT/<roster id>/<notebook>.ipynb (every roster student gets a folder, empty when nothing came), the files
of hand-ins that match no roster student under OUT/.unmatched/ (named in the output, never graded), and
OUT/.collected.json, read by the grader:

    {"collected": "2026-03-14T09:00:00+01:00",            # when this ran, ISO 8601 in the deadline's offset
     "source": "canvas",                                  # "canvas", "moodle" or "github"
     "course": "/home/me/hw1/course.toml",                # the course file collected with: make grade's default
     "students": {"<roster id>": {"name": "<the roster's name>",
                                  "submitted": "2026-03-14T01:10:00+01:00",   # or null: nothing handed in
                                  "files": ["01_ancestral_sampling.ipynb"],   # as written in OUT/<roster id>/
                                  "problems": ["<a sentence for the student's feedback>"]}}}

OUT is built next to itself and renamed into place: a failed run leaves nothing, and an existing OUT is replaced only
with --force and only when it is a folder this command made (it holds .collected.json); an empty one is filled.
"""
import argparse
import csv
import json
import os
import re
import shutil
import tempfile
import unicodedata
from datetime import datetime
from pathlib import Path

from instructor import course as courses
from instructor import course_model, sources

SAFE_ID = re.compile(r"^[A-Za-z0-9@+_-][A-Za-z0-9@+._-]{0,99}$")
ALIASES = {"id": ("id", "identifier"), "github": ("github", "github_username")}


def read_roster(path: Path) -> list:
    """The roster's rows as dicts with `id`, `name`, `email`, `github` (GitHub Classroom's columns accepted too)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
    except FileNotFoundError:
        raise SystemExit(f"error: no roster {Path(path).resolve()}: write it (columns id,name,email,github), or copy "
                         "course.toml, set its `roster`, and give COURSE=<that file>") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise SystemExit(f"error: {path} is not a UTF-8 CSV file ({error}): save it as CSV UTF-8") from None
    if not any(a in columns for a in ALIASES["id"]):
        raise SystemExit(f"error: {path} has no column `id` (columns: {', '.join(columns) or 'none'}): add the "
                         "student id the LMS exports, as column `id`")
    students, seen = [], set()
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if isinstance(v, str)}
        for name, aliases in ALIASES.items():
            row[name] = next((row[a] for a in aliases if row.get(a)), "")
        if not SAFE_ID.match(row["id"]) or row["id"] in seen:
            problem = "appears twice" if row["id"] in seen else "is not usable as a folder name"
            raise SystemExit(f"error: {path}, line {line}: the id {row['id']!r} {problem}: give each student one "
                             "id of letters, digits and . _ - + @")
        seen.add(row["id"])
        students.append({"name": "", "email": "", **row})
    return students


def normal(name: str) -> str:
    """A name as matched: accents, case, spacing and `Last, First` order ignored."""
    if "," in name:
        last, first = name.split(",", 1)
        name = f"{first} {last}"
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    return " ".join(plain.casefold().split())


def match(kind: str, handins: dict, roster: list) -> tuple:
    """({roster id: Handin}, [unmatched Handin], [sentences]): Canvas by user id, Moodle by name or email."""
    matched, unmatched, said = {}, [], []
    if kind == "canvas":
        column = "canvas_id" if any(r.get("canvas_id") for r in roster) else "id"
        by_key = {r[column]: r["id"] for r in roster if r.get(column)}
    else:
        by_key, twice = {}, set()
        for r in roster:
            for key in {normal(r["name"]), r["email"].casefold()} - {""}:
                twice.update({key} & by_key.keys())
                by_key[key] = r["id"]
    for handin in handins.values():
        key = handin.key if kind == "canvas" else (handin.email or normal(handin.key)).casefold()
        if kind != "canvas" and key in twice:
            said.append(f"{handin.label}: two roster students have this name; add their emails and collect again")
            unmatched.append(handin)
        elif key in by_key and by_key[key] not in matched:
            matched[by_key[key]] = handin
        else:
            unmatched.append(handin)
    return matched, unmatched, said


def read_times(path: Path, tz) -> dict:
    """id -> hand-in time from a CSV with columns `id` and `submitted` (ISO 8601; no offset: the deadline's)."""
    times = {}
    if not Path(path).is_file():
        raise SystemExit(f"error: --submitted {path}: no file {Path(path).resolve()} (a relative path is read from the "
                         "folder make runs in, the repository's: give the full path)")
    with open(path, newline="", encoding="utf-8-sig") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                time = datetime.fromisoformat(row["submitted"].strip())
            except (KeyError, AttributeError, ValueError):
                raise SystemExit(f"error: {path}, line {line}: no ISO 8601 time in column `submitted` (columns id,"
                                 "submitted; e.g. 2026-03-14T01:10:00+01:00)") from None
            key = (row.get("id") or "").strip()
            if key in times:
                raise SystemExit(f"error: {path}, line {line}: a second time for {key!r}: keep one row per student")
            times[key] = time if time.utcoffset() is not None else time.replace(tzinfo=tz)
    return times


def check_out(out: Path, force: bool) -> None:
    """Refuse, before reading anything, an OUT that this run may not replace."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise SystemExit(f"error: {out} exists and is not a folder: give --out a new folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / ".collected.json").is_file():
            raise SystemExit(f"error: {out} holds files that make collect did not write: give a new folder (nothing "
                             "was changed)")
        if not force:
            raise SystemExit(f"error: {out} was collected before: give a new folder, or --force (make collect "
                             "COLLECT_ARGS=--force) to replace it (nothing was changed)")


def write(path: Path, data: bytes) -> None:
    """A new file, never through a link and never over another file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def build(folder: Path, kind: str, roster: list, matched: dict, unmatched: list, tz) -> dict:
    """Write the per-student folders and the unmatched files into `folder`; return .collected.json's content."""
    students = {}
    for row in sorted(roster, key=lambda r: r["id"]):
        handin = matched.get(row["id"])
        (folder / row["id"]).mkdir()
        files = sorted(handin.files) if handin else []
        for name in files:
            write(folder / row["id"] / name, handin.files[name][2])
        times = handin.times if handin and handin.files else []
        problems = list(handin.problems) if handin else []
        if not files:
            problems.append("nothing handed in")
        students[row["id"]] = {"name": row["name"], "submitted": max(times).astimezone(tz).isoformat() if times
                               else None, "files": files, "problems": problems}
    for n, handin in enumerate(unmatched, start=1):
        place = folder / ".unmatched" / f"{n:03d}_{sources.safe_name(handin.key)}"
        place.mkdir(parents=True)
        for name, entry in handin.files.items():
            write(place / name, entry[2])
    return {"collected": datetime.now(tz).isoformat(timespec="seconds"), "source": kind, "students": students}


def place(built: Path, out: Path) -> None:
    """Put the built folder where OUT was (check_out allowed it); the old one goes only once the new one is there."""
    if out.is_dir() and any(out.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.replaced-", dir=out.parent))
        out.rename(old / out.name)
        built.rename(out)
        shutil.rmtree(old)
    else:
        if out.is_dir():
            out.rmdir()
        built.rename(out)


def collect(kind: str, source: Path, course: courses.Course, out: Path, force: bool = False,
            times: Path | None = None, template: str | None = None) -> dict:
    """The whole run: read, match, write OUT; returns .collected.json's content."""
    out = out.expanduser().absolute()
    check_out(out, force)
    tz = course.deadline.tzinfo
    expected = course_model.load().graded_notebooks()
    roster = read_roster(source if kind == "github" else course.roster)
    said = []
    if kind == "github":
        with tempfile.TemporaryDirectory(prefix="collect-") as scratch:
            matched = {r["id"]: sources.github(r["id"], url, course.deadline, expected, Path(scratch))
                       for r in roster if (url := repository(r, course, template))}
        for r in roster:
            if r["id"] not in matched:
                matched[r["id"]] = sources.Handin(r["id"], r["id"], problems=["no GitHub username in the roster"])
        unmatched = []
    else:
        handins, said = getattr(sources, kind)(source, tz, expected)
        matched, unmatched, more = match(kind, handins, roster)
        said += more
    if times:
        known = read_times(times, tz)
        for rid, handin in matched.items():
            time = known.get(rid) or known.get(handin.key)
            if rid in known and handin.key in known and rid != handin.key and known[rid] != known[handin.key]:
                raise SystemExit(f"error: {times}: two times for one student, under {rid!r} and {handin.key!r}: "
                                 "keep one row per student")
            if time and handin.files:
                handin.times = [time]
    out.parent.mkdir(parents=True, exist_ok=True)
    built = Path(tempfile.mkdtemp(prefix=f".{out.name}.collecting-", dir=out.parent))
    try:
        result = {**build(built, kind, roster, matched, unmatched, tz), "course": str(course.path.absolute())}
        write(built / ".collected.json", (json.dumps(result, indent=1, ensure_ascii=False) + "\n").encode())
        place(built, out)
    finally:
        if built.exists():
            shutil.rmtree(built)
    report(out, result, unmatched, said)
    return result


def repository(row: dict, course: courses.Course, template: str | None) -> str:
    """The student's repository: the roster's `repository`, else the template filled in."""
    if row.get("repository"):
        return row["repository"]
    if not row["github"]:
        return ""
    template = template or course.github.get("repo_template")
    if not template:
        raise SystemExit("error: no repository for the roster's students: give --repo-template (e.g. "
                         "'https://github.com/{org}/{assignment}-{github}') or a column `repository`")
    try:
        return template.format(**{**course.github, "github": row["github"], "id": row["id"]})
    except (KeyError, IndexError, ValueError) as error:
        raise SystemExit(f"error: the repository template {template!r} names {error}, which neither the roster nor "
                         f"[github] of {course.path} gives: use {{org}}, {{assignment}}, {{github}}, {{id}}") from None


def report(out: Path, result: dict, unmatched: list, said: list) -> None:
    students = result["students"].values()
    print(f"{sum(bool(s['files']) for s in students)} of {len(students)} roster students handed in; "
          f"{out} is ready for make grade SUBMISSIONS={out}")
    for sentence in said:
        print(f"  note: {sentence}")
    for handin in unmatched:
        count = f"{len(handin.files)} file{'s' if len(handin.files) != 1 else ''}"
        print(f"  not on the roster: {handin.label} ({count} kept in {out}/.unmatched/): add the student to the "
              "roster and collect again with --force")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m instructor.collect", description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["canvas", "moodle", "github"])
    parser.add_argument("source", type=Path, help="the LMS's zip, or (github) the classroom roster CSV")
    parser.add_argument("--course", type=Path, default=Path("course.toml"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--force", action="store_true", help="replace an OUT that make collect wrote before")
    parser.add_argument("--submitted", type=Path, help="CSV id,submitted: hand-in times that beat the zip's")
    parser.add_argument("--repo-template", help="e.g. https://github.com/{org}/{assignment}-{github}")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        raise SystemExit(f"error: no file {args.source}: give the {args.kind} download (or roster) as it was saved")
    collect(args.kind, args.source, courses.load(args.course), args.out, args.force, args.submitted,
            args.repo_template)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
