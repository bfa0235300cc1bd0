"""The Colab cell: a no-op everywhere but Colab, where it fetches the collection without touching Colab's torch."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import colab  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def first_cell(path):
    return "".join(json.loads(path.read_text())["cells"][0]["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_starts_with_the_colab_cell_for_the_one_repository_url(path):
    assert first_cell(path) == colab.colab_cell_source(colab.repository_url()), "run `make colab`"
    assert json.loads(path.read_text())["metadata"]["kernelspec"]["name"] == "python3"  # Colab knows no other


def test_readme_links_open_each_notebook_from_the_same_url():
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert colab.colab_link(colab.repository_url(), path.name) in readme


def test_the_cell_does_nothing_outside_colab(monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(os, "chdir", lambda *a: calls.append(a))
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    path_before, cwd = list(sys.path), os.getcwd()
    exec(colab.colab_cell_source("https://github.com/example/repo"), {})
    assert calls == [] and sys.path == path_before and os.getcwd() == cwd


def test_in_colab_it_clones_adds_only_what_colab_lacks_and_imports_from_the_clone(monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda command, **k: calls.append(command))
    monkeypatch.setattr(os, "chdir", lambda path: calls.append(["chdir", path]))
    monkeypatch.setattr(os.path, "exists", lambda path: False)
    monkeypatch.setitem(sys.modules, "google.colab", object())
    monkeypatch.setattr(sys, "path", list(sys.path))
    exec(colab.colab_cell_source("https://github.com/example/repo"), {})
    assert calls[0][:2] == ["git", "clone"] and "https://github.com/example/repo" in calls[0]
    installed = [c for c in calls if "install" in c][0]
    assert "mlxtend==0.25.0" in installed and not any(p.startswith(("torch", "torchvision")) for p in installed)
    assert ["chdir", "/content/dgm-course/notebooks"] in calls and sys.path[0] == "/content/dgm-course"
