"""Put the Colab cell first in every notebook and the "Open in Colab" links in the README, from the one repository
URL in pyproject.toml ([project.urls] Repository). Run `make colab` after changing that URL."""
import json
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "# Colab only: fetch the collection and its helpers"
CELL = '''{mark} (does nothing anywhere else).
import os, subprocess, sys
if "google.colab" in sys.modules and not os.path.exists("/content/dgm-course"):
    subprocess.run(["git", "clone", "--depth", "1", "{url}", "/content/dgm-course"], check=True)
    # Colab's own torch, torchvision, numpy and matplotlib stay; only what it lacks is added
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "mlxtend==0.25.0"], check=True)
    os.chdir("/content/dgm-course/notebooks")
    sys.path[:0] = ["/content/dgm-course"]'''


def repository_url() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


def colab_cell_source(url: str) -> str:
    return CELL.format(mark=MARK, url=url)


def colab_link(url: str, notebook: str) -> str:
    """The Open-in-Colab address of a notebook on the repository's main branch."""
    path = re.sub(r"^https://github\.com/", "", url.rstrip("/"))
    return f"https://colab.research.google.com/github/{path}/blob/main/notebooks/{notebook}"


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
    """Rewrite the README's Colab links (lines holding `colab.research.google.com/github/`) for this URL."""
    readme = ROOT / "README.md"
    text = readme.read_text()
    new = re.sub(r"https://colab\.research\.google\.com/github/[^)\s]+/blob/main/notebooks/([\w.]+\.ipynb)",
                 lambda m: colab_link(url, m.group(1)), text)
    if new != text:
        readme.write_text(new)
    return new != text


def main() -> int:
    url = repository_url()
    changed = [p.name for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) if update_notebook(p, url)]
    if update_readme(url):
        changed.append("README.md")
    print(f"Colab cells and links point at {url}" + (f"; updated {', '.join(changed)}" if changed else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
