"""Handing back: for each student, grades/handback/<student>/ holds each notebook they handed in as an HTML page with,
after each question's last cell, the points and what the grader and the TAs said, and an index.html with the whole
feedback; grades/handback-zips/<student>.zip holds the same folder, ready to upload to an LMS or push to the student.

The pages are nbconvert's (HTMLExporter, lab template) with `sanitize_html`: the student's own Markdown and outputs are
shown, their scripts never run. The notebook is the one the student handed in (grades/submitted/, a validated copy
written by `make grade`), so it shows their own outputs, not the grader's rerun. A page is rendered again only when
its notebook or its feedback changed (`make gradebook` after the TAs' points re-renders what they touched).
"""
import concurrent.futures
import hashlib
import html
import json
import multiprocessing
import os
import re
import sys
import tempfile
import zipfile
from functools import cache
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from instructor.site import for_reading
from tools import nbcells

from . import pages
from .files import umask, write_text

MATHJAX = "../../mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe,local/offline"   # grades/mathjax
CDN = "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def mathjax_script(fallback: bool) -> str:
    """The script tag that loads MathJax from grades/mathjax (as nbconvert writes it), with `fallback` also MathJax's
    public copy when that folder is not beside the page (templates/mathjax_script.html.j2)."""
    return pages.templates().get_template("mathjax_script.html.j2").render(local=MATHJAX, cdn=CDN if fallback else None)


@cache
def exporter() -> HTMLExporter:
    """nbconvert's lab pages, sanitised with our cleaner; the math typeset by grades/mathjax, or, in a page opened
    from its zip, by MathJax's public copy."""
    # embed_images would read the files a student's Markdown names (the key, the class's grades) into the page
    html = HTMLExporter(template_name="lab", embed_images=False, sanitize_html=True,
                        filters={"clean_html": pages.clean_rendered})
    html.mathjax_url = MATHJAX
    return html


def box(question: str, lines: list) -> nbformat.NotebookNode:
    """The feedback of one question, as a Markdown cell of the page."""
    text = f"> **Feedback on question {question}**\n>\n" + "\n".join(f"> - {line}" for line in lines)
    cell = nbformat.v4.new_markdown_cell(text)
    cell.id = "feedback-" + re.sub(r"[^A-Za-z0-9_-]", "_", question)[:50]     # the same page from the same feedback
    cell.metadata["dgm_feedback"] = question
    return cell


def feedback_lines(verdicts: list, manual: list) -> dict:
    """question -> the lines of its feedback: each hidden or model test, each TA part."""
    lines = {}
    for v in verdicts:
        earned = "not graded yet" if v["earned"] is None else f"{v['earned']:g} / {v['points']:g}"
        lines.setdefault(v["question"], []).append(f"{v['description']}: **{earned}**"
                                                   f"{' - ' + v['message'] if v['message'] else ' - right'}")
    for question, part, points, maximum, comment in manual:
        shown = f"{points:g} / {maximum:g}" if points is not None else f"not graded yet / {maximum:g}"
        lines.setdefault(question, []).append(f"a TA read `{part}`: **{shown}**" + (f" - {comment}" if comment else ""))
    return lines


MAX_SOURCE = 100_000         # characters of a cell shown; rendering costs far more than reading (a long line: minutes)
MAX_OUTPUT = 2 * 2**20       # bytes of a cell's outputs shown


def bounded(cell) -> None:
    """The cell cut to what a page shows at a bounded cost, saying what was left out."""
    source = cell.get("source", "")
    if isinstance(source, str) and len(source) > MAX_SOURCE:
        shown = MAX_SOURCE // 10
        cell.source = source[:shown] + f"\n\n[{len(source):,} characters: only the first {shown:,} shown]"
    if cell.get("outputs") and len(json.dumps(cell.outputs)) > MAX_OUTPUT:
        cell.outputs = [nbformat.v4.new_output("stream", text="[outputs over 2 MB: not shown]\n")]


WIDGET = "application/vnd.jupyter.widget-view+json"


def annotated(nb: nbformat.NotebookNode, lines: dict) -> nbformat.NotebookNode:
    """The notebook with each question's feedback after the last cell that answers it (the rest at the end)."""
    nb.metadata.pop("widgets", None)       # a widget state renders as live HTML, and its loader fetches code
    for cell in nb.cells:
        bounded(cell)
        for output in cell.get("outputs", []):
            if isinstance(output.get("data"), dict):
                output["data"].pop(WIDGET, None)
    last = {}
    for index, cell in enumerate(nb.cells):
        grade_id = nbcells.grading(cell).get("grade_id")
        if grade_id and grade_id.split("_", 1)[0] in lines:
            last[grade_id.split("_", 1)[0]] = index
    cells = []
    for index, cell in enumerate(nb.cells):
        cells.append(cell)
        cells += [box(q, lines[q]) for q, at in sorted(last.items()) if at == index]
    unplaced = [q for q in lines if q not in last]
    if unplaced:
        cells.append(nbformat.v4.new_markdown_cell("## Other questions\n\nNo cell of yours answers these (its "
                                                   "nbgrader metadata is gone, or the cell was deleted):",
                                                   id="feedback-other-questions"))
        cells += [box(q, lines[q]) for q in unplaced]
    nb.cells = cells
    return nb


@cache
def renderer() -> bytes:
    """What decides how a page is drawn (this code, the pages' cleaner, the MathJax script, the nbconvert in use): a
    page drawn by an older grader is drawn again, never kept."""
    import nbconvert

    script = Path(__file__).with_name("templates") / "mathjax_script.html.j2"
    return hashlib.sha256(Path(__file__).read_bytes() + Path(pages.__file__).read_bytes() + script.read_bytes() +
                          nbconvert.__version__.encode()).digest()


def page_digest(source: Path, lines: dict) -> str:
    """What a page is drawn from: this grader's renderer, the notebook and its feedback."""
    return hashlib.sha256(renderer() + source.read_bytes() + json.dumps(lines, sort_keys=True).encode()).hexdigest()


def stamp_of(target: Path) -> Path:
    return target.with_name(f".{target.stem}.sha256")


def up_to_date(source: Path, lines: dict, target: Path, digest: str | None = None) -> bool:
    stamp = stamp_of(target)
    return target.exists() and stamp.exists() and stamp.read_text() == (digest or page_digest(source, lines))


def render_page(source: Path, lines: dict, target: Path) -> None:
    """Write target (an HTML page) unless it is up to date with its notebook and its feedback."""
    digest = page_digest(source, lines)
    if up_to_date(source, lines, target, digest):
        return
    nb = annotated(for_reading(nbformat.read(source, as_version=4)), lines)     # as the course's own pages show it
    with tempfile.TemporaryDirectory() as nowhere:  # relative paths in the page resolve to an empty folder
        body, _ = exporter().from_notebook_node(nb, resources={"metadata": {"name": source.stem, "path": nowhere}})
    write_text(target, body.replace(mathjax_script(False), mathjax_script(True), 1))
    write_text(stamp_of(target), digest)


POOL_FROM = 8      # stale pages from which a pool pays for its processes' start (about 2 s each: each imports torch)


def draw(source: Path, lines: dict, target: Path) -> str | None:
    """render_page, or, where nbconvert fails on the notebook, a page that says so and shows the feedback as text
    (drawn again next time): the error, for the grader to name. One odd notebook never stops the class's reports."""
    try:
        render_page(source, lines, target)
        return None
    except Exception as error:
        feedback = "".join(f"<h3>{html.escape(q)}</h3><ul>{''.join(f'<li>{html.escape(x)}</li>' for x in shown)}</ul>"
                           for q, shown in lines.items())
        write_text(target, f"<!DOCTYPE html><html><body><p>This notebook could not be drawn as a page; the TAs have "
                           f"the file.</p>{feedback}</body></html>")
        stamp_of(target).unlink(missing_ok=True)
        return f"{type(error).__name__}: {str(error)[:200]}"


def render_pages(stale_or_not: list, workers: int | None = None) -> None:
    """Draw each (source, lines, target) page that is not up to date, `workers` processes at once (as many as this
    process may use cores, unless given): nbconvert takes about 0.8 s a page, so a class of 500 drawn one page after
    the other would wait three quarters of an hour after its grading."""
    workers = workers or len(os.sched_getaffinity(0))
    stale = [page for page in stale_or_not if not up_to_date(*page)]
    if workers <= 1 or len(stale) < POOL_FROM:
        failures = [draw(*page) for page in stale]
    else:
        # spawn, not fork: the grader's process holds threads (Dask's, torch's), which a forked child would not have
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(min(workers, len(stale)), mp_context=context) as pool:
            failures = list(pool.map(draw, *zip(*stale), chunksize=max(1, len(stale) // (4 * workers))))
    for (source, _, _), failure in zip(stale, failures):
        if failure:
            print(f"hand-back page of {source.parent.name}/{source.name} not drawn ({failure}): it shows the feedback "
                  "as text", file=sys.stderr)


def pages_of(grades: Path, slug: str, results: list, manual: dict) -> list:
    """(source, lines, target) of each page of a student's hand-back: a notebook they handed in, with its feedback;
    `manual`: notebook -> (question, part, points, maximum, comment) rows."""
    found = []
    for result in sorted(results, key=lambda r: r["notebook"]):
        source = grades / "submitted" / slug / f"{result['notebook']}.ipynb"
        if source.is_file():
            lines = feedback_lines(result["verdicts"], manual.get(result["notebook"], []))
            found.append((source, lines, grades / "handback" / slug / f"{result['notebook']}.html"))
    return found


def write_handback(grades: Path, student: str, slug: str, drawn: list, feedback: str) -> Path:
    """The student's index page and zip, around the pages `drawn` (pages_of's, drawn by render_pages)."""
    folder = grades / "handback" / slug
    stems = [source.stem for source, _, _ in drawn]
    if folder.is_dir():          # a page of an earlier grading, for a notebook no longer handed in, goes
        for old in folder.glob("*.html"):
            if old.name != "index.html" and old.stem not in stems:
                old.unlink()
                stamp_of(old).unlink(missing_ok=True)
    head, _, rest = feedback.partition("\n## ")            # the title and the hand-in, then each notebook
    write_text(folder / "index.html", pages.templates().get_template("handback_index.html.j2").render(
        student=student, notebooks=stems, heading=pages.Markup(pages.safe_markdown(head)),
        details=pages.Markup(pages.safe_markdown("## " + rest if rest else ""))))
    archive = grades / "handback-zips" / f"{slug}.zip"         # beside the folders, never among them
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(folder.iterdir()):
            if not path.name.startswith("."):
                bundle.write(path, f"{slug}/{path.name}")
    tmp.chmod(0o666 & ~umask())
    tmp.replace(archive)
    return folder
