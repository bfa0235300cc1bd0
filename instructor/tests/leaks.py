"""The leak search of the students' release: every line, sentence and formula of a solution region, the docstrings
of answer functions and the given code of a question's section, looked for in what a student can read. Shared by the
release's tests and the students' site's."""
import json
import re
from pathlib import Path

import nbformat

from answers import export
from tools import nbcells

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def normal(text: str) -> str:
    """Text compared for leaks: lower case, every run of white space one space."""
    return " ".join(text.lower().split())


def release_text(release_dir: Path) -> str:
    """Everything a student can read in the release: file names and texts, notebooks' sources, outputs and
    metadata."""
    parts = []
    for path in sorted(release_dir.rglob("*")):
        if ".git" in path.parts or not path.is_file():
            continue
        parts.append(str(path.relative_to(release_dir)))
        if path.suffix == ".ipynb":
            nb = nbformat.read(path, as_version=4)
            parts += [c.source for c in nb.cells] + [json.dumps(c.get("outputs", [])) for c in nb.cells]
            parts += [json.dumps(c.metadata) for c in nb.cells] + [json.dumps(nb.metadata)]
        else:
            parts.append(path.read_bytes().decode("utf-8", errors="replace"))
    return normal("\n".join(parts))


def regions_of(nb) -> tuple:
    """(the text inside solution regions, the text outside them) of a solution notebook."""
    inside, outside = [], []
    for cell in nb.cells:
        lines = cell.source.split("\n")
        spans = export.regions(cell.source) if nbcells.grading(cell).get("solution") else []
        covered = {n for first, last in spans for n in range(first, last + 1)}
        for number, line in enumerate(lines):
            (inside if number in covered and export.BEGIN not in line and export.END not in line else outside).append(
                line)
    return "\n".join(inside), "\n".join(outside)


def formulas(text: str) -> list:
    """The LaTeX of a Markdown text: each $$...$$ display, then each $...$ between a pair of single dollars."""
    displays = re.findall(r"\$\$(.+?)\$\$", text, re.S)
    inline = re.sub(r"\$\$(.+?)\$\$", " ", text, flags=re.S).split("$")[1::2]
    return displays + inline


def leak_fragments() -> dict:
    """kind -> the fragments of answers that must appear nowhere in the release: the lines, sentences and formulas
    of every solution region that the solution notebooks never show outside a region (context is no answer)."""
    found, insides, context = {"code": set(), "prose": set(), "formula": set()}, [], []
    for path in SOLUTIONS:
        inside, outside = regions_of(nbformat.read(path, as_version=4))
        insides.append(inside)
        context.append(outside)
    context = normal("\n".join(context))
    for inside in insides:
        for line in inside.split("\n"):
            text = normal(line.lstrip("# "))
            if len(text) < 16 or text in context:
                continue
            looks_like_code = re.search(r"[=()\[\]]", line) and not line.lstrip().startswith(("*", "-", "$"))
            found["code" if looks_like_code else "prose"].add(text)
        for formula in formulas(inside):
            text = normal(formula)
            if len(text) >= 12 and text not in context:
                found["formula"].add(text)
    return found


def leaks(text: str, fragments: dict) -> dict:
    found = {kind: sorted(f for f in items if f in text) for kind, items in fragments.items()}
    return {kind: items for kind, items in found.items() if items}


def answer_docstrings(release_dir: Path) -> dict:
    """notebook.function -> docstring, for every function whose body holds an answer region in the release."""
    import ast

    found = {}
    for path in (release_dir / "notebooks").glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            if nbcells.is_code_answer(cell):
                for node in ast.walk(ast.parse(cell.source)):
                    if isinstance(node, ast.FunctionDef) and export.BEGIN in ast.get_source_segment(cell.source, node):
                        found[f"{path.stem}.{node.name}"] = ast.get_docstring(node) or ""
    return found


# What a written answer may conclude about the values its question's code produces, by the ways text and code say it:
# given code of that question (a label, a branch, a name) that says it gives the conclusion away.
PROPERTIES = {
    "infinite": r"\\infty|\binfinit\w*|\bnot finite\b|\bnon-?finite\b|\bfloat\(\s*[\"']-?inf[\"']\s*\)|\bmath\.inf\b"
                r"|\bisinf\b",
    "log 2": r"\\log\s*2\b|\blog\s*\(?2\)?(?![\d.])|\bmath\.log\(2\)|\bln\s*2\b",
}


def section_text(cells: list, question: str, pick) -> str:
    """The sources of the cells of `question`'s section (as `make check` assigns them) that `pick` accepts."""
    from tools.check import questions_of_cells

    return "\n".join(c.source for c, owner in zip(cells, questions_of_cells(cells)) if owner == question and pick(c))


def property_leaks(release_dir: Path) -> dict:
    """question -> the properties that its written answers conclude, its statement leaves open, and the release's
    given code of its section states."""
    from tools.check import questions_of_cells

    found = {}
    for path in SOLUTIONS:
        solution = nbformat.read(path, as_version=4).cells
        given = nbformat.read(release_dir / "notebooks" / path.name, as_version=4).cells
        for question in dict.fromkeys(q for q in questions_of_cells(solution) if q):
            concluded = section_text(solution, question, lambda c: nbcells.grading(c).get("grade") and
                                     nbcells.grading(c).get("solution"))
            stated = section_text(solution, question,
                                  lambda c: c.cell_type == "markdown" and not nbcells.grading(c).get("solution"))
            code = section_text(given, question,
                                lambda c: c.cell_type == "code" and not nbcells.grading(c).get("solution"))
            leaked = [name for name, pattern in PROPERTIES.items() if re.search(pattern, concluded, re.I)
                      and not re.search(pattern, stated, re.I) and re.search(pattern, code, re.I)]
            if leaked:
                found[f"{path.stem} {question}"] = leaked
    return found


def formula_text(text: str) -> str:
    """Text as a formula reads: no spaces, no module prefixes, powers written one way."""
    text = re.sub(r"\b(torch|math|np|F)\.", "", text.lower()).replace("**", "^")
    return re.sub(r"\s+", "", text)


def solution_code() -> dict:
    """notebook.function -> the formula text of the function's solution regions."""
    import ast

    found = {}
    for path in SOLUTIONS:
        for cell in nbformat.read(path, as_version=4).cells:
            if nbcells.is_code_answer(cell):
                lines = cell.source.split("\n")
                for node in ast.walk(ast.parse(cell.source)):
                    if isinstance(node, ast.FunctionDef):
                        body = [lines[n] for first, last in export.regions(cell.source) for n in range(first + 1, last)
                                if node.lineno <= first < node.end_lineno]
                        if body:
                            found[f"{path.stem}.{node.name}"] = formula_text("\n".join(body))
    return found


def stated_in(docstring: str, code: str, length: int = 14) -> str | None:
    """A piece of arithmetic of the solution's code (`length` characters or more, two operators or more) that the
    docstring spells out, or None. Names alone (of arguments, of functions) are no formula."""
    doc = formula_text(docstring)
    pieces = (code[i:i + length] for i in range(len(code) - length + 1))
    return next((p for p in pieces if p in doc and sum(p.count(op) for op in "+-*/^") >= 2), None)


def docstring_leaks(release_dir: Path) -> dict:
    code = solution_code()
    found = {name: stated_in(doc, code.get(name, "")) for name, doc in answer_docstrings(release_dir).items()}
    return {name: piece for name, piece in found.items() if piece}


# What a stub's docstring must say of the value it returns: its type, and a tensor's shape, in one of the ways the
# docstrings write it: "(n, 784)", "(...)", "(n * n, 2)", "shaped like w", "shape mu.shape", "a scalar tensor", "q's
# batch shape", "the shape p and n broadcast to".
RETURN_TYPE = re.compile(r"\b(tensors?|floats?|int|dict|list|tuple|bool|str|None|MultivariateNormal)\b")
SHAPE = re.compile(r"\((?:\.\.\.|\*?\w[\w.]*(?: \* \w+)?)?(?:, ?(?:\.\.\.|\*?\w[\w.]*(?: \* \w+)?))*,?\)"
                   r"|\bshaped like\b|\bshape \w+\.shape\b|\bscalar tensors?\b|\bbatch shape\b"
                   r"|\bshape [\w ]+ broadcast to\b")


def answer_functions(release_dir: Path) -> dict:
    """'notebook Class.function' -> docstring, for every function that holds an answer region in the release."""
    import ast

    found = {}
    for path in sorted((release_dir / "notebooks").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if not nbcells.is_code_answer(cell):
                continue
            tree = ast.parse(cell.source)
            classes = {f: c.name for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for f in c.body}
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef) and export.BEGIN in ast.get_source_segment(cell.source, node):
                    name = ".".join(filter(None, (classes.get(node), node.name)))
                    found[f"{path.stem} {name}"] = ast.get_docstring(node) or ""
    return found


def return_gaps(docstrings: dict) -> dict:
    """name -> what its docstring leaves unsaid of the returned value: its type, or (for a tensor) its shape."""
    gaps = {}
    for name, doc in docstrings.items():
        text = " ".join(doc.split())
        if not RETURN_TYPE.search(text):
            gaps[name] = "no type (tensor, float, dict, tuple, None, ...)"
        elif re.search(r"\btensors?\b", text) and not any(
                match[0] == "()" or "," in match[0] or "..." in match[0] or not match[0].startswith("(")
                for match in SHAPE.finditer(text)):
            gaps[name] = "a tensor without its shape"
    return gaps
