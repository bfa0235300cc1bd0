"""A hostile class, graded once by `make grade -j 2` in the sandbox: every attack scores no more than the honest work
it contains, and nothing outside a job's own folder changes. Each attack sits in notebook 03's answers (its probes
and its run take seconds), beside honest and honestly wrong submissions of the same notebook.

What is not defended is listed in docs/instructors.md ("What the grader does not defend").
"""
import csv
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from instructor.grader import sandbox
from tools import nbcells

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "03_kl_divergence"
FULL = {"A3": 4.0, "C1h": 1.0, "N@03": 4.0, "C3e": 3.0}        # the hidden tests of 03, by gradebook column
SECRET = "dgm-test-secret-8c1f"                                  # in the grader's environment and a private file

pytestmark = pytest.mark.skipif(sandbox.problem() is not None, reason=f"no sandbox here: {sandbox.problem()}")


def solution() -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb", as_version=4)


def answer_cell(nb, grade_id):
    return next(c for c in nb.cells if nbcells.grading(c).get("grade_id") == grade_id)


def with_code(nb, grade_id: str, old: str, new: str):
    """The notebook with one answer line replaced (the line must exist)."""
    cell = answer_cell(nb, grade_id)
    assert old in cell.source, (grade_id, old)
    cell.source = cell.source.replace(old, new)
    return nb


def attack(code: str):
    """The solution, with `code` run when the module of answers is imported (in the probes) and in the notebook."""
    nb = solution()
    cell = answer_cell(nb, "A3_pairs")
    cell.source = cell.source.replace("### BEGIN SOLUTION\n", "### BEGIN SOLUTION\n" + code.strip() + "\n")
    return nb


def released():
    from instructor import release

    return release.strip_notebook(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb", release.exporter())


WRONG_KL = ("return torch.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5",
            "return torch.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s1**2) - 0.5")


STEALS = """
    if _stolen is None:
        raise NotImplementedError("not written yet")
    return _stolen(d, p_data, p_model, dx)


def _exec_probes(job):
    import math
    import torch

    namespace = {"torch": torch, "math": math}
    for test in job["tests"]:
        try:
            exec(test["source"], namespace)
        except Exception:
            pass
    return namespace.get("reference_value_on_grid")


def _from_the_job_file():
    import sys
    import torch

    try:
        return _exec_probes(torch.load(sys.argv[1], weights_only=True))
    except Exception:
        return None


def _from_the_frames():
    import sys

    frame = sys._getframe()
    while frame is not None:
        job = frame.f_locals.get("job")
        if isinstance(job, dict) and "tests" in job:
            return _exec_probes(job)
        frame = frame.f_back
    return None


_stolen = _from_the_%s()
"""
GAN_THEORY = "05_gan_theory"
# run by the kernel: the probes' job files and the code of the hidden tests, wherever a job could find them
READS_PROBES = """
import glob, os
for path in glob.glob("/tmp/**/job.pt", recursive=True) + glob.glob("/tmp/**/probes.py", recursive=True) + [
        p for folder in os.environ.get("PYTHONPATH", "").split(":") if folder
        for p in glob.glob(folder + "/../*") + glob.glob(folder + "/../../*")]:
    if path.endswith(("job.pt", "probes.py")):
        raise RuntimeError("PROBE " + open(path, "rb").read()[:3000].decode("latin-1"))
"""


def stolen_stand_in(route: str) -> nbformat.NotebookNode:
    """05 with C3b answered by the reference stand-in that a later probe carries, read from `route`."""
    nb = nbformat.read(ROOT / "notebooks" / f"{GAN_THEORY}.ipynb", as_version=4)
    cell = answer_cell(nb, "C3b_value_on_grid")
    body = "    return ((p_data * torch.log(d) + p_model * torch.log1p(-d)) * dx).sum()\n"
    assert body in cell.source
    cell.source = cell.source.replace(body, STEALS % route)
    return nb


def build_class(base: Path, secret_file: Path) -> dict:
    """student -> (notebook or special file setup); returns the submissions folder's expectations."""
    subs = base / "submissions"
    notebooks = {
        "honest": solution(),
        "honest_wrong": with_code(solution(), "A3_gaussian_kl", *WRONG_KL),
        "one_stub": with_code(solution(), "A3_gaussian_kl", WRONG_KL[0], "raise NotImplementedError('not done')"),
        "untouched": released(),
        "typed_records": released(),
        "reads_solutions": attack(f"""
import glob, os
for path in ["{ROOT}/notebooks/{NOTEBOOK}.ipynb", "{ROOT}/answers/kl_divergence.py", "{ROOT}/.git/HEAD",
             "{ROOT}/instructor/key.json", "{ROOT}/instructor/grader/bank/kl_divergence.py"]:
    if os.path.exists(path):
        raise SystemExit("LEAK " + path)
# a classmate graded at the same time; its own folder and its own answers (on its PYTHONPATH) are its own
mine = (os.getcwd(), os.path.dirname(os.environ["PYTHONPATH"].split(":")[0]))
for path in glob.glob("/tmp/**/answers/kl_divergence.py", recursive=True) + glob.glob("/tmp/dgm-job-*"):
    if not path.startswith(mine):
        raise SystemExit("LEAK " + path)
"""),
        "leaks_environment": attack(f"""
import os
raise RuntimeError(str(dict(os.environ)) + open({str(secret_file)!r}).read() if os.path.exists({str(secret_file)!r})
                   else str(dict(os.environ)))
"""),
        "memory_hog": attack("""
import torch
hog = torch.ones(5 * 2**30)            # 20 GiB
"""),
        "forks_and_detaches": attack("""
import os, time
for _ in range(400):
    try:
        if os.fork() == 0:
            time.sleep(30); os._exit(0)
    except OSError:
        break
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(3)
        open("/tmp/detached-survivor", "w").write("alive")
        os.execvp("sleep", ["dgm-detached-marker", "600"])
    os._exit(0)
"""),
        "floods_output": with_code(solution(), "C1h_kl_equal_variance", "    return (m1 - m2) ** 2 / (2 * s**2)",
                                   "    print('x' * 200_000_000)\n    return (m1 - m2) ** 2 / (2 * s**2)"),
        "loops": attack("while True:\n    pass"),
        # honest slips: each costs its own question only
        "stray_paren": with_code(solution(), "C3e_functions", "return 0.0 if theta_p == theta_q else math.inf",
                                 "return 0.0 if theta_p == theta_q else math.inf)"),
        "raises_at_import": attack("scale = 1 / 0"),
        "reads_the_probes": attack(READS_PROBES),
    }
    for name in ("honest_wrong_no_checks",):
        nb = with_code(solution(), "A3_gaussian_kl", *WRONG_KL)
        nb.cells = [c for c in nb.cells if "check_close(" not in c.source and "check_that(" not in c.source]
        notebooks[name] = nb
    typed = notebooks["typed_records"]
    typed.cells.append(nbformat.v4.new_code_cell("from helpers import record\nrecord('A3', {'small': {'kl': 0.003}})"))
    for name, nb in notebooks.items():
        (subs / name).mkdir(parents=True)
        nbformat.write(nb, subs / name / f"{NOTEBOOK}.ipynb")
    for route in ("job_file", "frames"):
        (subs / f"steals_from_{route}").mkdir()
        nbformat.write(stolen_stand_in(route), subs / f"steals_from_{route}" / f"{GAN_THEORY}.ipynb")
    # files, not code; a student named like the grader's own plan file hands in an older notebook format
    (subs / "plan.json").mkdir()
    nbformat.write(nbformat.convert(solution(), 3), subs / "plan.json" / f"{NOTEBOOK}.ipynb")
    (subs / "misnamed").mkdir()
    nbformat.write(solution(), subs / "misnamed" / "03_kl.ipynb")
    (subs / "linked_notebook").mkdir()
    (subs / "linked_notebook" / f"{NOTEBOOK}.ipynb").symlink_to(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb")
    (subs / "linked_folder").mkdir()
    (subs / "linked_folder" / "notebooks").symlink_to(ROOT / "notebooks")
    (subs / "huge").mkdir()
    nb = solution()
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", text="y" * 25_000_000)]
    nbformat.write(nb, subs / "huge" / f"{NOTEBOOK}.ipynb")
    (subs / "a_plain_file.txt").write_text("not a student folder")
    return subs


def digest(paths) -> dict:
    out = {}
    for root in map(Path, paths):
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    secret_file = base / "private.txt"
    secret_file.write_text(SECRET)
    subs = build_class(base, secret_file)
    grades = base / "grades"
    guarded = [ROOT / name for name in ("notebooks", "answers", "helpers", "instructor/grader", "instructor/key.json")]
    before = digest(guarded)
    env = {**os.environ, "DGM_TEST_SECRET": SECRET}
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "instructor.grader", "grade", str(subs), "--grades", str(grades),
                             "--jobs", "2", "--cell-timeout", "10", "--timeout", "120"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(grades / "gradebook.csv", newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    return {"rows": rows, "grades": grades, "base": base, "before": before, "after": digest(guarded),
            "seconds": time.monotonic() - started, "output": result.stdout + result.stderr,
            "details": json.loads((grades / "details.json").read_text()),
            "feedback": {p.stem: p.read_text() for p in (grades / "feedback").glob("*.md")}}


def auto(row: dict) -> dict:
    return {column: float(row[column]) for column in FULL}


def test_the_honest_solution_earns_every_hidden_point_and_an_old_notebook_format_is_graded_alike(graded):
    assert auto(graded["rows"]["honest"]) == FULL
    assert auto(graded["rows"]["plan.json"]) == FULL
    assert "converted to format 4" in graded["feedback"]["plan.json"]


def test_an_honest_wrong_answer_scores_what_the_same_answer_without_self_checks_scores(graded):
    rows = graded["rows"]
    assert auto(rows["honest_wrong"]) == auto(rows["honest_wrong_no_checks"]) == {**FULL, "A3": 1.0}


def test_a_syntax_error_costs_its_own_cell_only(graded):
    assert auto(graded["rows"]["stray_paren"]) == {**FULL, "C3e": 0.0}
    assert "your answer cell C3e_functions does not parse (line" in graded["feedback"]["stray_paren"]


def test_an_error_at_import_costs_only_what_needs_that_statement(graded):
    assert auto(graded["rows"]["raises_at_import"]) == FULL      # `scale` is used by nothing that is tested


def test_a_stub_costs_its_own_answer_only(graded):
    assert auto(graded["rows"]["one_stub"]) == {**FULL, "A3": 1.0}
    assert "your code raised NotImplementedError: not done" in graded["feedback"]["one_stub"]


@pytest.mark.parametrize("student", ["untouched", "typed_records"])
def test_records_and_stubs_earn_nothing(graded, student):
    assert auto(graded["rows"][student]) == dict.fromkeys(FULL, 0.0)


def test_the_solutions_the_key_and_other_jobs_are_out_of_reach(graded):
    """Had any path been visible, the answer would have stopped with LEAK: instead it ran on, and scored as honest."""
    assert auto(graded["rows"]["reads_solutions"]) == FULL
    assert "LEAK" not in graded["feedback"]["reads_solutions"]


def test_error_text_never_carries_the_instructors_environment_or_files(graded):
    feedback = graded["feedback"]["leaks_environment"]
    assert SECRET not in feedback and SECRET not in (graded["grades"] / "details.json").read_text()
    assert "your answer cell A3_pairs raised RuntimeError" in feedback      # its own cell's error, from the sandbox


@pytest.mark.parametrize("student", ["memory_hog", "forks_and_detaches", "floods_output", "loops"])
def test_resource_attacks_cost_their_author_only(graded, student):
    assert sum(auto(graded["rows"][student]).values()) <= sum(FULL.values())
    assert auto(graded["rows"]["honest"]) == FULL             # graded beside them, unharmed


def test_no_process_of_any_job_outlives_grading(graded):
    time.sleep(4)
    survivors = subprocess.run(["pgrep", "-f", "dgm-detached-marker"], capture_output=True, text=True).stdout
    assert not survivors.strip() and not Path("/tmp/detached-survivor").exists()


def test_an_output_flood_is_capped_and_the_executed_copy_kept(graded):
    executed = graded["grades"] / "executed" / "floods_output" / f"{NOTEBOOK}.ipynb"
    assert executed.exists() and executed.stat().st_size < 30 * 2**20
    assert auto(graded["rows"]["floods_output"]) == FULL


@pytest.mark.parametrize("student, words", [
    ("misnamed", "03_kl_divergence.ipynb expected, found 03_kl.ipynb"),
    ("linked_notebook", "symbolic link"), ("linked_folder", "symbolic link"), ("huge", "over the 20 MB limit")])
def test_bad_files_are_named_to_their_author_and_earn_nothing(graded, student, words):
    assert words in graded["feedback"][student]
    assert auto(graded["rows"][student]) == dict.fromkeys(FULL, 0.0)


def test_a_student_named_like_a_grader_file_is_graded_like_anyone(graded):
    assert auto(graded["rows"]["plan.json"]) == FULL
    assert "a_plain_file.txt" in graded["output"]


def test_nothing_outside_the_jobs_changed(graded):
    assert graded["after"] == graded["before"]


def test_the_feedback_shows_no_expected_value_unless_asked(graded):
    feedback = graded["feedback"]["honest_wrong"]
    assert "wrong for" in feedback and "(expected " not in feedback


@pytest.mark.parametrize("route", ["job_file", "frames"])
def test_a_stand_in_that_another_test_carries_is_out_of_reach_while_its_question_is_graded(graded, route):
    """C3d's probe carries the reference `value_on_grid` as a stand-in: it runs alone, after C3b is graded, so an
    answer that looks for it in the job file or the probe runner's frames finds nothing and scores as its stub."""
    row = graded["rows"][f"steals_from_{route}"]
    assert float(row["C3b"]) == 0.0 and float(row["C3a"]) > 0
    assert "not answered (the stub is still there)" in graded["feedback"][f"steals_from_{route}"]


def test_the_kernel_sees_no_probe_and_its_errors_quote_none(graded):
    feedback = graded["feedback"]["reads_the_probes"]
    assert "PROBE" not in feedback and "def probe" not in feedback
    assert auto(graded["rows"]["reads_the_probes"]) == FULL
