"""The course's digit classifier that the grader lays in every job's checkpoints folder is the one notebooks 04 and 06
would train there: run as a job's kernel runs them, each notebook's own lines load it and train nothing."""
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from instructor.grader.bank import digits

ROOT = Path(__file__).resolve().parents[2]


def classifier_lines(stem: str) -> tuple:
    """(the notebook's `classifier_epochs` setting, its line that trains or loads the classifier)."""
    nb = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    epochs = re.search(r"classifier_epochs=(pick\([^)]*\))", source).group(1)
    line = next(line for line in source.splitlines() if line.startswith("classifier = train_classifier("))
    return epochs, line


@pytest.mark.parametrize("stem", ["04_vae", "06_gan_mnist"])
def test_each_notebook_loads_the_given_classifier_and_trains_none(tmp_path, stem):
    epochs, line = classifier_lines(stem)
    assert digits.CLASSIFIER in line, "the grader lays the classifier only in jobs whose notebook names its file"
    for mode in digits.CLASSIFIER_EPOCHS:
        assert eval(epochs, {"pick": lambda quick, full, mode=mode: {"quick": quick, "full": full}[mode]}) \
            == digits.CLASSIFIER_EPOCHS[mode], (stem, mode)
    torch.save(digits.given_to_the_sandbox(), tmp_path / "digits.pt")
    given = tmp_path / "out" / "checkpoints" / digits.CLASSIFIER
    given.parent.mkdir(parents=True)
    given.write_bytes(digits.classifier_checkpoint("quick"))
    code = "\n".join(["from types import SimpleNamespace",
                      "from helpers import checkpoints_dir, load_mnist, pick",
                      "from helpers.measures import train_classifier",
                      f"settings = SimpleNamespace(classifier_epochs={epochs})",
                      "mnist = load_mnist()", line])
    env = {**os.environ, "DGM_MODE": "quick", "DGM_DATA_SOURCE": "given", "DGM_DATA_FILE": str(tmp_path / "digits.pt"),
           "DGM_OUTPUT": str(tmp_path / "out"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "training again" not in done.stdout, done.stdout
    assert given.read_bytes() == digits.classifier_checkpoint("quick"), "the notebook trained its own classifier"
