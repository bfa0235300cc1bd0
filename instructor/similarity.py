"""`make similarity`: the class's answers compared pair by pair, part by part, for the instructor only.

Each student's answers are read from their notebooks as data, by the grader's own reader (plan.py: links are not
followed, oversized or unreadable files are skipped and named, nothing runs): the code between the markers of each
answer cell, and the text of each written answer. copydetect fingerprints each answer by winnowing (code is tokenised
first, every name and string made alike, so renamed variables still match) and leaves out what the release gives:
the release notebook's code and text are its boilerplate, and the stub lines of a region left as released are no
answer. As in Moss, a passage found in the answers of more than `--common` students to the same part is ignored too:
many students reach the same short line on their own. Pairs of students are ranked by the tokens they share;
grades/similarity/index.html shows each shared part's matching lines side by side (student text escaped), pairs.csv
has every pair.

    python -m instructor.similarity SUBMISSIONS [--out grades/similarity] [--common 10] [--pairs 50]
"""
import argparse
import csv
import io
import itertools
import sys
import textwrap
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np
from copydetect import CodeFingerprint, compare_files
from copydetect.utils import highlight_overlap
from markupsafe import Markup

from answers import export
from instructor import course_model
from instructor.grader import jobs, plan, rebuild, report
from tools import nbcells

ROOT = Path(__file__).resolve().parent.parent
# copydetect's own report puts file names (here, students' folder names) into its page unescaped and loads its style
# from the web: the page is rendered from a template of ours, with copydetect's escaped highlighting of each answer.
TEMPLATE = "similarity.html.j2"
NOISE = 25          # copydetect's defaults: a match is at least 25 characters of normalised code, and every match of
GUARANTEE = 25      # 25 is found (a window of 1: answers are short, so no fingerprint needs to be dropped for speed)
COURSE = ("notebooks", "instructor", "helpers", "answers", "release", "site", "docs", "tests", "tools")
MAX_ANSWER = 50_000                     # characters of one answer compared: a pasted data dump costs only its head


@dataclass
class Part:
    """One answer cell of a notebook, as the release has it, and each student's answer in it."""
    notebook: str
    grade_id: str
    code: bool
    stub: set                                           # the lines a released region holds
    answers: dict = field(default_factory=dict)         # student -> text
    prints: dict = field(default_factory=dict)          # student -> CodeFingerprint

    @property
    def question(self) -> str:
        return self.grade_id.split("_", 1)[0]


def written(text: str) -> str:
    """A written answer as compared: its words, whatever the line breaks; '' for the released stub."""
    return "" if "YOUR ANSWER HERE" in text and len(text) < 300 else " ".join(text.split())   # rebuild.py's rule


def answer_of(part: Part, cell) -> str:
    """The student's answer in their cell: the code of its regions less the stub's lines, or its written text."""
    source = nbcells.source_of(cell)
    if not part.code:
        return written(source)[:MAX_ANSWER]
    try:
        bodies = rebuild.region_bodies(source)
    except export.ExportError:
        return ""                                       # broken markers: the grader runs the cell as released
    lines = [line for _, body in bodies for line in body if line.strip() not in part.stub]
    return textwrap.dedent("\n".join(lines)).strip()[:MAX_ANSWER]


def fingerprint(text: str, code: bool, boilerplate) -> CodeFingerprint:
    return CodeFingerprint("answer.py", NOISE, GUARANTEE - NOISE + 1, boilerplate=boilerplate, filter=code,
                           language="python" if code else None, fp=io.StringIO(text))


def boilerplate(release) -> dict:
    """code? -> the fingerprints of everything the release notebook gives, every k-gram of it (copydetect's way)."""
    code = "\n\n".join(c.source for c in release.cells if c.cell_type == "code")
    text = written("\n\n".join(c.source for c in release.cells if c.cell_type == "markdown"))
    return {kind: np.array(sorted(CodeFingerprint("release.py", NOISE, 1, filter=kind, language="python" if kind
                                                  else None, fp=io.StringIO(source)).hashes), dtype=np.int64)
            for kind, source in ((True, code), (False, text))}


def read_parts(students: list, common: int) -> list:
    """Every answer part of every graded notebook, with the answers each student wrote in it (stubs left out)."""
    parts = []
    for stem in course_model.load().graded_notebooks():
        release = jobs.released(stem)
        given = boilerplate(release)
        for cell in release.cells:
            if not nbcells.grading(cell).get("solution"):
                continue
            code = cell.cell_type == "code"
            stub = {line.strip() for _, body in rebuild.region_bodies(cell.source) for line in body} if code else set()
            part = Part(stem, nbcells.grading(cell)["grade_id"], code, stub)
            for student in students:
                theirs = rebuild.find(student.notebooks[stem], cell) if stem in student.notebooks else None
                text = answer_of(part, theirs) if theirs is not None else ""
                if text:
                    part.answers[student.name] = text
            fingerprint_part(part, given[code], common)
            parts.append(part)
    return parts


def fingerprint_part(part: Part, given, common: int) -> None:
    """Each answer's fingerprints without the release's, nor those shared by more than `common` students."""
    part.prints = {name: fingerprint(text, part.code, given) for name, text in part.answers.items()}
    counts = defaultdict(int)
    for prints in part.prints.values():
        for h in prints.hashes:
            counts[h] += 1
    frequent = np.array(sorted(h for h, n in counts.items() if n > common), dtype=np.int64)
    if len(frequent):
        ignored = np.union1d(given, frequent)
        part.prints = {name: fingerprint(part.answers[name], part.code, ignored) if fp.hashes & set(frequent) else fp
                       for name, fp in part.prints.items()}


@dataclass
class Pair:
    """Two students, the tokens they share, and the parts where they share them."""
    a: str
    b: str
    tokens: int = 0
    shared: list = field(default_factory=list)          # dicts: part, question, share_a, share_b, code_a, code_b

    def shares(self, parts: list) -> tuple:
        """The fraction of each student's answer tokens, over the parts both answered, that the other's match."""
        both = [p for p in parts if self.a in p.prints and self.b in p.prints]
        mine = sum(p.prints[self.a].token_coverage for p in both)
        theirs = sum(p.prints[self.b].token_coverage for p in both)
        matched_a = sum(s["share_a"] * s["coverage_a"] for s in self.shared)
        matched_b = sum(s["share_b"] * s["coverage_b"] for s in self.shared)
        return (matched_a / mine if mine else 0.0), (matched_b / theirs if theirs else 0.0)


def marked(text: str, slices) -> Markup:
    """The answer as HTML: escaped by copydetect, each matching passage between <mark> tags."""
    return Markup(highlight_overlap(text, slices, "<mark>", "</mark>", escape_html=True)[0])


def compare(parts: list) -> dict:
    """(a, b) -> Pair for every two students who share a fingerprint in some part (copydetect's comparison)."""
    pairs = {}
    for part in parts:
        # copydetect's CopyDetector compares every file with every other, from disk; only students who share a
        # fingerprint can overlap, so only they are compared, with its compare_files
        holders = defaultdict(set)
        for name, prints in part.prints.items():
            for h in prints.hashes:
                holders[h].add(name)
        candidates = {pair for names in holders.values() for pair in itertools.combinations(sorted(names), 2)}
        for a, b in sorted(candidates):
            tokens, (share_a, share_b), (slices_a, slices_b) = compare_files(part.prints[a], part.prints[b])
            if not tokens:
                continue
            pair = pairs.setdefault((a, b), Pair(a, b))
            pair.tokens += int(tokens)
            pair.shared.append({
                "part": part.grade_id, "question": part.question, "notebook": part.notebook,
                "share_a": float(share_a), "share_b": float(share_b),
                "coverage_a": part.prints[a].token_coverage, "coverage_b": part.prints[b].token_coverage,
                "code_a": marked(part.answers[a], slices_a), "code_b": marked(part.answers[b], slices_b)})
    return pairs


def ranked(students: list, parts: list) -> list:
    """Every pair of students, most shared tokens first: (a, b, tokens, share_a, share_b, shared parts)."""
    pairs = compare(parts)
    rows = []
    for a, b in itertools.combinations(sorted(s.name for s in students), 2):
        pair = pairs.get((a, b), Pair(a, b))
        share_a, share_b = pair.shares(parts)
        rows.append((a, b, pair.tokens, share_a, share_b, sorted(pair.shared, key=lambda s: -min(
            s["share_a"], s["share_b"]))))
    return sorted(rows, key=lambda r: (-r[2], -max(r[3], r[4]), r[0], r[1]))


def write(out: Path, students: list, parts: list, rows: list, skipped: list, shown: int, seconds: float) -> None:
    """pairs.csv (every pair) and index.html (the `shown` first pairs that share anything, side by side)."""
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["rank", "student_a", "student_b", "shared_tokens", "share_a", "share_b", "parts"])
    for rank, (a, b, tokens, share_a, share_b, shared) in enumerate(rows, 1):
        writer.writerow([rank, report.cell(a), report.cell(b), tokens, f"{share_a:.3f}", f"{share_b:.3f}",
                         "; ".join(f"{s['part']} {s['share_a']:.0%}/{s['share_b']:.0%}" for s in shared)])
    report.write_text(out / "pairs.csv", table.getvalue())
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    problems = [(s.name, p) for s in students for p in s.problems] + [
        tuple(sentence.split(": ", 1)) for sentence in skipped]
    page = environment.get_template(TEMPLATE).render(
        pairs=[r for r in rows if r[2]][:shown], students=len(students), answers=sum(len(p.answers) for p in parts),
        parts=len(parts), problems=problems, noise=NOISE, seconds=seconds, listed=sum(1 for r in rows if r[2]))
    report.write_text(out / "index.html", page)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submissions", type=Path, help="the folder holding one folder per student")
    parser.add_argument("--out", type=Path, default=ROOT / "grades" / "similarity")
    parser.add_argument("--common", type=int, default=10, help="ignore a passage in more than this many students' "
                        "answers to one part (default 10)")
    parser.add_argument("--pairs", type=int, default=50, help="pairs shown side by side in index.html (default 50)")
    args = parser.parse_args(argv)
    submissions, out = args.submissions.resolve(), args.out.resolve()
    if not submissions.is_dir():
        raise SystemExit(f"SUBMISSIONS={args.submissions} is not a folder: give the folder that holds one folder per "
                         "student")
    if out == ROOT or ROOT in out.parents and out.relative_to(ROOT).parts[0] in COURSE or "feedback" in out.parts:
        raise SystemExit(f"--out {args.out}: the report is for the instructor alone; write it under grades/ (not in "
                         "grades/feedback/, which students get back, nor in the course's own folders)")
    started = time.monotonic()
    students, skipped = plan.read_class(submissions, course_model.load().graded_notebooks())
    if len(students) < 2:
        raise SystemExit(f"{submissions} holds {len(students)} student folder(s): comparing needs two or more")
    parts = read_parts(students, args.common)
    rows = ranked(students, parts)
    write(out, students, parts, rows, skipped, args.pairs, time.monotonic() - started)
    top = ", ".join(f"{a} and {b} ({tokens} tokens)" for a, b, tokens, *_ in rows[:3] if tokens) or "none"
    print(f"{len(students)} students, {sum(len(p.answers) for p in parts)} answers compared in "
          f"{time.monotonic() - started:.0f} s; most shared: {top}\nreport: {out / 'index.html'} (instructors "
          f"only), every pair: {out / 'pairs.csv'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
