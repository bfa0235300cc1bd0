"""`make check NB=03 [Q=A3]`: run a notebook's self-checks and say, question by question, what is done, what is not
answered yet, and what is wrong and why.

    python -m tools.check 03 [A3]     (the same without make, from the repository's folder)
    python -m tools.check 03 A3 C1h   (several questions: make check NB=03 Q="A3 C1h")

It exports the answer cells first (as `make answers` does), then runs the notebook as saved, in quick settings, with
nbclient, going on past a failing cell so that one wrong answer hides none of the others; with a question, it stops
after that question's last cell (with several, after the last cell of the last of them). A cell counts for the question
whose section or answer cell it follows. Nothing is written into the notebook. nbclient runs the cells; the verdicts are
read off its error outputs here, since tools such as `otter check` need tests written in their own format, and these
notebooks' tests are their self-check cells.
"""
import argparse
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from answers import export
from tools import nbcells

ROOT = Path(__file__).resolve().parent.parent

WRITTEN_STUB = "**YOUR ANSWER HERE**"


@dataclass
class Verdict:
    """What the run found for one question: its parts not answered yet, its failures, the questions it waits on."""
    question: str
    parts: list = field(default_factory=list)             # grade ids of its code answers and figures
    unanswered: list = field(default_factory=list)        # what of the question raises its stub
    waits_on: list = field(default_factory=list)          # other questions whose stubs its cells reach
    failures: list = field(default_factory=list)          # (cell number, message)
    written: list = field(default_factory=list)           # (grade id, written yet?)

    def status(self) -> str:
        if self.unanswered:
            return "not answered yet"
        if self.waits_on:
            return "waits on " + ", ".join(self.waits_on)
        if self.failures:
            return "wrong"
        return "done" if self.parts else "written only"


def find_notebook(name: str, folder: Path) -> Path:
    """The notebook that `name` (03, 03_kl_divergence or its file name) means, or a stop naming the choices."""
    stem = Path(name).name.removesuffix(".ipynb")
    found = sorted(folder.glob(f"{stem}_*.ipynb" if re.fullmatch(r"\d\d", stem) else f"{stem}.ipynb"))
    if len(found) != 1:
        choices = ", ".join(p.stem[:2] for p in sorted(folder.glob("[0-9][0-9]_*.ipynb")))
        raise SystemExit(f"no notebook {name!r} in {folder}: name one by its number, one of {choices} "
                         "(make check NB=03)")
    return found[0]


def questions_of_cells(cells: list) -> list:
    """The question each cell counts for (None before the first one): a section `## <id>: ...` starts the question it
    names, an answer cell the question it answers."""
    ids = {q for c in cells if (q := nbcells.question_of(c))}
    current, owners = None, []
    for cell in cells:
        heading = re.match(r"## ([\w-]+):", cell.source) if cell.cell_type == "markdown" else None
        if heading and heading[1] in ids:
            current = heading[1]
        current = nbcells.question_of(cell) or current
        owners.append(current)
    return owners


def error_of(cell) -> tuple | None:
    """(exception name, message) of a cell that raised, or None."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return output["ename"], output["evalue"]
    return None


def run_cells(nb, path: Path) -> float:
    """Run the notebook in place with nbclient, past failing cells; returns the seconds it took."""
    from nbclient import NotebookClient

    env = {**os.environ, "DGM_MODE": "quick", "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    start = time.perf_counter()
    # the kernel's own warnings (its transport, say) are about Jupyter, not the answers: only its errors show
    NotebookClient(nb, timeout=1800, kernel_name="python3", allow_errors=True, extra_arguments=["--log-level=ERROR"],
                   resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
    return time.perf_counter() - start


def stubs_in(cell) -> list:
    """What a code answer cell still leaves to the student: the function a stub names, or the cell's grade id."""
    names = []
    for first, last in export.regions(cell.source):
        region = "\n".join(cell.source.split("\n")[first:last + 1])
        for found in export.UNANSWERED.finditer(region):
            before = region[:found.start()].rsplit("NotImplementedError(", 1)[-1].strip(" '\"")
            names.append(before if re.fullmatch(r"[\w.]+", before) else nbcells.grading(cell)["grade_id"])
    return names


def stub_named(name: str, message: str, stem: str) -> str | None:
    """The question a stub's error names ('N of 03_kl_divergence' when it is another notebook's), or None."""
    found = export.UNANSWERED.search(message) if name == "NotImplementedError" else None
    if found is None:
        return None
    return found["question"] if found["notebook"] == stem else f"{found['question']} of {found['notebook']}"


def verdicts(nb, owners: list, asked: list, stem: str) -> dict:
    """question -> Verdict, from a notebook whose cells have run."""
    found = {q: Verdict(q) for q in asked}
    stopped = []                                   # questions whose stubs ran so far: a NameError may follow them
    for number, (cell, owner) in enumerate(zip(nb.cells, owners)):
        verdict = found.get(owner)
        meta = nbcells.grading(cell)
        if verdict and meta.get("solution"):
            if cell.cell_type == "markdown":
                verdict.written.append((meta["grade_id"], WRITTEN_STUB not in cell.source))
            else:
                verdict.parts.append(meta["grade_id"])
                verdict.unanswered += stubs_in(cell)
        error = error_of(cell) if cell.cell_type == "code" else None
        if error is None:
            continue
        name, message = error
        stub_of = stub_named(name, message, stem)
        if stub_of:
            stopped.append(stub_of)
        if verdict is None:
            if owner is None and not stub_of:
                raise SystemExit(f"the notebook's setup (cell {number}) failed before any question: {name}: {message}")
            continue
        if stub_of == owner:
            continue                                # its stub, already named from the cell's source
        elif stub_of:
            verdict.waits_on += [stub_of] if stub_of not in verdict.waits_on else []
        elif name == "NameError" and any(q != owner for q in stopped) and not verdict.unanswered:
            verdict.waits_on += [q for q in dict.fromkeys(stopped) if q != owner and q not in verdict.waits_on]
        elif not stopped or owner not in stopped:
            verdict.failures.append((number, message if name == "SelfCheckError" else f"{name}: {message}"))
    return found


def report(stem: str, found: dict, seconds: float) -> str:
    lines = [f"{stem}: {len(found)} question{'s' * (len(found) != 1)} checked in {seconds:.0f} s (quick settings)"]
    for verdict in found.values():
        status = verdict.status()
        if status == "not answered yet":
            status += f" ({', '.join(dict.fromkeys(verdict.unanswered))})"
        if status.startswith("waits on"):
            status += ": answer it first (its function is called here)"
        lines.append(f"  {verdict.question:<8} {status}")
        if status == "wrong":
            number, message = verdict.failures[0]      # the later ones most often follow from the first
            lines.append(f"           cell {number}: {message}")
            later = len(verdict.failures) - 1
            if later:
                lines.append(f"           (and {later} later cell{'s' * (later > 1)} of this question: fix the first, "
                             "then check again)")
        for part, done in verdict.written:
            lines.append(f"           written answer `{part}`: {'written' if done else 'not written yet'} "
                         "(a TA reads it)")
    return "\n".join(lines)


def check(name: str, question: str | list | None = None, folder: Path = ROOT / "notebooks") -> tuple:
    """(the report, whether every question asked is done) for one notebook, or one question of it (or a list)."""
    import nbformat

    path = find_notebook(name, folder)
    nb = nbformat.read(path, as_version=4)
    owners = questions_of_cells(nb.cells)
    ids = list(dict.fromkeys(q for q in owners if q))
    asked = [question] if isinstance(question, str) else list(question or [])
    unknown = next((q for q in asked if q not in ids), None)
    if unknown is not None:
        raise SystemExit(f"{path.stem} has no question {unknown!r}: its questions are {', '.join(ids)}")
    asked = [q for q in ids if q in asked] or ids
    if question:
        last = max(i for i, owner in enumerate(owners) if owner in asked)
        nb.cells, owners = nb.cells[:last + 1], owners[:last + 1]
    notes = []
    export.export(folder, ROOT / "answers", report=lambda line: notes.append(line) if path.name in line else None)
    seconds = run_cells(nb, path)
    found = verdicts(nb, owners, asked, path.stem)
    text = "\n".join([f"make answers: {note}" for note in notes] + [report(path.stem, found, seconds)])
    return text, all(v.status() in ("done", "written only") for v in found.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebook", help="the notebook's number (03) or name (03_kl_divergence)")
    parser.add_argument("question", nargs="*", help="a question's id (A3), or several; all of the notebook's without")
    args = parser.parse_args(argv)
    text, done = check(args.notebook, args.question or None)
    print(text)
    return 0                # a verdict is no failure of the check itself: it exits 1 only when it cannot check


if __name__ == "__main__":
    raise SystemExit(main())
