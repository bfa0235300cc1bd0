"""The grader: `python -m instructor.grader grade|gradebook|key|check-key` (make grade, make gradebook, make key).

    grade SUBMISSIONS [--grades grades] [-j 2]   grade a class: one folder per student holding their notebooks
    gradebook [--grades grades]                  merge the TAs' points into gradebook.csv again, running nothing
    key                                          run the solution notebooks as a submission; write instructor/key.json
    check-key                                    exit 1 when the key lacks a model test of the bank

Stages: plan.py (read the class) -> rebuild.py and jobs.py (the release with each student's answers) -> run.py
(sandboxed, on cluster.py's engine; probing.py runs the probes, launch.py starts and watches the processes) ->
score.py (the grader's own measurements) -> report.py (gradebook, feedback, TA pages). docs/instructors.md says what
each protects against and what it does not.
"""
import dataclasses
import datetime
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat

from instructor import course_model

from . import bank, cluster, jobs, lms, plan, report, run, sandbox, unsandboxed
from .config import GraderConfig
from .run import Settings

ROOT = Path(__file__).resolve().parents[2]
KEY = ROOT / "instructor" / "key.json"
GRADER = Path(__file__).resolve().parent


def key_version() -> str:
    """A digest of everything that decides a grade: the grader's code, the bank, and the solution notebooks' cells."""
    digest = hashlib.sha256()
    for path in sorted(GRADER.rglob("*.py")) + sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        text = path.read_text()
        if path.suffix == ".ipynb":
            text = json.dumps([c["source"] for c in json.loads(text)["cells"]])
        digest.update(path.name.encode() + text.encode())
    return digest.hexdigest()[:16]


def read_key() -> dict:
    try:
        return json.loads(KEY.read_text())["models"]
    except (OSError, KeyError, json.JSONDecodeError):
        return {}


def settings_from(config: GraderConfig, key: dict) -> Settings:
    sandboxed = config.sandboxed
    if sandboxed and (problem := sandbox.problem()):
        raise SystemExit(f"the grader's sandbox does not work here: {problem}\nFix that, or grade without isolation "
                         "(opt-in, at your own risk; docs/instructors.md): make grade ... GRADE_ARGS=--no-sandbox")
    if not sandboxed:
        print("WARNING: --no-sandbox: submissions run with your rights and can read, write and connect to whatever "
              "you can. The grader's files and the gradebook are protected only by being written last, after every "
              "student process is dead.", file=sys.stderr)
    if not sandboxed and config.jobs > 1:
        print("WARNING: without the sandbox, notebooks are graded one at a time (-j 1).", file=sys.stderr)
        config.jobs = 1
    return Settings(mode=config.mode, cell_timeout=config.cell_timeout,
                    notebook_timeout=config.notebook_timeout, sandboxed=sandboxed, key_version=key_version(), key=key,
                    threads=1)      # one thread per job: a model's figures never depend on the cores or on -j


def grade(config: GraderConfig) -> int:
    submissions, grades = config.submissions.resolve(), config.grades.resolve()
    if not submissions.is_dir():
        raise SystemExit(f"SUBMISSIONS={submissions} is not a folder: give the folder that holds one folder per "
                         "student")
    if grades == ROOT or ROOT in grades.parents and grades.name in ("notebooks", "instructor", "helpers", "answers"):
        raise SystemExit(f"--grades {grades} would write over the course's own files: choose another folder")
    settings = settings_from(config, read_key())
    course = lms.course_of(submissions, config.course)
    late, roster = lms.lateness(submissions, course), lms.roster(course, submissions)   # a bad file stops here
    all_jobs, handed_in_figures = [], {}
    shutil.rmtree(grades / "submitted", ignore_errors=True)

    def prepare(student: plan.Student) -> None:
        """The student's jobs, the notebooks as handed in (for the hand-back pages) and their figures (for the TA
        pages); then the notebooks are let go."""
        nonlocal all_jobs
        try:
            all_jobs += jobs.jobs_for(student)
        except Exception as error:        # one student's files never stop the class: named, that student unrun
            student.problems.append(f"the grader could not read these notebooks ({type(error).__name__}); a TA "
                                    "has the files")
        for stem, nb in student.notebooks.items():
            handed_in_figures[(student.slug, stem)] = run.figures(nb)
            report.write_text(grades / "submitted" / student.slug / f"{stem}.ipynb", nbformat.writes(nb))
        student.notebooks = {}

    students, skipped = plan.read_class(submissions, course_model.load().graded_notebooks(), then=prepare)
    if not students:
        raise SystemExit(f"{submissions} holds no student folders")
    for name in skipped:
        print(f"skipped {name}", file=sys.stderr)
    regrade = chosen(students, config.students) if config.students else None
    print(f"grading {len(students)} student(s) in {submissions} ({settings.mode} settings, "
          f"{'sandboxed' if settings.sandboxed else 'NO SANDBOX'}, {config.dask.where(config.jobs)})", flush=True)
    if settings.sandboxed:
        results, ran = cluster.run_all(all_jobs, settings, grades / ".cache", workers=config.jobs, regrade=regrade,
                                       dask=config.dask)
    else:
        # without the sandbox a submission can write into grades/: it is put back, and no cached result is trusted
        grades.mkdir(parents=True, exist_ok=True)
        before = unsandboxed.Snapshot([grades])
        with tempfile.TemporaryDirectory(prefix="dgm-cache-") as cache:
            results, ran = cluster.run_all(all_jobs, settings, Path(cache), workers=1, regrade=regrade,
                                           dask=config.dask, in_memory=True)
        for line in before.restore():
            print(f"WARNING: while submissions ran, grades/: {line}", file=sys.stderr)
    sandbox.sweep(0)                     # the jobs' empty cgroups
    by_job = {(r["slug"], r["notebook"]): r for r in results.values()}
    for student in students:
        for stem in course_model.load().graded_notebooks():
            if (student.slug, stem) not in by_job:
                by_job[(student.slug, stem)] = jobs.not_handed_in(student, stem)
        by_job[(student.slug, course_model.load().graded_notebooks()[0])]["student_problems"] = student.problems
    for (slug, stem), figures in handed_in_figures.items():     # for the TA pages, beside the grader's rerun
        by_job[(slug, stem)]["handed_in_figures"] = figures
    write_outputs(grades, by_job, settings, config.show_expected, submissions, ran, len(all_jobs), late, roster)
    return not_graded(by_job.values())


def not_graded(results) -> int:
    """0 when the grader graded every notebook; else 3, having said how many it failed on, why, and what to do."""
    failures = [r for r in results if r.get("grader_failure")]
    if not failures:
        return 0
    causes = {}
    for result in failures:
        causes.setdefault(result["grader_failure"], []).append(f"{result['student']}/{result['notebook']}")
    print(f"NOT GRADED: the grader failed on {len(failures)} notebook(s); they show \"not graded\" in the gradebook "
          "and the feedback, not a score:", file=sys.stderr)
    for cause, where in sorted(causes.items()):
        print(f"  {len(where)} x {cause}\n      e.g. {', '.join(where[:3])}", file=sys.stderr)
    print("Fix the cause, then run the same command again: only these notebooks are graded again, the rest come "
          "from the cache.", file=sys.stderr)
    return 3


def chosen(students: list, names: list) -> set:
    """The slugs of the students named (by folder name or the name their files have in grades/), all or nothing."""
    found = {s.slug for s in students for n in names if n in (s.name, s.slug)}
    unknown = [n for n in names if not any(n in (s.name, s.slug) for s in students)]
    if unknown:
        raise SystemExit(f"no student {', '.join(map(repr, unknown))} in the submissions; they are: "
                         + ", ".join(sorted(s.name for s in students)[:20]) + (" ..." if len(students) > 20 else ""))
    return found


def write_outputs(grades: Path, by_job: dict, settings: Settings, show_expected: bool, submissions, ran: int,
                  total: int, late: dict | None = None, roster: dict | None = None) -> None:
    """The executed copies, then every report: the last files written, once every job has ended."""
    executed = grades / "executed"
    if executed.exists():
        shutil.rmtree(executed)
    for (slug, stem), result in by_job.items():
        copy = result.get("executed") or cluster.executed_copy(result)
        if copy:
            report.write_text(executed / slug / f"{stem}.ipynb", json.dumps(copy, indent=1))
    results = {f"{slug}/{stem}": {k: v for k, v in r.items() if k not in ("executed", "executed_file")}
               for (slug, stem), r in by_job.items()}
    details = {"when": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "mode": settings.mode,
               "late": late or {}, "roster": roster or {},
               "sandboxed": settings.sandboxed, "submissions": str(submissions), "key_version": settings.key_version,
               "jobs": total, "ran": ran, "results": results}
    book = report.write_reports(grades, results, course_model.load().ta_parts(), show_expected, details)
    say_sheet_problems(book)
    pending = sum(1 for row in book.values() if row["TA parts to grade"])
    if pending:
        print(f"{pending} student(s) have TA parts still to grade (column `TA parts to grade`): their totals, in the "
              "gradebook and the exports, count those parts as 0 until the TAs' points are in", file=sys.stderr)
    print(f"wrote {grades / 'gradebook.csv'}, feedback in {grades / 'feedback'} and {grades / 'handback'} (a page "
          f"per notebook and a zip per student), TA pages in {grades / 'manual'} "
          f"({ran} of {total} notebook(s) graded now, the rest from the cache)")


def say_sheet_problems(book: dict) -> list:
    """Name each value of the TAs' sheet that was left out (not a number, or out of range); returns them."""
    problems = [p for row in book.values() for p in row["problems"]]
    for problem in problems:
        print(f"manual-points.csv: {problem}", file=sys.stderr)
    return problems


def gradebook(config: GraderConfig) -> int:
    grades = config.grades.resolve()
    try:
        details = json.loads((grades / "details.json").read_text())
    except (OSError, json.JSONDecodeError):
        raise SystemExit(f"{grades / 'details.json'} is missing: run `make grade` first") from None
    book = report.write_reports(grades, details["results"], course_model.load().ta_parts(), config.show_expected,
                                details)
    problems = say_sheet_problems(book)
    print(f"wrote {grades / 'gradebook.csv'} from the last grading and {grades / 'manual-points.csv'}"
          + (f"; the {len(problems)} value(s) named above were left out: correct them and run `make gradebook` "
             "again" if problems else ""))
    return 1 if problems else 0


def make_key(config: GraderConfig) -> int:
    """Run the model tests on the solution notebooks' answers, sandboxed as for a student (their notebooks are not
    executed): the models the grader trains with them give the key's reference values."""
    with tempfile.TemporaryDirectory(prefix="dgm-key-") as tmp:
        reference = Path(tmp) / "submissions" / "reference"
        reference.mkdir(parents=True)
        for stem in course_model.load().graded_notebooks():
            shutil.copy(ROOT / "notebooks" / f"{stem}.ipynb", reference / f"{stem}.ipynb")
        settings = dataclasses.replace(settings_from(config, {}), execute_notebooks=False)
        students, _ = plan.read_class(reference.parent, course_model.load().graded_notebooks())
        measuring = {t.notebook for t in bank.tests() if isinstance(t, bank.ModelTest)}
        results, _ = cluster.run_all([j for j in jobs.jobs_for(students[0]) if j.notebook in measuring], settings,
                                     Path(tmp) / "cache", workers=config.jobs, dask=config.dask)
    if not_graded(results.values()):
        raise SystemExit("instructor/key.json was not written")
    measured = {name: value for r in results.values() for name, value in r.get("measured", {}).items()}
    missing = [t.name for t in bank.tests() if isinstance(t, bank.ModelTest) and measured.get(t.name) is None]
    if missing:
        raise SystemExit(f"the grader trained no usable model for {', '.join(missing)} with the solution's answers: "
                         "see that model test's feedback in a `make grade` of the solution notebooks")
    KEY.write_text(json.dumps({"about": "Written by `make key`: each model test's value for the model that the grader "
                                        "trains with the solution notebooks' answers. A student's model must reach it "
                                        "within the test's tolerance.",
                               "models": {k: round(v, 6) for k, v in sorted(measured.items())}},
                              indent=1) + "\n")
    print(f"wrote {KEY.relative_to(ROOT)}: {len(measured)} model values")
    return 0


def check_key(config: GraderConfig) -> int:
    key = read_key()
    missing = [t.name for t in bank.tests() if isinstance(t, bank.ModelTest) and t.name not in key]
    print("\n".join(f"instructor/key.json has no value for the model test {m}: run `make key`" for m in missing)
          or "instructor/key.json has a value for every model test")
    return 1 if missing else 0


def main(argv=None, environ=None) -> int:
    config = GraderConfig.from_command_line(argv, environ, description=__doc__)
    command = {"grade": grade, "gradebook": gradebook, "key": make_key, "check-key": check_key}[config.command]
    try:
        return command(config)
    except course_model.CourseError as error:       # a result, test or part of a question the course does not ask
        raise SystemExit(f"error: {error}") from None


if __name__ == "__main__":
    raise SystemExit(main())
