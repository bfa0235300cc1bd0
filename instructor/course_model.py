"""The course model: every question, the notebook that asks it, its statement, and its parts with their points and
who grades them. Everything that lists questions is made from it: the release's question tables, QUESTIONS.md, the
points table of docs/instructors.md, the gradebook's columns, the TA pages and the site.

Two sources, both written by hand and nothing else:

* the solution notebooks' cell metadata: a Markdown cell asks a question with the course's own key,
  `"questions": {"A3": "Derive the KL divergence ..."}` (a cell may ask several); an answer cell is nbgrader's
  (`solution`, `grade`, `grade_id` = `<question id>_<part>`, and `points` on a part a TA grades);
* the hidden tests' declarations in instructor/grader/bank/: `@hidden_test("A3", points=2)` and `@model_test(...)` on
  a class whose docstring says what it checks, in the module named after the notebook's answer module
  (bank/kl_divergence.py, or bank/vae_latent.py beside bank/vae.py). They are read here as text (Python's `ast`), so
  that the release and the pages never import the bank.

A part whose question no Markdown cell of its notebook asks (an answer cell, a hidden test), and a bank module with a
test but no notebook, stop with a message naming it: nothing is dropped in silence.

    python -m instructor.course_model           # write QUESTIONS.md and the points of docs/instructors.md
    python -m instructor.course_model --check   # change nothing; exit 1 when either differs from the notebooks
"""
import argparse
import ast
import json
import re
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tools import nbcells

ROOT = Path(__file__).resolve().parent.parent
BANK = Path("instructor") / "grader" / "bank"
HIDDEN_TEST, MODEL_TEST, TA = "hidden test", "model test", "TA"
DECORATORS = {"hidden_test": HIDDEN_TEST, "model_test": MODEL_TEST}
QUESTIONS_HEADER = """# Questions

Each homework question, in our own words, with its id and the notebook that asks it. Set A: graphical models, the
ELBO, the VAE, GANs, backpropagation; set B: a VAE on MNIST; set C: the ELBO, KL divergences, GAN theory; N: notes
on the KL and the VAE's loss. Every notebook states its questions again where they are asked; the students' release \
adds each notebook's points.

"""


class CourseError(ValueError):
    """A question, part or test that the model cannot place; the message names it and says where to fix it."""


@dataclass(frozen=True)
class Part:
    """One graded part of a question: a hidden test or a model test (named by its class), or a TA part (named by its
    grade_id)."""
    question: str
    notebook: str
    name: str
    points: float
    grader: str            # HIDDEN_TEST, MODEL_TEST or TA
    description: str       # what a test checks; for a TA part, "written" or "figure"


@dataclass(frozen=True)
class Question:
    """A question id as one notebook asks it (an id two notebooks ask is two questions)."""
    id: str
    notebook: str
    text: str
    column: str            # its gradebook column: the id, or `id@NN` for an id two notebooks ask
    answers: tuple         # grade_ids of its code answer cells, in notebook order
    parts: tuple           # its graded parts: tests in the bank's order, then TA parts (written, then figures)

    @property
    def points(self) -> float:
        return sum(p.points for p in self.parts)

    def graded_by(self, grader: str) -> list:
        return [p for p in self.parts if p.grader == grader]


def order(question_id: str, notebook: str) -> tuple:
    """Set, number, letter, then notebook: A2 < A10 < B1 < C1a < C2a-C2e < N."""
    found = re.match(r"([A-Z]+)(\d*)(.*)", question_id)
    return (found[1], int(found[2] or 0), found[3], notebook) if found else (question_id, 0, "", notebook)


def module_name(stem: str) -> str:
    """'04_vae' -> 'vae': the notebook's answer module, and its bank module's name."""
    return stem.split("_", 1)[1]


def notebook_of(stems, module: str) -> str | None:
    """The notebook (of `stems`) that a bank module tests: vae.py and vae_latent.py test 04_vae (the longest answer
    module name that is the module's name or a prefix of it before a `_`); None for a helper module (compare.py)."""
    name = module.rsplit(".", 1)[-1]
    found = [stem for stem in stems if name == module_name(stem) or name.startswith(f"{module_name(stem)}_")]
    return max(found, key=lambda stem: len(module_name(stem))) if found else None


@dataclass(frozen=True)
class Course:
    root: Path
    notebooks: tuple       # every numbered notebook's stem, 00 included
    questions: tuple       # every Question, in order
    all_tests: tuple = ()  # every hidden and model test (Part), in the bank's order: module name, then definition

    def notebook_of_module(self, name: str) -> str | None:
        return notebook_of(self.notebooks, name)

    # --- questions
    def asked(self, notebook: str | None = None) -> list:
        return [q for q in self.questions if notebook in (None, q.notebook)]

    def graded_notebooks(self) -> list:
        """The notebooks that ask questions (00 asks none), in order."""
        return sorted({q.notebook for q in self.questions})

    def ids_by_notebook(self) -> dict:
        """notebook stem -> its question ids, in order."""
        found = {}
        for q in self.questions:
            found.setdefault(q.notebook, []).append(q.id)
        return found

    def question(self, notebook: str, question_id: str) -> Question:
        """The question `question_id` of `notebook`; a stop naming both when the notebook does not ask it."""
        for q in self.questions:
            if q.notebook == notebook and q.id == question_id:
                return q
        raise CourseError(f"question {question_id!r} of {notebook}: no Markdown cell of notebooks/{notebook}.ipynb "
                          f"asks it (cell metadata `questions`); known there: "
                          f"{', '.join(self.ids_by_notebook().get(notebook, [])) or 'none'}")

    def column(self, notebook: str, question_id: str) -> str:
        return self.question(notebook, question_id).column

    # --- parts
    def parts(self, notebook: str | None = None) -> list:
        return [p for q in self.asked(notebook) for p in q.parts]

    def tests(self, notebook: str | None = None) -> list:
        """The hidden and model tests, in the bank's order (module name, then definition)."""
        return [p for p in self.all_tests if notebook in (None, p.notebook)]

    def ta_parts(self) -> dict:
        """(notebook, grade_id) -> (question id, points) of every part a TA grades: written answers and figures."""
        return {(p.notebook, p.name): (p.question, p.points) for p in self.parts() if p.grader == TA}

    def points(self, notebook: str) -> tuple:
        """(hidden tests, model tests, TA) points of a notebook."""
        parts = self.parts(notebook)
        return tuple(sum(p.points for p in parts if p.grader == g) for g in (HIDDEN_TEST, MODEL_TEST, TA))


# --- reading ------------------------------------------------------------------------------------------------------

def _literal(node, what: str, where: str):
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise CourseError(f"{where}: its {what} must be written as a literal (`@hidden_test(\"A3\", points=2)`)") \
            from None


def _declarations(path: Path) -> list:
    """(class name, question id, points, grader, description) of each test a bank module declares, in order."""
    found = []
    for node in ast.parse(path.read_text(), str(path)).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for decorator in node.decorator_list:
            name = getattr(getattr(decorator, "func", None), "id", None)
            if name not in DECORATORS:
                continue
            where = f"{path.name}, test {node.name}"
            arguments = {k.arg: k.value for k in decorator.keywords}
            if not decorator.args:
                raise CourseError(f"{where}: @{name} names no question")
            question = _literal(decorator.args[0], "question", where)
            points_node = decorator.args[1] if len(decorator.args) > 1 else arguments.get("points")
            if points_node is None:
                raise CourseError(f"{where}: @{name} gives no points")
            points = float(_literal(points_node, "points", where))
            description = " ".join((ast.get_docstring(node) or node.name).split())
            found.append((node.name, str(question), points, DECORATORS[name], description))
    return found


def _bank_tests(root: Path, stems: tuple) -> tuple:
    """Every test (Part) in root's bank, in module name then definition order."""
    bank = root / BANK
    if not bank.is_dir():
        return ()
    found = []
    for path in sorted(bank.glob("*.py")):
        if path.stem.startswith("_"):
            continue
        declared = _declarations(path)
        notebook = notebook_of(stems, path.stem)
        if declared and notebook is None:
            raise CourseError(f"{BANK / path.name} declares tests ({', '.join(d[0] for d in declared)}) but no "
                              f"notebook's answer module is named {path.stem} (or a prefix of it before a `_`): "
                              f"name the module after the notebook it tests")
        found += [Part(question, notebook, name, points, grader, description)
                  for name, question, points, grader, description in declared]
    return tuple(found)


def _read_notebook(path: Path) -> tuple:
    """(statements {id: text}, code answers {id: [grade_id]}, TA parts [Part]) of one solution notebook."""
    cells = json.loads(path.read_text())["cells"]
    stated, answers, ta = {}, {}, []
    for cell in cells:
        for question_id, text in nbcells.statements(cell).items():
            if question_id in stated:
                raise CourseError(f"{path.name}: two Markdown cells ask question {question_id!r} (metadata "
                                  "`questions`): state it once, where it is asked")
            stated[question_id] = text
    for cell in cells:
        question_id = nbcells.question_of(cell)
        if question_id is None:
            continue
        grade_id = nbcells.grading(cell)["grade_id"]
        if question_id not in stated:
            raise CourseError(f"{path.name}: answer cell {grade_id!r} answers question {question_id!r}, which no "
                              "Markdown cell of the notebook asks: add `\"questions\": {\"" + question_id +
                              "\": \"<the question, in our words>\"}` to the metadata of the cell that asks it")
        if nbcells.is_code_answer(cell):
            answers.setdefault(question_id, []).append(grade_id)
        elif nbcells.is_ta_part(cell):
            written = cell["cell_type"] == "markdown" or "Markdown(" in nbcells.source_of(cell)
            ta.append(Part(question_id, path.stem, grade_id, float(nbcells.grading(cell).get("points", 0)), TA,
                           "written" if written else "figure"))
    return stated, answers, ta


@cache
def load(root: Path = ROOT) -> Course:
    """The course of the repository at `root` (its notebooks/ and its bank)."""
    root = Path(root).resolve()
    paths = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    read = {path.stem: _read_notebook(path) for path in paths}
    all_tests = _bank_tests(root, tuple(read))
    tests = {}
    for part in all_tests:
        if part.question not in read[part.notebook][0]:
            raise CourseError(f"{BANK}: test {part.name} is of question {part.question!r}, which "
                              f"notebooks/{part.notebook}.ipynb does not ask (known there: "
                              f"{', '.join(read[part.notebook][0]) or 'none'})")
        tests.setdefault((part.notebook, part.question), []).append(part)
    rows = sorted(((qid, stem) for stem, (stated, _, _) in read.items() for qid in stated), key=lambda r: order(*r))
    count = {}
    for qid, _ in rows:
        count[qid] = count.get(qid, 0) + 1
    questions = []
    for qid, stem in rows:
        stated, answers, ta = read[stem]
        own_ta = [p for p in ta if p.question == qid]
        own_ta = [p for p in own_ta if p.description == "written"] + [p for p in own_ta if p.description == "figure"]
        questions.append(Question(qid, stem, stated[qid], qid if count[qid] == 1 else f"{qid}@{stem[:2]}",
                                  tuple(answers.get(qid, [])), tuple(tests.get((stem, qid), []) + own_ta)))
    return Course(root, tuple(read), tuple(questions), all_tests)


# --- what is made from it ------------------------------------------------------------------------------------------

def questions_markdown(course: Course) -> str:
    """QUESTIONS.md."""
    rows = ["| id | question | notebook |", "|---|---|---|"]
    rows += [f"| {q.id} | {q.text.replace('|', chr(92) + '|')} | {q.notebook} |" for q in course.questions]
    return QUESTIONS_HEADER + "\n".join(rows) + "\n"


def answer_names(source: str, grade_id: str) -> list:
    """The functions (or names) a code answer cell asks for, as the student sees them: `name`."""
    from answers import export

    lines = source.split("\n")
    names = {}
    for first, last in export.regions(source):
        enclosing = enclosing_definitions(lines, first)
        assigned = [m.group(1) for line in lines[first + 1:last] if (m := re.match(r"(\w+)\s*=[^=]", line))]
        names.update(dict.fromkeys([enclosing] if enclosing else assigned))
    return [f"`{n}`" for n in names] or [f"the cell `{grade_id}`"]


def enclosing_definitions(lines: list, first: int) -> str:
    """'Class.method' for the functions a region at line `first` sits in ('' at the top level)."""
    name, limit = [], len(lines[first]) - len(lines[first].lstrip())
    for line in reversed(lines[:first]):
        stripped = line.lstrip()
        depth = len(line) - len(stripped)
        match = re.match(r"(?:async\s+)?(def|class)\s+(\w+)", stripped)
        if match and depth < limit:
            name.insert(0, match.group(2))
            limit = depth
            if depth == 0:
                break
    return ".".join(name)


def asked_code(course: Course, notebook: str) -> dict:
    """name -> question id of each function (or class, or name) the notebook's code answers ask, first name only."""
    cells = json.loads((course.root / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]
    found = {}
    for cell in filter(nbcells.is_code_answer, cells):
        source = nbcells.source_of(cell)
        for name in answer_names(source, nbcells.grading(cell)["grade_id"]):
            if name.startswith("`"):
                found.setdefault(name.strip("`").split(".")[0], nbcells.question_of(cell))
    return found


def instructors_guide(course: Course, text: str) -> str:
    """docs/instructors.md with its table of what each notebook asks brought up to date: each row's points (tests +
    models + TA), every function a notebook asks named in its row (a new one appended with its question), a row for a
    notebook that has none, and the count of tests in the text."""
    lines = text.split("\n")
    rows = {line.split("|")[1].strip(): i for i, line in enumerate(lines) if re.match(r"^\| \d\d \|", line)}
    for stem in course.graded_notebooks():
        points = " + ".join(f"{p:g}" for p in course.points(stem))
        if stem[:2] not in rows:
            last = max(rows.values())
            lines.insert(last + 1, f"| {stem[:2]} | - | - | - | {points} |")
            rows = {k: (v + 1 if v > last else v) for k, v in rows.items()} | {stem[:2]: last + 1}
        cells = lines[rows[stem[:2]]].split(" | ")
        missing = [f"`{name}` ({qid})" for name, qid in asked_code(course, stem).items() if f"`{name}`" not in cells[2]]
        if missing:
            cells[2] = "; ".join(([cells[2]] if cells[2] != "-" else []) + missing)
        cells[-1] = f"{points} |"
        lines[rows[stem[:2]]] = " | ".join(cells)
    text = "\n".join(lines)
    counts = [len([p for p in course.parts() if p.grader == g]) for g in (HIDDEN_TEST, MODEL_TEST)]
    text = re.sub(r"\b\d+ tests calling the students' functions", f"{counts[0]} tests calling the students' functions",
                  text)
    return re.sub(r"the \d+ model(\s+)tests", lambda m: f"the {counts[1]} model{m[1]}tests", text)


def generated(course: Course) -> dict:
    """path (relative to the course's root) -> the text the course model gives it."""
    guide = course.root / "docs" / "instructors.md"
    return {"QUESTIONS.md": questions_markdown(course),
            "docs/instructors.md": instructors_guide(course, guide.read_text())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is out of date")
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    try:
        course = load(args.root)
        files = generated(course)
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    stale = [name for name, text in files.items() if (course.root / name).read_text() != text]
    for name in stale:
        if not args.check:
            (course.root / name).write_text(files[name])
        print(f"{'out of date' if args.check else 'wrote'}: {name}")
    if args.check and stale:
        print("Run `make questions` to write them again from the notebooks.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
