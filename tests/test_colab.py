"""The Colab cell: a no-op everywhere but Colab; there it clones the collection and adds what Colab lacks (without
touching Colab's own packages) until both are done, retrying a failed step on the next run, and makes the clone
importable every time it runs (after a restart too)."""
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tools import colab

ROOT = Path(__file__).resolve().parent.parent

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def first_cell(path):
    return "".join(json.loads(path.read_text())["cells"][0]["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_starts_with_the_colab_cell_for_the_one_repository_url(path):
    assert first_cell(path) == colab.colab_cell_source(colab.repository_url()), "run `make colab`"
    assert json.loads(path.read_text())["metadata"]["kernelspec"]["name"] == "python3"  # Colab knows no other


def test_readme_links_open_each_notebook_from_the_branch_the_cell_clones():
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        link = colab.colab_link(colab.repository_url(), path.name)
        assert link in readme and f"/blob/{colab.BRANCH}/" in link
    assert f'"--branch", "{colab.BRANCH}"' in colab.colab_cell_source("https://github.com/x/y")


def test_the_cell_does_nothing_outside_colab(monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(os, "chdir", lambda *a: calls.append(a))
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    path_before, cwd = list(sys.path), os.getcwd()
    exec(colab.colab_cell_source("https://github.com/example/repo"), {})
    assert calls == [] and sys.path == path_before and os.getcwd() == cwd


@pytest.fixture
def course(tmp_path):
    """A local git repository with a `main` branch, standing in for the course on GitHub."""
    repo = tmp_path / "origin"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "colabmark").mkdir()
    (repo / "colabmark" / "__init__.py").write_text("WHERE = 'the clone'\n")
    (repo / "notebooks" / "README").write_text("notebooks\n")
    for command in (["git", "init", "-q", "-b", "main"], ["git", "add", "."],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "course"]):
        subprocess.run(command, cwd=repo, check=True)
    return repo


def in_colab(monkeypatch, run, course, clone) -> str:
    """This process as Colab (its module loaded, `run` in place of subprocess.run, a fresh path, in the clone's
    parent); returns the cell's source for the course repository."""
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(clone.parent.parent)
    return colab.colab_cell_source(f"file://{course}", clone=str(clone))


def test_in_colab_it_clones_once_retries_a_failed_install_and_survives_a_restart(course, tmp_path, monkeypatch):
    """Run the cell as a student would: the first install fails (no network), the second run retries it alone, and
    after "Restart runtime" the cell runs nothing but still makes the clone the working directory and importable;
    pip adds mlxtend alone, without its dependencies."""
    clone, installs, real_run, installed = tmp_path / "content" / "dgm-course", [], subprocess.run, []
    clones = []

    def run(command, **kwargs):
        if "pip" in command:
            installs.append(command)
            if len(installs) == 1:
                raise subprocess.CalledProcessError(1, command)
            installed.append(True)
            return subprocess.CompletedProcess(command, 0)
        clones.append(command)
        return real_run(command, **kwargs)

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (real_find_spec(name, *a) if installed else None) if name == "mlxtend"
                        else real_find_spec(name, *a))
    source = in_colab(monkeypatch, run, course, clone)
    with pytest.raises(subprocess.CalledProcessError):
        exec(source, {})
    assert (clone / "colabmark").is_dir() and len(clones) == 1 and len(installs) == 1
    exec(source, {})
    assert len(clones) == 1 and len(installs) == 2 and os.getcwd() == str(clone / "notebooks")
    assert "--no-deps" in installs[1] and "mlxtend==0.25.0" in installs[1]
    assert not any(p.startswith(("torch", "numpy", "pandas", "scikit")) for p in installs[1])
    # a restart: a fresh interpreter state, the clone and the package still on disk
    os.chdir(tmp_path)
    sys.path.remove(str(clone))
    sys.modules.pop("colabmark", None)
    exec(source, {})
    assert len(clones) == 1 and len(installs) == 2, "with everything there, the cell must run nothing"
    assert os.getcwd() == str(clone / "notebooks") and sys.path[0] == str(clone)
    import colabmark

    assert colabmark.WHERE == "the clone"
    sys.modules.pop("colabmark", None)


def test_in_colab_a_failed_clone_is_tried_again(course, tmp_path, monkeypatch):
    clone, real_run, tries = tmp_path / "content" / "dgm-course", subprocess.run, []

    def run(command, **kwargs):
        tries.append(command)
        if len(tries) == 1:                              # the network drops halfway: a clone without its .git
            (clone / "notebooks").mkdir(parents=True)
            raise subprocess.CalledProcessError(128, command)
        return real_run(command, **kwargs)

    source = in_colab(monkeypatch, run, course, clone)
    with pytest.raises(subprocess.CalledProcessError):
        exec(source, {})
    exec(source, {})
    assert len(tries) == 2 and (clone / "colabmark").is_dir() and os.getcwd() == str(clone / "notebooks")


@pytest.mark.parametrize("url", ["https://github.com/course/hw", "https://github.com/course/hw.git/",
                                 "git@github.com:course/hw.git", "ssh://git@github.com/course/hw"])
def test_any_form_of_a_github_address_gives_working_links_and_an_https_clone(url):
    assert colab.colab_link(url, "01_a.ipynb") == \
        f"https://colab.research.google.com/github/course/hw/blob/{colab.BRANCH}/notebooks/01_a.ipynb"
    cell = colab.colab_cell_source(url)
    assert ("https://github.com/course/hw" in cell) and "git@" not in cell and "ssh://" not in cell


@pytest.mark.parametrize("url", ["https://gitlab.com/course/hw.git", "git@codeberg.org:course/hw.git",
                                 "https://example.org/course/homework.git"])
def test_a_repository_off_github_has_no_colab_link_and_clones_over_https(url):
    assert colab.colab_link(url, "01_a.ipynb") is None
    assert f"https://{colab.parts(url)[0]}/course/" in colab.colab_cell_source(url)


@pytest.mark.parametrize("url", ["example.org/course/hw", "https://github.com/course", "file:///srv/hw", ""])
def test_what_is_not_a_repository_address_is_told_apart(url):
    assert colab.parts(url) is None and colab.colab_link(url, "01_a.ipynb") is None
