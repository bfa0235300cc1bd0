"""`make html` and `make html-student`: the notebooks as web pages, readable offline (docs/instructors.md).

nbconvert's HTMLExporter renders each notebook: `make html` the solution notebooks as committed (with the outputs of a
full run) into site/, for instructors; `make html-student` the exercise notebooks of release/ alone into
student-site/, a site to give students, with nothing of the solutions in it. Every page opens with its title (the
Colab cell, which does nothing outside Colab, is left out), shows no marker line of the answer regions, and has links
to the index and to the previous and next notebook. The index lists the notebooks with their question ids. The math
renders offline with the copy of MathJax 2.7 that jupyter-server-mathjax ships, copied into mathjax/ beside the pages
(without that package the pages load MathJax from its CDN). Images are embedded in the pages.
"""
import argparse
import shutil
import sys
from functools import cache
from pathlib import Path

import jinja2
import nbformat
from nbconvert import HTMLExporter

from answers import export
from instructor import course_model
from tools import colab

ROOT = Path(__file__).resolve().parent.parent

MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe,local/offline"
# the packaged MathJax has only the STIX-Web fonts: say so, or MathJax looks for its TeX fonts and warns
OFFLINE_CONFIG = """MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web",
                                  imageFont: null}});
MathJax.Ajax.loadComplete("[MathJax]/config/local/offline.js");
"""
NAV_STYLE = ("<style>nav.pages{font-family:system-ui,sans-serif;display:flex;justify-content:space-between;"
             "max-width:60em;margin:1em auto;padding:0 1em}nav.pages a{text-decoration:none}</style>")


@cache
def templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                              autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def local_mathjax(site: Path) -> str | None:
    """Copy the packaged MathJax into site/mathjax once; None when the package is missing (then the CDN is used)."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        return None
    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = site / "mathjax"
    if not (target / "MathJax.js").exists():
        shutil.copytree(source, target, dirs_exist_ok=True)
    (target / "config" / "local").mkdir(parents=True, exist_ok=True)
    (target / "config" / "local" / "offline.js").write_text(OFFLINE_CONFIG)
    return "mathjax"


def title(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def for_reading(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook as a page shows it: no Colab cell, no marker line of an answer region (in code or prose), no
    directive of the notebook tests (`# NBVAL_CHECK_OUTPUT`)."""
    cells = [c for c in nb.cells if not (c.cell_type == "code" and c.source.startswith(colab.MARK))]
    for cell in cells:
        cell.source = for_reading_text(cell.source)
    nb.cells = cells
    return nb


def for_reading_text(text: str) -> str:
    """A cell's text as a page shows it: without the marker lines of answer regions and the tests' directives."""
    if export.BEGIN not in text and "# NBVAL_" not in text:
        return text
    return "\n".join(line for line in text.split("\n")
                     if line.strip() not in (export.BEGIN, export.END) and not line.strip().startswith("# NBVAL_"))


def navigation(stems: list, index: int, home: str) -> str:
    """Links to the previous notebook, the index and the next notebook."""
    return templates().get_template("site_nav.html.j2").render(
        previous=stems[index - 1] if index > 0 else None, home=home,
        following=stems[index + 1] if index + 1 < len(stems) else None)


def render(notebooks: list, out: Path, mathjax: str | None, home: str) -> list:
    """Write out/<stem>.html for each notebook, with navigation; returns (stem, title) pairs."""
    exporter = HTMLExporter(template_name="lab", embed_images=True)
    if mathjax:
        exporter.mathjax_url = f"{mathjax}/MathJax.js?config={MATHJAX_CONFIG}"
    out.mkdir(parents=True, exist_ok=True)
    stems, pages = [p.stem for p in notebooks], []
    for index, path in enumerate(notebooks):
        nb = for_reading(nbformat.read(path, as_version=4))
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
        nav = navigation(stems, index, home)
        head_end, body_start = body.index("</head>"), body.index(">", body.index("<body")) + 1
        body = body[:head_end] + NAV_STYLE + body[head_end:body_start] + nav + body[body_start:]
        body = body.replace("</body>", nav + "</body>", 1)
        (out / f"{path.stem}.html").write_text(body)
        pages.append((path.stem, title(nb) or path.stem))
    return pages


def index_page(sections: list) -> str:
    return templates().get_template("site_index.html.j2").render(
        sections=sections, ids=course_model.load(ROOT).ids_by_notebook())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="the site's folder (site/, or student-site/ with --student)")
    parser.add_argument("--student", type=Path, metavar="RELEASE",
                        help="render the exercise notebooks of this release (release/) alone: the students' site")
    args = parser.parse_args(argv)
    site = (args.out or ROOT / ("student-site" if args.student else "site")).resolve()
    if args.student:
        notebooks = sorted((args.student / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        if not notebooks or (args.student / "instructor").exists():
            raise SystemExit(f"no release in {args.student}: run `make student STUDENT_REPO=<url>` first")
        heading = "Exercises"
    else:
        notebooks, heading = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")), "Solutions (executed notebooks)"
    site.mkdir(parents=True, exist_ok=True)
    mathjax = local_mathjax(site)
    if mathjax is None:
        print("jupyter-server-mathjax is not installed: the pages load MathJax from the internet", file=sys.stderr)
    sections = [(heading, "", render(notebooks, site, mathjax, "index.html"))]
    (site / "index.html").write_text(index_page(sections))
    print(f"wrote {site / 'index.html'} and {len(sections[0][2])} pages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
