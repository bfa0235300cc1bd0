"""The collection as a whole: environments agree, notebooks follow the conventions, records back the README."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from instructor import course_model

ROOT = Path(__file__).resolve().parents[2]
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
    """Every record of a notebook is a question id that notebook asks (no stray or misspelt ids)."""
    index = set(course_model.load().ids_by_notebook().get(path.stem, []))
    records = set(json.loads((ROOT / "results" / f"{path.stem}.json").read_text())) - META
    assert records <= index, f"results/{path.stem}.json holds ids its notebook does not ask: {sorted(records - index)}"


def test_make_lint_passes():
    """`make lint` is ruff over the code and the notebooks, with the notebook idioms of pyproject.toml allowed."""
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists():
        pytest.skip("ruff is not installed in this environment (make setup installs it)")
    result = subprocess.run([ruff, "check", "--output-format", "concise", "helpers", "answers", "tests",
                             "tools", "notebooks", "instructor"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-2000:]


NUMBER = re.compile(r"(?<![\w.])-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")
TOLERANCE_WORDS = re.compile(r"(?:<=?|>=?|\bto|\bwithin|\bthan|\btolerance|\bbelow|\babove)\s*$")


def noise_numbers(text: str) -> list:
    """Numbers at the level of floating-point noise that a text prints: below 1e-6 in size, or a 0 written in
    scientific notation (0.0e+00 is 1e-17 on another CPU). A tolerance (`< 1e-12`, `agrees to 1e-9`) is not one."""
    found = []
    for match in NUMBER.finditer(text):
        value, token = float(match.group()), match.group()
        tiny = 0 < abs(value) < 1e-6 or (value == 0 and "e" in token.lower())
        if tiny and not TOLERANCE_WORDS.search(text[max(0, match.start() - 12):match.start()]):
            found.append(token)
    return found


def checked_outputs(path: Path) -> list:
    """(cell number, printed text) of the cells nbval compares."""
    texts = []
    for number, cell in enumerate(code_cells(path)):
        if "NBVAL_CHECK_OUTPUT" in "".join(cell["source"]):
            texts.append((number, "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                                          for o in cell["outputs"])))
    return texts


def test_the_noise_detector_finds_residuals_and_spares_tolerances():
    assert noise_numbers("log p(x) - (ELBO + KL) = -7.1e-15\nKL(q || q) = 0.0e+00") == ["-7.1e-15", "0.0e+00"]
    assert noise_numbers("max error 3.2e-07 (float32)") == ["3.2e-07"]
    assert noise_numbers("residual < 1e-12: True; agrees to 1e-9; below 1e-10; KL = 0.003439; n = 0") == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_checked_cell_prints_a_number_at_the_level_of_floating_point_noise(path):
    """nbval compares these cells on every machine, whose last digits differ: print the comparison, not the residual."""
    offenders = [(number, noise_numbers(text)) for number, text in checked_outputs(path) if noise_numbers(text)]
    assert not offenders, f"code cells printing noise-level numbers: {offenders}"


def noise_records(value, path=""):
    """Fields of a record at the level of floating-point noise (see noise_numbers)."""
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in noise_records(v, f"{path}/{k}")]
    if isinstance(value, list):
        return [f for i, v in enumerate(value) for f in noise_records(v, f"{path}[{i}]")]
    return [path] if isinstance(value, float) and 0 < abs(value) < 1e-9 else []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_record_holds_a_residual_at_the_level_of_floating_point_noise(path):
    records = json.loads((ROOT / "results" / f"{path.stem}.json").read_text())
    assert not noise_records(records), f"record a comparison (a boolean) instead of: {noise_records(records)}"


def long_numbers(value, path="") -> list:
    """Fields of a record with more than 6 significant digits (helpers.records rounds every float to 6)."""
    if isinstance(value, dict):
        return [f for k, v in value.items() for f in long_numbers(v, f"{path}/{k}")]
    if isinstance(value, list):
        return [f for i, v in enumerate(value) for f in long_numbers(v, f"{path}[{i}]")]
    return [path] if isinstance(value, float) and float(f"{value:.6g}") != value else []


def test_the_long_number_detector_finds_a_seventh_digit():
    assert long_numbers({"A3": {"kl": 12.818147180559945, "ok": 12.8181, "n": [0.5, 1e-7, 3.14159265]}}) == \
        ["/A3/kl", "/A3/n[2]"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_records_keep_6_significant_digits(path):
    records = json.loads((ROOT / "results" / f"{path.stem}.json").read_text())
    assert not long_numbers(records), f"re-run the notebook to round these (helpers.records): {long_numbers(records)}"


def variables_read(text: str) -> set:
    """Names of environment variables a source file reads: os.environ.get/[...]/getenv with a literal name, or a
    *_VARIABLE constant (helpers name theirs so)."""
    read = re.findall(r"""(?:environ\.get\(|environ\[|getenv\()\s*["']([A-Z][A-Z0-9_]+)["']""", text)
    return set(read) | set(re.findall(r"""^\w+_VARIABLE\s*=\s*["']([A-Z][A-Z0-9_]+)["']""", text, re.M))


def test_every_environment_variable_the_code_reads_is_in_the_developers_table():
    table = (ROOT / "docs" / "developers.md").read_text().split("## Environment variables", 1)[1].split("\n## ")[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    sources = [p for folder in ("helpers", "tools", "answers", "instructor") for p in (ROOT / folder).rglob("*.py")
               if "tests" not in p.relative_to(ROOT).parts]
    read = {name: path for path in sources for name in variables_read(path.read_text())}
    assert len(read) >= 10, sorted(read)
    missing = {name: str(path.relative_to(ROOT)) for name, path in read.items() if name not in documented}
    assert not missing, f"variables read but not in docs/developers.md's table: {missing}"
    assert variables_read('x = os.environ.get("DGM_NEW")\nNEW_VARIABLE = "DGM_OTHER"\n') == {"DGM_NEW", "DGM_OTHER"}
