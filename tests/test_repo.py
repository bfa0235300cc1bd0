"""The collection as a whole: environments agree, notebooks follow the conventions, records back the README."""
import json
import re
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
def test_notebook_starts_with_its_own_setup_cell(path):
    first = "".join(code_cells(path)[0]["source"])
    assert f'setup("{path.stem}")' in first, f"{path.name} must start with run = setup(\"{path.stem}\")"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_with_a_clean_full_run(path):
    cells = code_cells(path)
    assert all(c["execution_count"] is not None for c in cells), "commit the notebook with the outputs of `make run`"
    assert not [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    setup_output = "".join("".join(o.get("text", [])) for o in cells[0]["outputs"])
    assert "mode: full" in setup_output, "the committed outputs must come from a full run (make run)"
    assert json.loads(path.read_text())["metadata"]["kernelspec"]["name"] == "dgm-course"


def readme_table():
    """{notebook stem: (question ids answered, ids recorded)} from the README's table of notebooks."""
    rows = re.findall(r"^\|\s*\[`(\d\d_\w+)\.ipynb`\].*?\|(.*?)\|(.*?)\|", (ROOT / "README.md").read_text(), re.M)
    return {stem: (answered.split(), [i.strip("`,") for i in recorded.split()]) for stem, answered, recorded in rows}


def test_readme_lists_every_notebook():
    assert set(readme_table()) == {p.stem for p in NOTEBOOKS}


META = {"data", "environment"}  # written by load_mnist and the setup notebook, not answers to questions


@pytest.mark.parametrize("stem", sorted(readme_table()))
def test_committed_records_match_the_readme(stem):
    recorded = set(readme_table()[stem][1])
    records = set(json.loads((ROOT / "results" / f"{stem}.json").read_text()))
    assert recorded, f"the README's table names no records for {stem}"
    assert recorded <= records, f"results/{stem}.json lacks {sorted(recorded - records)}"
    assert records - META == recorded - META, \
        f"results/{stem}.json holds {sorted(records)}, the README says {sorted(recorded)}"
