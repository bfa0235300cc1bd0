"""HTML pages of the grading, from jinja2 templates (templates/): the TA page of each written or figure part, with
every student's answer side by side. Student text is Markdown rendered by nbconvert's own renderer and then cleaned
by bleach (both already installed with nbconvert): tags outside a short list of text markup, every attribute but a
link's address, and every script are shown as text, never run. Images are shown only when they are real PNGs."""
import base64
from functools import cache
from pathlib import Path

import bleach
import jinja2
from cachetools import LRUCache, cached
from markupsafe import Markup
from nbconvert.filters.markdown_mistune import markdown2html_mistune

from instructor.site import for_reading_text

PNG = b"\x89PNG\r\n\x1a\n"
MAX_TEXT = 100_000
TEXT_TAGS = {"p", "em", "strong", "code", "pre", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote",
             "table", "thead", "tbody", "tr", "th", "td", "a", "br", "hr", "del", "sup", "sub", "span", "div"}


@cache
def templates() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                              autoescape=True, undefined=jinja2.StrictUndefined)


def safe_markdown(text: str) -> str:
    """A student's Markdown as HTML that runs nothing; LaTeX between `$` is left for MathJax; the answer region's
    marker lines (nbgrader's, kept in written answers) are not shown."""
    if len(text) > MAX_TEXT:                       # rendering costs far more than reading: a bounded page
        text = text[:MAX_TEXT] + f"\n\n[{len(text):,} characters: only the first {MAX_TEXT:,} shown]"
    text = for_reading_text(text)
    try:
        rendered = markdown2html_mistune(text)
    except Exception:                              # a renderer's failure on odd input: the text itself, escaped
        return str(Markup("<pre>{}</pre>").format(text))
    return bleach.clean(rendered, tags=TEXT_TAGS, attributes={"a": ["href", "title"]},
                        protocols={"http", "https", "mailto"}, strip=False)


def clean_rendered(element) -> str:
    """nbconvert's `clean_html` filter for the hand-back pages: its own keeps too few tags (no <p>, no headings, no
    table head), so a rendered Markdown cell would show its tags as text; this keeps text markup, nothing that runs."""
    element = element.decode() if isinstance(element, bytes) else str(element)
    return cleaned_once(element)[1] if len(element) <= REMEMBERED_CHARS else cleaned(element)


def cleaned(html: str) -> str:
    """A piece of a hand-back page's HTML with only text markup left (bleach)."""
    return bleach.clean(html, tags=TEXT_TAGS | {"b", "i"}, attributes={"*": ["class", "id"], "a": ["href", "title"]},
                        protocols={"http", "https", "mailto"}, strip=False)


def entry_size(pair: tuple) -> int:
    """What a remembered piece holds: its source and its cleaned HTML, in characters, and 100 for the entry itself."""
    return len(pair[0]) + len(pair[1]) + 100


# Every student's page of a notebook repeats its given cells, and cleaning is most of drawing a page's code cells: a
# process remembers each piece of up to 20,000 characters it cleaned (source and result) while it holds at most 8
# million characters of them, dropping the least recently used first, so a class's hostile text costs no more memory.
REMEMBERED_CHARS = 20_000


@cached(LRUCache(maxsize=8_000_000, getsizeof=entry_size), info=True)
def cleaned_once(html: str) -> tuple:
    """(html, its cleaned HTML), remembered: the pair holds the one copy of the source that is also the key."""
    return html, cleaned(html)


def safe_png(data: str) -> str | None:
    """The base64 PNG when it decodes to a PNG of at most 2 MB, else None (a page shows only real images)."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (ValueError, TypeError):
        return None
    return data if raw.startswith(PNG) and len(raw) < 2 * 2**20 else None


def pngs(images) -> list:
    """At most six of the images that are real PNGs."""
    return [png for png in (safe_png(i) for i in images[:6]) if png] if isinstance(images, list) else []


def ta_page(notebook: str, part: str, question: str, asked: str, maximum: float, answers: list, mode: str) -> str:
    """One written or figure part: every student's answer, their figures as handed in beside the grader's rerun.
    `answers`: (student, slug, text, rerun figures, handed-in figures) per student."""
    shown = [{"student": student, "slug": slug, "text": Markup(safe_markdown(text)) if text
              else "", "rerun": pngs(rerun), "handed_in": pngs(handed_in)}
             for student, slug, text, rerun, handed_in in answers]
    return templates().get_template("ta_page.html.j2").render(
        notebook=notebook, part=part, question=question, asked=asked, maximum=maximum, answers=shown, mode=mode)
