"""`make html`: every notebook as a page that opens with its title, links to the index and to its neighbours, and
renders offline."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from instructor.tests import shared

ROOT = Path(__file__).resolve().parents[2]
STEMS = [p.stem for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "instructor.site", "--out", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out


def links(page: str) -> list:
    return re.findall(r'<nav class="pages">(.*?)</nav>', page, re.S)


def test_every_page_links_the_index_and_its_neighbours_at_top_and_bottom(site):
    for index, stem in enumerate(STEMS):
        page = (site / f"{stem}.html").read_text()
        navs = links(page)
        assert len(navs) == 2 and navs[0] == navs[1]
        targets = re.findall(r'href="([^"]+)"', navs[0])
        expected = ([f"{STEMS[index - 1]}.html"] if index else []) + ["index.html"] + (
            [f"{STEMS[index + 1]}.html"] if index + 1 < len(STEMS) else [])
        assert targets == expected and all((site / t).exists() for t in targets)


def test_pages_open_with_their_title_not_the_colab_cell_and_show_no_markers(site):
    for stem in STEMS:
        page = (site / f"{stem}.html").read_text()
        assert "Colab only: fetch" not in page
        first = re.search(r'<div[^>]*class="jp-Cell ([\w-]+)', page[page.index("<body"):])
        assert first.group(1) == "jp-MarkdownCell", f"{stem} opens with a {first.group(1)}"
        assert "BEGIN SOLUTION</h3>" not in page and "END SOLUTION</h3>" not in page


def test_the_math_renders_offline_from_the_local_mathjax(site):
    assert (site / "mathjax" / "MathJax.js").exists()
    page = (site / f"{STEMS[1]}.html").read_text()
    assert 'src="mathjax/MathJax.js' in page and "cdnjs.cloudflare.com/ajax/libs/mathjax" not in page
    index = (site / "index.html").read_text()
    assert all(f'href="{stem}.html"' in index for stem in STEMS)


@pytest.fixture(scope="module")
def student_site(tmp_path_factory):
    """`make student`, then `make html-student`: the release's pages alone."""
    base = tmp_path_factory.mktemp("student-site")
    release = shared.release("https://github.com/example-course/homework")
    result = subprocess.run([sys.executable, "-m", "instructor.site", "--student", str(release), "--out",
                             str(base / "site")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return base / "site"


def page_text(page: str) -> str:
    """What a reader of a page can see or select: its text and its attributes, without tags, entities decoded."""
    import html

    return html.unescape(re.sub(r"<[^>]*>", " ", page)) + " ".join(re.findall(r'="([^"]*)"', page))


def test_the_students_site_holds_the_exercises_alone_without_markers_or_answers(student_site):
    from instructor.tests.leaks import leak_fragments, leaks, normal

    pages = sorted(p.name for p in student_site.glob("*.html"))
    assert pages == sorted(["index.html", *(f"{stem}.html" for stem in STEMS)])
    raw = " ".join(p.read_text() for p in student_site.glob("*.html"))
    assert not re.search(r'<span class="c1">### (BEGIN|END) SOLUTION</span>', raw), "a marker line in a code cell"
    assert "BEGIN SOLUTION</h3>" not in raw and "END SOLUTION</h3>" not in raw
    text = normal(page_text(raw))
    assert "solutions" not in normal(page_text((student_site / "index.html").read_text()))
    assert "notimplementederror" in text                        # the stubs are there, as exercises
    fragments = leak_fragments()
    assert not leaks(text, fragments), "an answer reached the students' site"
    planted = sorted(fragments["code"])[0]                      # the same search finds one when it is there
    assert leaks(text + " " + planted, fragments)


def test_the_students_site_refuses_a_folder_that_is_not_a_release(tmp_path):
    result = subprocess.run([sys.executable, "-m", "instructor.site", "--student", str(ROOT), "--out",
                             str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "no release in" in result.stderr
