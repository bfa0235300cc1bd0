"""`make html`: the notebooks as web pages in site/, readable offline (docs/instructors.md).

nbconvert's HTMLExporter renders each notebook as it is committed (the solution notebooks carry the outputs of a full
run); with --release, the exercise notebooks of release/ go to site/release/. site/index.html lists every notebook with
its question ids (from QUESTIONS.md). Math: nbconvert's pages load MathJax 2.7 from a CDN unless told otherwise; here
they load the copy of MathJax 2.7 that the jupyter-server-mathjax package ships (requirements-instructor.txt), copied
into site/mathjax/, so the math renders without a network. Images are embedded in the pages.
"""
import argparse
import html
import json
import shutil
import sys
from pathlib import Path

from nbconvert import HTMLExporter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from release import question_ids  # noqa: E402  (notebook -> its ids, read from QUESTIONS.md)

ROOT = Path(__file__).resolve().parent.parent
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe,local/offline"
# the packaged MathJax has only the STIX-Web fonts: say so, or MathJax looks for its TeX fonts and warns
OFFLINE_CONFIG = """MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web",
                                  imageFont: null}});
MathJax.Ajax.loadComplete("[MathJax]/config/local/offline.js");
"""


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


def title(nb: dict, fallback: str) -> str:
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback


def render(notebooks: list, out: Path, mathjax: str | None) -> list:
    """Write out/<stem>.html for each notebook; returns (stem, title) pairs."""
    exporter = HTMLExporter(template_name="lab", embed_images=True)
    if mathjax:
        exporter.mathjax_url = f"{mathjax}/MathJax.js?config={MATHJAX_CONFIG}"
    out.mkdir(parents=True, exist_ok=True)
    pages = []
    for path in notebooks:
        body, _ = exporter.from_filename(str(path), resources={"metadata": {"name": path.stem}})
        (out / f"{path.stem}.html").write_text(body)
        pages.append((path.stem, title(json.loads(path.read_text()), path.stem)))
    return pages


def index_page(sections: list) -> str:
    ids = question_ids()
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>Deep generative models: notebooks</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
             "td,th{padding:.3em .8em;text-align:left;vertical-align:top}tr:nth-child(even){background:#f4f4f4}"
             "code{font-size:95%}</style></head><body>",
             "<h1>Deep generative models: notebooks</h1>"]
    for heading, prefix, pages in sections:
        parts += [f"<h2>{html.escape(heading)}</h2>", "<table><tr><th>notebook</th><th>question ids</th></tr>"]
        for stem, name in pages:
            parts.append(f'<tr><td><a href="{prefix}{stem}.html">{html.escape(name)}</a><br><code>{stem}</code></td>'
                         f"<td>{html.escape(', '.join(ids.get(stem, [])) or '-')}</td></tr>")
        parts.append("</table>")
    parts += ["<p>The pages work offline: images are embedded and the math is rendered by a local copy of MathJax "
              "(<code>mathjax/</code>).</p>", "</body></html>"]
    return "\n".join(parts) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "site")
    parser.add_argument("--release", action="store_true", help="also render the exercise notebooks of release/")
    parser.add_argument("--release-dir", type=Path, default=ROOT / "release")
    args = parser.parse_args(argv)
    site = args.out.resolve()
    site.mkdir(parents=True, exist_ok=True)
    mathjax = local_mathjax(site)
    if mathjax is None:
        print("jupyter-server-mathjax is not installed: the pages load MathJax from the internet", file=sys.stderr)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    sections = [("Solutions (executed notebooks)", "", render(notebooks, site, mathjax))]
    if args.release:
        exercises = sorted((args.release_dir / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        if not exercises:
            raise SystemExit(f"no notebooks in {args.release_dir / 'notebooks'}: run `make student` first")
        sections.append(("Exercises (the student release)", "release/",
                         render(exercises, site / "release", mathjax and "../mathjax")))
    (site / "index.html").write_text(index_page(sections))
    print(f"wrote {site / 'index.html'} and {sum(len(s[2]) for s in sections)} pages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
