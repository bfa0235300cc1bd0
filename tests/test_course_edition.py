"""The course edition (docs/instructors.md): the student release, the answer key and the autograder, the HTML pages.

Expensive artefacts are made once per module: one release, and one test class graded once with `make grade -j 2`
(in a copy of the repository, so that nothing a test submission does can reach the working tree). The class:
  reference  the solution notebooks                         -> full marks
  untouched  the release's notebooks as released            -> zero, and the grader finishes
  planted    the reference with one wrong recorded answer   -> loses exactly that id
  looping    one notebook that never ends, one that is fine -> the first times out, the second is graded
  vandal     a notebook that deletes and overwrites what the grader owns -> nothing the grader owns changes
"""
import csv
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import grade  # noqa: E402

PYTHON = sys.executable
VENV = Path(sys.prefix)
CELL_TIMEOUT = 120      # the test class's limits: generous for the reference on a loaded 2-core machine
NOTEBOOK_TIMEOUT = 600
PLANTED_NOTEBOOK = "03_kl_divergence"
LOOPING_NOTEBOOK = "03_kl_divergence"
SKIP_IN_PLANTED = ("04_vae", "06_gan_mnist")   # the two that train models: the comparison needs no second copy
MARKER_BEGIN, MARKER_END = "### BEGIN SOLUTION", "### END SOLUTION"


def digest(paths) -> dict:
    out = {}
    for root in map(Path, paths):
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.is_file():
                out[str(path.relative_to(root.parent))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def code_and_regions(source: str):
    """(lines outside solution regions, lines inside them)."""
    outside, inside, in_region = [], [], False
    for line in source.splitlines():
        if MARKER_BEGIN in line and MARKER_END not in line:
            in_region = True
        elif MARKER_END in line and MARKER_BEGIN not in line:
            in_region = False
        elif in_region:
            inside.append(line)
        else:
            outside.append(line)
    return outside, inside


def reference_notebooks():
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


# --------------------------------------------------------------------------------------------------------------------
# fixtures: one release, one graded test class
# --------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def release(tmp_path_factory):
    out = tmp_path_factory.mktemp("edition") / "release"
    result = subprocess.run([PYTHON, str(ROOT / "tools" / "release.py"), "--out", str(out)], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def key():
    return grade.load_key()


def copy_repository(target: Path) -> Path:
    """What the grader needs, copied (modification times kept, so make sees .venv as up to date)."""
    for name in ("Makefile", "pyproject.toml", "requirements.txt", "requirements-instructor.txt", "QUESTIONS.md"):
        shutil.copy2(ROOT / name, target / name)
    for folder in ("tools", "grading", "helpers", "answers", "notebooks"):
        shutil.copytree(ROOT / folder, target / folder, ignore=shutil.ignore_patterns("__pycache__", ".*"))
    return target


def vandal_source(repo: Path, grades_dir: Path) -> str:
    return f'''import json, pathlib, shutil
repo, grades = pathlib.Path({str(repo)!r}), pathlib.Path({str(grades_dir)!r})
attempts = {{}}
def attempt(name, action):
    try:
        action()
        attempts[name] = "done"
    except Exception as error:
        attempts[name] = type(error).__name__
attempt("delete the key", lambda: (repo / "grading" / "key.json").unlink())
attempt("overwrite the points", lambda: (repo / "grading" / "points.csv").write_text("notebook,id\\n"))
attempt("overwrite a reference notebook", lambda: (repo / "notebooks" / "{PLANTED_NOTEBOOK}.ipynb").write_text("{{}}"))
attempt("plant a file beside the key", lambda: (repo / "grading" / "planted.txt").write_text("x"))
attempt("forge the gradebook", lambda: (grades / "gradebook.csv").write_text("student,total\\nvandal,1000\\n"))
attempt("wipe grades/", lambda: shutil.rmtree(grades))
print("ATTEMPTS " + json.dumps(attempts))
'''


def notebook_with(cells: list) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def planted_cell(key: dict, notebook: str):
    """A cell that records a wrong value for one graded field of one id (the first numeric criterion of the notebook's
    last id whose criteria all pass or fail on numbers), and that criterion."""
    criteria = [c for c in key["criteria"] if c["notebook"] == notebook and c["rule"] not in ("present", "equal")]
    target = criteria[-1]
    path = target["field"].split("/")
    quick = target["quick"]
    wrong = (quick["hi"] if quick.get("hi") is not None else quick["lo"] if quick.get("lo") is not None else 0)
    wrong = wrong + 1 + abs(wrong) if quick.get("hi") is not None else wrong - 1 - abs(wrong)
    source = (f"from helpers import read_records, record, runtime\n"
              f"figures = read_records(runtime.records_dir() / '{notebook}.json')[{target['id']!r}]\n"
              f"node = figures\n"
              + "".join(f"node = node[{p!r}]\n" for p in path[:-1])
              + f"node[{path[-1]!r}] = {wrong!r}   # the planted wrong answer\n"
              f"record({target['id']!r}, figures)\n")
    return source, target


@pytest.fixture(scope="module")
def graded(tmp_path_factory, release, key):
    """The test class, graded once by `make grade -j 2` in a copy of the repository."""
    base = tmp_path_factory.mktemp("grading")
    (base / "repo").mkdir()
    repo = copy_repository((base / "repo").resolve())
    submissions = base / "submissions"
    grades_dir = repo / "grades"
    grades_dir.mkdir()
    (grades_dir / "previous.txt").write_text("a file the grader already owned\n")
    graded_notebooks = key["notebooks"]

    reference = submissions / "reference"
    reference.mkdir(parents=True)
    for path in reference_notebooks():
        shutil.copy(path, reference / path.name)
    untouched = submissions / "untouched"
    untouched.mkdir()
    for path in (release / "notebooks").glob("*.ipynb"):
        shutil.copy(path, untouched / path.name)
    planted = submissions / "planted"
    planted.mkdir()
    for stem in graded_notebooks:
        if stem not in SKIP_IN_PLANTED:
            shutil.copy(ROOT / "notebooks" / f"{stem}.ipynb", planted / f"{stem}.ipynb")
    nb = nbformat.read(ROOT / "notebooks" / f"{PLANTED_NOTEBOOK}.ipynb", as_version=4)
    source, target = planted_cell(key, PLANTED_NOTEBOOK)
    nb.cells.append(nbformat.v4.new_code_cell(source))
    nbformat.write(nb, planted / f"{PLANTED_NOTEBOOK}.ipynb")
    looping = submissions / "looping"
    looping.mkdir()
    first = graded_notebooks[0]
    shutil.copy(ROOT / "notebooks" / f"{first}.ipynb", looping / f"{first}.ipynb")
    nb = nbformat.read(ROOT / "notebooks" / f"{LOOPING_NOTEBOOK}.ipynb", as_version=4)
    start = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "start(" in c.source)
    nb.cells.insert(start + 1, nbformat.v4.new_code_cell("while True:\n    pass"))
    nbformat.write(nb, looping / f"{LOOPING_NOTEBOOK}.ipynb")
    vandal = submissions / "vandal"
    vandal.mkdir()
    nbformat.write(notebook_with([vandal_source(repo, grades_dir)]), vandal / f"{first}.ipynb")

    owned_before = digest([repo / "grading", repo / "notebooks", grades_dir / "previous.txt"])
    submitted_before = digest([submissions])
    command = ["make", "-C", str(repo), "grade", "-j", "2", f"VENV={VENV}", f"SUBMISSIONS={submissions}",
               f"-o{VENV}/.installed", f"-o{VENV}/.instructor",
               f"GRADE_ARGS=--cell-timeout {CELL_TIMEOUT} --timeout {NOTEBOOK_TIMEOUT}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DGM_", "MAKE")) or k == "DGM_GRADE_SANDBOX"}
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3000)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(grades_dir / "gradebook.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {"repo": repo, "grades": grades_dir, "submissions": submissions, "rows": {r["student"]: r for r in rows},
            "details": json.loads((grades_dir / "details.json").read_text()), "seconds": seconds,
            "output": result.stdout + result.stderr, "target": target, "owned_before": owned_before,
            "submitted_before": submitted_before,
            "feedback": {p.stem: p.read_text() for p in (grades_dir / "feedback").glob("*.md")}}


# --------------------------------------------------------------------------------------------------------------------
# the student release
# --------------------------------------------------------------------------------------------------------------------

def test_the_release_holds_what_students_need_and_no_instructor_material(release):
    for name in ("README.md", "Makefile", "pyproject.toml", "requirements.txt", "environment.yml", "QUESTIONS.md",
                 "data/README.md", "helpers/__init__.py", "answers/__init__.py", "answers/export.py",
                 "tools/run_notebooks.py", "tools/check_venv.py", "tests/conftest.py"):
        assert (release / name).is_file(), f"the release lacks {name}"
    assert sorted(p.name for p in (release / "notebooks").glob("*.ipynb")) == [p.name for p in reference_notebooks()]
    for name in ("results", "checkpoints", ".quick", "grading", "grades", "site", "docs", "tools/grade.py",
                 "tools/release.py", "tools/instructor.mk", "requirements-instructor.txt", "tests/test_answers.py",
                 "tests/test_course_edition.py", "tests/test_questions.py"):
        assert not (release / name).exists(), f"{name} must not be in the release"
    assert not list(release.rglob("*.pt")), "no trained checkpoint goes to students"
    assert "nbgrader" not in (release / "requirements.txt").read_text()
    for path in (release / "notebooks").glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, f"{path.name} keeps outputs"
    # answers/ is exported from the stripped notebooks: every answer function there is a stub
    modules = sorted((release / "answers").glob("*.py"))
    assert {p.stem for p in modules} - {"__init__", "export"}, "the release's answers/ was not exported"
    for module in modules:
        if module.stem not in ("__init__", "export"):
            _, inside = code_and_regions(module.read_text())
            assert inside and all("YOUR CODE HERE" in ln or "NotImplementedError" in ln or "YOUR ANSWER" in ln
                                  or "Markdown" in ln for ln in inside if ln.strip()), module.name


def release_text(release: Path, notebooks_only: bool = False) -> str:
    """Every character a student can read in the release: file texts, and notebooks' sources and outputs (only the
    notebooks and answers/, where figures computed by a run could show up, with notebooks_only)."""
    parts = []
    for path in sorted(release.rglob("*")):
        if not path.is_file() or ".git" in path.parts:
            continue
        if notebooks_only and path.suffix != ".ipynb" and path.parent.name != "answers":
            continue
        if path.suffix == ".ipynb":
            nb = nbformat.read(path, as_version=4)
            parts += [c.source for c in nb.cells]
            parts += [json.dumps(c.get("outputs", [])) for c in nb.cells]
            parts.append(json.dumps(nb.metadata))
        else:
            try:
                parts.append(path.read_text())
            except UnicodeDecodeError:
                parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts)


def significant_digits(text: str) -> int:
    mantissa = text.lstrip("-").split("e")[0]
    return len(mantissa.replace(".", "").lstrip("0").rstrip("0") if "." in mantissa else mantissa.strip("0"))


def answer_fragments() -> tuple:
    """(code, numbers), each fragment -> where it comes from. code: each line of answer code (solution regions of the
    reference notebooks and helpers) that appears nowhere outside a region. numbers: each recorded number of the
    committed results (question ids only) at 4 and 6 significant digits, for numbers with at least 4 significant
    digits of their own (inputs like 0.05 are not answers)."""
    public, secret = set(), {}
    sources = [(p.name, c.source) for p in reference_notebooks() for c in nbformat.read(p, as_version=4).cells]
    sources += [(p.name, p.read_text()) for p in (ROOT / "helpers").glob("*.py")]
    for name, source in sources:
        outside, inside = code_and_regions(source)
        public.update(line.strip() for line in outside)
        for line in inside:
            text = line.strip()
            if len(text) >= 16 and not text.startswith("#"):
                secret.setdefault(text, f"answer code in {name}")
    code = {text: where for text, where in secret.items() if text not in public}

    def numbers(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from numbers(v)
        elif isinstance(value, list):
            for v in value:
                yield from numbers(v)
        elif isinstance(value, float) and math.isfinite(value) and value != 0:
            yield value

    questions = {qid for qid, _ in grade.question_index()}
    figures = {}
    for path in sorted((ROOT / "results").glob("*.json")):
        records = json.loads(path.read_text())
        for value in numbers({k: v for k, v in records.items() if k in questions}):
            if significant_digits(f"{value:.12g}") < 4:
                continue
            for digits in (4, 6):
                text = f"{value:.{digits}g}"
                if "e" not in text and significant_digits(text) >= 3:
                    figures.setdefault(text, f"a recorded number of {path.name} ({value!r})")
    return code, figures


def test_no_answer_is_readable_anywhere_in_the_release(release):
    """Answer code is searched for in every file; recorded figures in the notebooks and answers/ (the rest of the
    release is the solutions' own shared code, copied verbatim, where a 4-digit constant can match by chance)."""
    code, figures = answer_fragments()
    assert len(code) > 30 and len(figures) > 50, "too few answer fragments: the test would prove nothing"
    everything, notebooks = release_text(release), release_text(release, notebooks_only=True)
    found = {f: w for f, w in code.items() if f in everything} | {f: w for f, w in figures.items() if f in notebooks}
    assert not found, "answers readable in the release:\n" + "\n".join(f"  {f!r}: {w}" for f, w in found.items())


def test_every_visible_self_check_stays_in_the_release(release):
    for path in reference_notebooks():
        released = "\n".join(c.source for c in nbformat.read(release / "notebooks" / path.name, as_version=4).cells)
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                outside, _ = code_and_regions(cell.source)
                for line in outside:
                    if line.strip().startswith("assert"):
                        assert line in released, f"{path.name}: the self-check {line.strip()!r} is not released"


STUB_ERROR = re.compile(r"NotImplementedError: (implement [\w.]+ \(notebook \d\d_\w+\)|write the answer code)")


def test_each_exercise_notebook_runs_without_error_up_to_its_first_stub(graded, release, monkeypatch, tmp_path):
    """The untouched release, graded: each notebook ran from the top and stopped at a stub, or ran through. The
    notebooks without graded ids (00_setup) run here as a student runs them: in a clone of the release, quick mode."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    runs = graded["details"]["students"]["untouched"]["notebooks"]
    for stem, run in runs.items():
        assert run["status"] == "ok" or (run["status"] == "error" and STUB_ERROR.search(run["message"])), \
            f"{stem} stopped before its first stub: {run}"
    clone = shutil.copytree(release, tmp_path / "clone")
    for name in [k for k in os.environ if k.startswith("DGM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DGM_MODE", "quick")
    monkeypatch.setenv("DGM_DATA_SOURCE", "embedded")
    monkeypatch.setenv("PYTHONPATH", str(clone))
    for path in sorted((clone / "notebooks").glob("*.ipynb")):
        if path.stem in runs:
            continue
        nb = nbformat.read(path, as_version=4)
        try:
            NotebookClient(nb, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        except CellExecutionError as error:
            assert STUB_ERROR.search(grade.ANSI.sub("", str(error))), f"{path.stem}: {error}"


# copied verbatim and slow (they run notebooks and processes): the main suite runs them on the same code
VERBATIM_SLOW_TESTS = ("tests/test_tools.py", "tests/test_records.py")


def test_the_students_unit_tests_pass_in_the_release(release, tmp_path):
    """What `make test` runs before the notebooks, in the release as students clone it (a git repository): every test
    module imports, and every test passes but the two slow ones whose code is the main suite's."""
    release = shutil.copytree(release, tmp_path / "clone")
    subprocess.run(["git", "init", "-q"], cwd=release, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DGM_", "PYTEST"))}
    env["PYTHONPATH"] = str(release)
    base = [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts="]
    collected = subprocess.run(base + ["--collect-only", "tests"], cwd=release, env=env, capture_output=True,
                               text=True, timeout=600)
    assert collected.returncode == 0, collected.stdout[-4000:] + collected.stderr[-2000:]
    result = subprocess.run(base + ["tests", *[f"--ignore={t}" for t in VERBATIM_SLOW_TESTS]], cwd=release, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


# --------------------------------------------------------------------------------------------------------------------
# the key and the grader
# --------------------------------------------------------------------------------------------------------------------

def test_the_key_is_generated_from_the_scheme_and_the_question_index():
    assert grade.check_key() == []


def test_the_gradebook_has_a_row_per_student_and_a_column_per_id(graded, key):
    columns = list(dict.fromkeys(c["column"] for c in key["criteria"]))
    header = (graded["grades"] / "gradebook.csv").read_text().splitlines()[0].split(",")
    assert header == ["student", *columns, "total"]
    assert set(graded["rows"]) == {"reference", "untouched", "planted", "looping", "vandal"}
    for student, text in graded["feedback"].items():
        for c in key["criteria"]:
            assert f"| {c['id']} | {c['notebook']} |" in text, f"{student}'s feedback lacks {c['id']}"


def test_the_reference_notebooks_score_full_marks(graded, key):
    reference = graded["details"]["students"]["reference"]
    failing = [c for c in reference["criteria"] if c["result"] != "pass"]
    assert not failing, "the reference fails its own key (run `make key`?):\n" + "\n".join(map(str, failing))
    assert float(graded["rows"]["reference"]["total"]) == key["total_points"]


def test_an_untouched_release_scores_zero_and_the_grader_finishes(graded):
    assert float(graded["rows"]["untouched"]["total"]) == 0
    assert "**0 / " in graded["feedback"]["untouched"]


def test_one_planted_wrong_answer_loses_exactly_that_id(graded, key):
    target = graded["target"]
    reference, planted = graded["rows"]["reference"], graded["rows"]["planted"]
    submitted = {c["column"] for c in key["criteria"] if c["notebook"] not in SKIP_IN_PLANTED}
    differing = {column for column in submitted if reference[column] != planted[column]}
    assert differing == {target["column"]}
    assert float(reference[target["column"]]) - float(planted[target["column"]]) == target["points"]
    row = [c for c in graded["details"]["students"]["planted"]["criteria"]
           if c["id"] == target["id"] and c["field"] == target["field"] and c["notebook"] == target["notebook"]][0]
    assert row["result"] == "fail" and row["expected"] and row["got"]


def test_an_infinite_loop_times_out_and_costs_only_its_notebook(graded, key):
    runs = graded["details"]["students"]["looping"]["notebooks"]
    assert runs[LOOPING_NOTEBOOK]["status"] == "timeout"
    first = key["notebooks"][0]
    assert runs[first]["status"] == "ok"
    for c in key["criteria"]:
        got = graded["rows"]["looping"][c["column"]]
        if c["notebook"] == first:
            assert got == graded["rows"]["reference"][c["column"]]
        elif c["notebook"] == LOOPING_NOTEBOOK:
            assert float(got) == 0
    assert "timed out" in graded["feedback"]["looping"]


def test_a_vandal_changes_nothing_the_grader_owns(graded):
    repo, grades_dir = graded["repo"], graded["grades"]
    after = digest([repo / "grading", repo / "notebooks", grades_dir / "previous.txt"])
    assert after == graded["owned_before"]
    assert not (repo / "grading" / "planted.txt").exists()
    assert digest([graded["submissions"]]) == graded["submitted_before"], "a submitted file changed"
    assert float(graded["rows"]["vandal"]["total"]) == 0
    executed = next((grades_dir / "executed" / "vandal").glob("*.ipynb"))
    output = "".join(o.get("text", "") for c in nbformat.read(executed, as_version=4).cells for o in c.outputs)
    attempts = json.loads(output.split("ATTEMPTS ", 1)[1].splitlines()[0])
    if graded["details"]["sandbox"] == "unshare":
        assert all(result != "done" for result in attempts.values()), attempts   # a read-only file system
        assert graded["details"]["grader_files_damaged"] == []
    else:                                                                           # restored and reported
        assert any(result == "done" for result in attempts.values())
        assert graded["details"]["grader_files_damaged"]


def test_without_the_sandbox_what_a_submission_damaged_is_restored_and_reported(tmp_path):
    (tmp_path / "repo").mkdir()
    repo = copy_repository((tmp_path / "repo").resolve())
    grades_dir = repo / "grades"
    submissions = tmp_path / "submissions"
    (submissions / "vandal").mkdir(parents=True)
    first = grade.load_key()["notebooks"][0]
    nbformat.write(notebook_with([vandal_source(repo, grades_dir)]), submissions / "vandal" / f"{first}.ipynb")
    before = digest([repo / "grading", repo / "notebooks"])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DGM_", "MAKE"))}
    env["DGM_GRADE_SANDBOX"] = "none"
    result = subprocess.run([PYTHON, str(repo / "tools" / "grade.py"), "grade", str(submissions), "--grades",
                             str(grades_dir), "--cell-timeout", "60", "--timeout", "120"], capture_output=True,
                            text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert digest([repo / "grading", repo / "notebooks"]) == before
    details = json.loads((grades_dir / "details.json").read_text())
    assert details["sandbox"] == "none"
    damaged = "\n".join(details["grader_files_damaged"])
    assert "key.json was deleted: restored" in damaged and "planted.txt appeared: removed" in damaged
    assert "vandal" in result.stderr and "restored" in result.stderr
    assert (grades_dir / "gradebook.csv").read_text().splitlines()[1].startswith("vandal,0")


def test_grading_reports_its_time_and_fans_out_with_make(graded):
    details = graded["details"]
    assert details["jobs"] == 2 and details["seconds"] > 0
    assert "running reference/" in graded["output"]   # grade.mk's targets, one per submitted notebook
    seconds = {f"{student}/{stem[:2]}": run.get("seconds") for student, d in details["students"].items()
               for stem, run in d["notebooks"].items() if run["status"] != "missing"}
    print(f"\ntest class graded by `make grade -j 2` in {graded['seconds']:.0f} s "
          f"(runs {details['seconds']:.0f} s, sandbox {details['sandbox']}); seconds per notebook: {seconds}\n"
          + (graded["grades"] / "gradebook.csv").read_text())


# --------------------------------------------------------------------------------------------------------------------
# the HTML pages
# --------------------------------------------------------------------------------------------------------------------

def test_html_pages_list_every_notebook_with_its_ids_and_render_math_offline(release, tmp_path):
    site = tmp_path / "site"
    result = subprocess.run([PYTHON, str(ROOT / "tools" / "html_pages.py"), "--out", str(site), "--release",
                             "--release-dir", str(release)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    index = (site / "index.html").read_text()
    ids = grade.question_index()
    for path in reference_notebooks():
        assert f'href="{path.stem}.html"' in index and f'href="release/{path.stem}.html"' in index
        assert (site / f"{path.stem}.html").is_file() and (site / "release" / f"{path.stem}.html").is_file()
        for qid, notebook in ids:
            if notebook == path.stem:
                assert qid in index
    assert (site / "mathjax" / "MathJax.js").is_file()
    assert (site / "mathjax" / "config" / "local" / "offline.js").is_file()
    for page, prefix in ((site / f"{reference_notebooks()[1].stem}.html", ""),
                         (site / "release" / f"{reference_notebooks()[1].stem}.html", "../")):
        text = page.read_text()
        assert f'src="{prefix}mathjax/MathJax.js?config=' in text
        assert "cdnjs.cloudflare.com/ajax/libs/mathjax" not in text
