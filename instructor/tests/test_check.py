"""`make check` in the students' release: per question, done, not answered yet, or wrong with the likely mistake.

Each test builds on one release, writes answers into its notebooks as a student would (the solution's own code for a
right answer, a planted mistake for a wrong one), runs `python -m tools.check` there, and reads the verdicts.
"""
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from instructor.tests import shared
from tools import nbcells

ROOT = Path(__file__).resolve().parents[2]

# run, question, (grade id, the solution's line, the mistake put in its place), what the message must name. A run is
# one `make check` of its notebook (the run's first two characters) with every answer right but its mistakes, which lie
# in questions that do not call each other's answers, so that each question's first message is its own mistake's.
PLANTED = [
    ("01", "A1", ("A1_standard_error", "(p * (1 - p) / n).sqrt()", "p * (1 - p) / n"), "it returns a variance"),
    ("03a", "A3", ("A3_gaussian_kl", "2 * s2**2) - 0.5", "2 * s2**2) + 0.5"), "look at the constant term"),
    ("03b", "A3", ("A3_pairs", 'pairs = {"small": (0.0, 1.0, 0.05, 1.05), "large": (0.0, 0.5, 5.0, 1.0)}',
                   "pairs = [(0.0, 1.0, 0.05, 1.05), (0.0, 0.5, 5.0, 1.0)]"),
     "pairs is a dict with the keys 'small' and 'large'"),
    ("03b", "C1h", ("C1h_kl_equal_variance", "(2 * s**2)", "s**2"), "a factor 1/2 is missing"),
    ("03b", "N", ("N_kl_functions", "- logvar - 1).sum(-1)", "- logvar - 1).mean(-1)"),
     "a mean where a sum over 20 entries is asked"),
    ("03b", "C3e", ("C3e_functions", "cost[rows, cols].mean()", "cost[rows, cols].sum()"),
     "a sum where a mean over 50 entries is asked"),
    ("05a", "C3a", ("C3a_gan_value", "torch.log1p(-discriminator(generator(z)))",
                    "torch.log(discriminator(generator(z)))"), "labelled 0"),
    ("05a", "A15", ("A15_generator_loss_slopes", "return -d_fake, -(1 - d_fake)", "return -d_fake, 1 - d_fake"),
     "opposite sign"),
    ("05b", "C3b", ("C3b_value_on_grid", " * dx).sum()", ").sum()"), "multiplies by dx"),
    ("05b", "A12", ("A12_generator_gradient", "return -(d_fake * slope * z).mean(), -(d_fake * slope).mean()",
                    "return (d_fake * slope * z).mean(), (d_fake * slope).mean()"), "opposite sign"),
    ("05c", "C3c", ("C3c_optimal_discriminator", "p_data / (p_data + p_model)", "p_model / (p_data + p_model)"),
     "densities are swapped"),
    ("05c", "A11", ("A11_discriminator_gradient", "- d_fake[:, None] * phi(fake)", "+ d_fake[:, None] * phi(fake)"),
     "the term of the generated points has the wrong sign"),
    ("05d", "C3d", ("C3d_value_at_optimal_discriminator", "return -math.log(4) + 2 * jsd",
                    "return -math.log(2) + 2 * jsd"), "only a constant is left"),
    ("05d", "A13", ("A13_non_saturating_generator_gradient",
                    "-((1 - d_fake) * slope * z).mean(), -((1 - d_fake) * slope).mean()",
                    "-(d_fake * slope * z).mean(), -(d_fake * slope).mean()"), "not the one of log(1 - D(G(z)))"),
    ("05e", "A14", ("A14_simultaneous_update", "return w + lr * grad_w", "return w - lr * grad_w"),
     "took a step down the gradient of L, as if it minimised L"),
    ("05e", "A16", ("A16_training_round", "grad_a, grad_c = non_saturating_generator_gradient(",
                    "grad_a, grad_c = generator_gradient("), "on the non-saturating loss"),
    ("05e", "A17", ("A17_non_saturating_criterion", "kl_on_grid(p_model, p_data, dx)",
                    "kl_on_grid(p_data, p_model, dx)"), "the direction of each divergence"),
    ("07a", "A18", ("A18_layers", "self.h * (1 - self.h)", "self.h * (1 + self.h)"), "check the signs inside"),
    ("07a", "A20", ("A20_sgd_step", "linear.weight -= lr * linear.grad_weight",
                    "linear.weight += lr * linear.grad_weight"), "moves against the gradient"),
    ("07b", "A18", ("A18_layers", "delta.T @ self.h", "self.h.T @ delta"), "transposed"),
    ("07b", "A19", ("A19_weight_gradient_norms", "    network.zero_grad()\n", ""),
     "clear them before each backward pass"),
]
RUNS = {run: [p for p in PLANTED if p[0] == run] for run in dict.fromkeys(p[0] for p in PLANTED)}


@pytest.fixture(scope="module")
def built():
    return shared.release("https://github.com/example-course/homework")


@pytest.fixture
def release(built, tmp_path):
    """A fresh copy of the release, for one student's answers."""
    copy = tmp_path / "release"
    shutil.copytree(built, copy)
    return copy


def solution_cell(grade_id: str):
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if nbcells.grading(cell).get("grade_id") == grade_id:
                return cell
    raise LookupError(grade_id)


def answer(release: Path, number: str, grade_id: str, mistake: tuple = ()) -> None:
    """Write the solution's answer to `grade_id` into the release's notebook, with `mistake` (old, new) planted."""
    path = next((release / "notebooks").glob(f"{number}_*.ipynb"))
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if nbcells.grading(c).get("grade_id") == grade_id)
    source = solution_cell(grade_id).source
    if mistake:
        assert source.count(mistake[0]) == 1, f"the planted mistake no longer fits {grade_id}: {mistake[0]!r}"
        source = source.replace(*mistake)
    cell.source = source
    nbformat.write(nb, path)


def answer_question(release: Path, number: str, question: str, mistake: tuple = ()) -> None:
    """Every code part of `question` answered, one of them (mistake's grade id) with its planted mistake."""
    path = next((release / "notebooks").glob(f"{number}_*.ipynb"))
    for cell in nbformat.read(path, as_version=4).cells:
        grade_id = nbcells.grading(cell).get("grade_id", "")
        if nbcells.is_code_answer(cell) and nbcells.question_of(cell) == question:
            answer(release, number, grade_id, mistake[1:] if mistake and mistake[0] == grade_id else ())


def check(release: Path, *arguments: str) -> tuple:
    """(the verdict line of each question, the whole report, the seconds it took) of `python -m tools.check`."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "tools.check", *arguments], cwd=release, capture_output=True,
                            text=True, timeout=900, env={**os.environ, "DGM_DATA_SOURCE": "embedded"})
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stdout + result.stderr
    lines = {m[1]: m[2] for m in re.finditer(r"^  (\S+)\s+(.+)$", result.stdout, re.M)}
    return lines, result.stdout, seconds


def test_an_untouched_notebook_reads_not_answered_yet_and_waiting_not_wrong(release):
    verdicts, text, _ = check(release, "03")
    assert verdicts["A3"] == "not answered yet (gaussian_kl, A3_pairs)", text
    assert verdicts["C1d"].startswith("waits on A3"), text
    assert all(not v.startswith("wrong") for v in verdicts.values()), text
    assert "written answer `A3_derivation`: not written yet" in text


def test_a_right_answer_is_done_and_one_question_checks_in_seconds(release):
    answer_question(release, "03", "A3")
    verdicts, text, seconds = check(release, "03", "A3")
    assert list(verdicts) == ["A3"] and verdicts["A3"] == "done", text
    assert seconds < 60, f"checking one question took {seconds:.0f} s"


def messages(text: str) -> dict:
    """question -> its lines of a `make check` report: its verdict, and the message of its first failing cell."""
    blocks = re.split(r"^  (?=\S)", text, flags=re.M)[1:]
    return {block.split()[0]: " ".join(block.split()[1:]) for block in blocks}


@pytest.mark.parametrize("run", RUNS)
def test_each_planted_wrong_answer_is_wrong_and_its_message_names_the_mistake(release, run):
    number, planted = run[:2], RUNS[run]
    path = next((release / "notebooks").glob(f"{number}_*.ipynb"))
    for cell in nbformat.read(path, as_version=4).cells:
        if nbcells.is_code_answer(cell):
            grade_id = nbcells.grading(cell)["grade_id"]
            answer(release, number, grade_id, next((m[1:] for _, _, m, _ in planted if m[0] == grade_id), ()))
    _, text, _ = check(release, number, *dict.fromkeys(question for _, question, _, _ in planted))
    found = messages(text)
    for _, question, mistake, named in planted:
        assert found[question].startswith("wrong") and named.lower() in found[question].lower(), (mistake[0], text)


def test_bad_input_names_the_problem_and_the_fix(release):
    for arguments, words in ((["09"], "name one by its number"), (["03", "B7"], "its questions are A3")):
        result = subprocess.run([sys.executable, "-m", "tools.check", *arguments], cwd=release, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode != 0 and words in result.stderr, result.stdout + result.stderr


def students_shell() -> dict:
    """This environment without pytest options of our own (PYTEST_ADDOPTS: a developer's -q or --durations would
    change the summary line that a student reads)."""
    return {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}


def test_the_students_make_test_skips_what_is_not_answered_yet_and_fails_what_is_wrong(release):
    answer_question(release, "03", "C1h", ("C1h_kl_equal_variance", "(2 * s**2)", "(4 * s**2)"))
    result = subprocess.run([sys.executable, "-m", "pytest", "notebooks/03_kl_divergence.ipynb", "-q"], cwd=release,
                            capture_output=True, text=True, timeout=600,
                            env={**students_shell(), "DGM_MODE": "quick", "DGM_DATA_SOURCE": "embedded",
                                 "PYTHONPATH": str(release)})
    summary = result.stdout.strip().splitlines()[-1]
    assert re.search(r"\b[12] failed\b", summary) and "skipped" in summary, result.stdout[-3000:]
    assert "03_kl_divergence.ipynb: A3, N, C3e" in result.stdout, result.stdout[-3000:]


def test_the_students_readme_walks_the_loop_with_and_without_make(built):
    readme = " ".join((built / "README.md").read_text().split())
    for words in ("## The loop: open, answer, check, hand in", "make check NB=03 Q=A3", "python -m tools.check 03 A3",
                  "python -m answers.export", "In Colab", "run the cell again", "## Handing in"):
        assert words in readme, f"the students' README lacks {words!r}"
