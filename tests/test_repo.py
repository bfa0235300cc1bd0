"""The collection as a whole: environments agree, notebooks follow the conventions, records back the README."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_conda_route_installs_the_pinned_requirements():
    env = (ROOT / "environment.yml").read_text()
    assert "- -r requirements.txt" in env and "- -e ." in env
    python = re.search(r"python=(\d+\.\d+)", env).group(1)
    assert f'requires-python = ">={python}"' in (ROOT / "pyproject.toml").read_text()
    pins = dict(line.split("#")[0].strip().split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                if "==" in line.split("#")[0])
    # torch and torchvision must come as a pair built for each other (2.13.0+cpu breaks torchvision)
    assert pins["torch"].startswith("2.14.") and pins["torchvision"].startswith("0.29.")


def code_cells(path):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_starts_with_its_own_start_cell(path):
    second = "".join(code_cells(path)[1]["source"])  # the first is the Colab cell (tests/test_colab.py)
    assert f'start("{path.stem}")' in second, f"{path.name} must open with run = start(\"{path.stem}\")"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_with_a_clean_full_run(path):
    cells = code_cells(path)
    assert all(c["execution_count"] is not None for c in cells), "commit the notebook with the outputs of `make run`"
    assert not [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    start_output = "".join("".join(o.get("text", [])) for o in cells[1]["outputs"])
    assert "mode: full" in start_output, "the committed outputs must come from a full run (make run)"
    assert all("execution" not in c["metadata"] for c in cells), "commit outputs of `make run` (no timestamps)"


def readme_notebooks():
    """The notebook stems of the README's students' table."""
    return re.findall(r"^\| \[`(\d\d_\w+)`\]\(notebooks/", (ROOT / "README.md").read_text(), re.M)


def test_readme_lists_every_notebook():
    assert sorted(readme_notebooks()) == [p.stem for p in NOTEBOOKS]


META = {"data", "environment"}  # written by load_mnist and the setup notebook, not answers to questions


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_records_are_the_question_ids_of_the_index(path):
    """Every record of a notebook is a question id of QUESTIONS.md for that notebook (no stray or misspelt ids)."""
    index = set(re.findall(rf"^\| (\w[\w-]*) \| .+ \| {path.stem} \|$", (ROOT / "QUESTIONS.md").read_text(), re.M))
    records = set(json.loads((ROOT / "results" / f"{path.stem}.json").read_text())) - META
    assert records <= index, f"results/{path.stem}.json holds ids not in QUESTIONS.md: {sorted(records - index)}"


def test_make_lint_passes():
    """`make lint` is ruff over the code and the notebooks, with the notebook idioms of pyproject.toml allowed."""
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed in this environment (make setup installs it)")
    result = subprocess.run([ruff, "check", "--output-format", "concise", "helpers", "answers", "bench", "tests",
                             "tools", "notebooks"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:]
