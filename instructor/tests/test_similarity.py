"""make similarity: a small class written by hand on the release of notebook 01, compared pair by pair."""
import csv
import os
import re
import subprocess
import textwrap
from pathlib import Path

import nbformat
import pytest

from answers import export
from instructor import similarity
from instructor.grader import jobs
from tools import nbcells

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "01_ancestral_sampling"

# bob's is ada's with every name changed; cyd wrote hers another way


def solution_region(grade_id: str) -> str:
    """The code between the markers of a solution cell, without its indentation: the answer as the solution has it."""
    cell = next(c for c in nbformat.read(ROOT / "notebooks" / f"{NOTEBOOK}.ipynb", as_version=4).cells
                if nbcells.grading(c).get("grade_id") == grade_id)
    lines = cell.source.split("\n")
    first, last = export.regions(cell.source)[0]
    return textwrap.dedent("\n".join(lines[first + 1:last]))


ADA_SAMPLE = solution_region("A1_ancestral_sample")
RENAMES = {"order": "visit", "values": "drawn", "name": "key", "node": "nd", "parents": "pa", "probs": "table",
           "u": "uniform", "p": "q"}
BOB_SAMPLE = ADA_SAMPLE
for old, new in RENAMES.items():
    BOB_SAMPLE = re.sub(rf"\b{old}\b", new, BOB_SAMPLE)
CYD_SAMPLE = """\
result = {}
pending = list(network)
while pending:
    for label in list(pending):
        spec = network[label]
        if any(parent not in result for parent in spec.parents):
            continue
        inputs = [result[parent] for parent in spec.parents]
        pending.remove(label)
        if spec.function is None:
            weights = spec.table[tuple(inputs)] if inputs else spec.table.repeat(n, 1)
            result[label] = torch.multinomial(weights, 1, generator=rng)[:, 0]
        else:
            result[label] = spec.function(*inputs)
return result"""
ADA_TEXT = ("Sort the nodes so that parents come first, then draw each node from its table row picked by the values "
            "already drawn for its parents; a deterministic node is computed from them instead.")
ANSWERS = {
    "ada": {"A1_ancestral_sample": ADA_SAMPLE, "A1_standard_error": "return torch.sqrt(p * (1 - p) / n)",
            "A1_procedure": ADA_TEXT},
    "bob": {"A1_ancestral_sample": BOB_SAMPLE,
            "A1_standard_error": "variance = p - p ** 2\nreturn (variance / n) ** 0.5",
            "A1_procedure": "Topological order first. Each variable is sampled given its sampled parents, which makes "
                            "the samples exact draws from the joint, by the chain rule."},
    "cyd": {"A1_ancestral_sample": CYD_SAMPLE, "A1_standard_error": "return torch.sqrt(p - p * p) / torch.sqrt(n)",
            "A1_exact_probability": "return float(sum(joint_terms(network, query)))",
            "A1_procedure": "I visit every variable once its parents have values and sample it from the conditional "
                            "distribution they select; the product of those conditionals is the joint."},
    "dee": {},                                              # hands in the release untouched
    "eve<img src=x onerror=alert(2)>": {"A1_procedure": ADA_TEXT.split(";")[0] + ". <script>alert(1)</script>"},
}


def answered(release: nbformat.NotebookNode, answers: dict) -> nbformat.NotebookNode:
    """The release notebook with `answers` (grade_id -> code or text) written where a student writes them."""
    nb = nbformat.from_dict(release)
    for cell in nb.cells:
        grade_id = nbcells.grading(cell).get("grade_id")
        if grade_id not in answers:
            continue
        if cell.cell_type == "markdown":
            cell.source = answers[grade_id]
            continue
        lines = cell.source.split("\n")
        (first, last), = export.regions(cell.source)
        indent = lines[first][:len(lines[first]) - len(lines[first].lstrip())]
        body = [indent + line for line in answers[grade_id].split("\n")]
        cell.source = "\n".join(lines[:first + 1] + body + lines[last:])
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """The class's folder, and what `python -m instructor.similarity` wrote for it."""
    subs = tmp_path_factory.mktemp("submissions")
    release = jobs.released(NOTEBOOK)
    for name, answers in ANSWERS.items():
        (subs / name).mkdir()
        nbformat.write(answered(release, answers), subs / name / f"{NOTEBOOK}.ipynb")
    (subs / "fay").mkdir()
    (subs / "fay" / f"{NOTEBOOK}.ipynb").symlink_to(subs / "ada" / f"{NOTEBOOK}.ipynb")
    out = tmp_path_factory.mktemp("grades") / "similarity"
    assert similarity.main([str(subs), "--out", str(out)]) == 0
    with open(out / "pairs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return subs, out, {frozenset((r["student_a"], r["student_b"])): r for r in rows}, rows


def test_the_copied_pair_ranks_first_with_its_part_named(graded):
    _, _, pairs, rows = graded
    assert {rows[0]["student_a"], rows[0]["student_b"]} == {"ada", "bob"}
    shared = dict(part.split(" ", 1) for part in rows[0]["parts"].split("; "))
    assert "A1_ancestral_sample" in shared, rows[0]
    share_a, share_b = (float(x.rstrip("%")) for x in shared["A1_ancestral_sample"].split("/"))
    assert share_a > 80 and share_b > 80, "renamed variables must still match"
    assert len(rows) == 15, "every pair of the six students is listed"


def test_independent_answers_and_untouched_stubs_score_low(graded):
    _, _, pairs, rows = graded
    copied = int(pairs[frozenset(("ada", "bob"))]["shared_tokens"])
    for other in ("ada", "bob"):
        row = pairs[frozenset((other, "cyd"))]
        assert int(row["shared_tokens"]) < copied / 5 and float(row["share_a"]) < 0.15, row
        assert "A1_ancestral_sample" not in row["parts"], row
    for row in rows:
        if "dee" in (row["student_a"], row["student_b"]) or "fay" in (row["student_a"], row["student_b"]):
            assert row["shared_tokens"] == "0" and row["parts"] == "", row
        assert "A1_exact_probability" not in row["parts"], "stubs left as released are no answer"


def test_the_report_shows_matches_side_by_side_with_student_text_escaped(graded):
    _, out, _, _ = graded
    page = (out / "index.html").read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page and "eve&lt;img src=x onerror=alert(2)&gt;" in page
    assert "symbolic link" in page, "fay's linked notebook is named, not followed"
    pair = page.split('id="pair-1"')[1].split('id="pair-2"')[0]
    assert "A1_ancestral_sample" in pair and pair.count("<mark>") >= 2
    assert "static_order" in pair and "visit = TopologicalSorter" in pair, "both answers, as written"


def test_make_similarity_runs_as_typed_and_checks_its_arguments_first(graded, tmp_path):
    subs = graded[0]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    done = subprocess.run(["make", "--no-print-directory", "similarity", f"SUBMISSIONS={subs}",
                           f"GRADES={tmp_path / 'grades'}"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(tmp_path / "grades" / "similarity" / "pairs.csv", newline="") as f:
        first = next(csv.DictReader(f))
    assert {first["student_a"], first["student_b"]} == {"ada", "bob"}
    for argv, said in ((["similarity"], "make similarity needs SUBMISSIONS"),
                       (["similarity", f"SUBMISSIONS={tmp_path / 'nowhere'}"], "is not a folder")):
        done = subprocess.run(["make", "--no-print-directory", *argv, f"VENV={tmp_path / 'no-venv-here'}"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0 and said in done.stderr, done.stdout + done.stderr
        assert not (tmp_path / "no-venv-here").exists(), f"make {' '.join(argv)} began installing"
