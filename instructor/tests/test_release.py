"""The students' release (`make student`): every question asked, no answer given, and the repository still works.

The leak test reads every solution region of the solution notebooks (code, prose, LaTeX, the docstrings of answer
functions) and looks for each in every file of the release; it is shown to find a planted leak of each kind.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from answers import export
from instructor import questions, release

ROOT = Path(__file__).resolve().parents[2]
STUDENT_REPO = "https://github.com/example-course/homework"
SOLUTIONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("edition") / "release"
    result = subprocess.run([sys.executable, "-m", "instructor.release", "--out", str(out),
                             "--repository", STUDENT_REPO],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


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
        spans = export.regions(cell.source) if export.grading(cell).get("solution") else []
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
            if export.is_code_answer(cell):
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
            concluded = section_text(solution, question, lambda c: export.grading(c).get("grade") and
                                     export.grading(c).get("solution"))
            stated = section_text(solution, question,
                                  lambda c: c.cell_type == "markdown" and not export.grading(c).get("solution"))
            code = section_text(given, question,
                                lambda c: c.cell_type == "code" and not export.grading(c).get("solution"))
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
            if export.is_code_answer(cell):
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
            if not export.is_code_answer(cell):
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


# --------------------------------------------------------------------------------------------------------------------

def test_make_student_refuses_a_release_that_points_at_the_solutions(tmp_path):
    for repository, words in ((None, "STUDENT_REPO is not set"),
                              (release.repository_url(), "is the solutions' repository")):
        with pytest.raises(SystemExit, match=words):
            release.check_repository(repository)
    result = subprocess.run(["make", "-s", "-C", str(ROOT), "student", "-o", ".venv/.instructor", "-o",
                             ".venv/.installed"], capture_output=True, text=True,
                            env={**os.environ, "STUDENT_REPO": ""})
    assert result.returncode != 0 and "make student STUDENT_REPO=https://github.com/" in result.stdout + result.stderr


def test_make_student_refuses_what_is_not_a_repository_address(tmp_path):
    for repository in ("example.org/course/homework", "https://github.com/course", "file:///srv/homework"):
        result = subprocess.run([sys.executable, "-m", "instructor.release", "--out", str(tmp_path / "release"),
                                 "--repository", repository], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode != 0 and "is not a repository address" in result.stderr, result.stderr
        assert not (tmp_path / "release").exists()
    ssh = release.repository_url().replace("https://github.com/", "git@github.com:") + ".git"
    with pytest.raises(SystemExit, match="is the solutions' repository"):
        release.check_repository(ssh)                        # the same repository in its ssh form


def test_a_release_off_github_has_no_colab_link_and_says_why(tmp_path):
    out = tmp_path / "release"
    result = subprocess.run([sys.executable, "-m", "instructor.release", "--out", str(out), "--repository",
                             "git@gitlab.com:course/homework.git"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is not on GitHub: the release has no Colab links" in result.stdout
    readme = (out / "README.md").read_text()
    assert "colab.research.google.com" not in readme and "Colab opens notebooks from GitHub alone" in readme
    assert '"Open in Colab" link' not in readme and "Upload a notebook (File > Upload notebook)" in readme
    first = nbformat.read(out / "notebooks" / "01_ancestral_sampling.ipynb", as_version=4).cells[0].source
    assert "https://gitlab.com/course/homework.git" in first


def test_the_release_holds_what_students_need_and_nothing_of_the_instructors(built):
    for name in ("README.md", "Makefile", "pyproject.toml", "requirements.txt", "environment.yml", "QUESTIONS.md",
                 "data/README.md", "helpers/__init__.py", "answers/export.py", "tools/run_notebooks.py",
                 "tools/colab.py", "tests/conftest.py", ".ci/run"):
        assert (built / name).is_file(), f"the release lacks {name}"
    for name in ("instructor", "docs", "results", "checkpoints", "grades", "site", ".quick",
                 "requirements-instructor.txt", "requirements-dev.txt"):
        assert not (built / name).exists(), f"{name} must not be in the release"
    assert not list(built.rglob("*.pt")) and "nbgrader" not in (built / "requirements.txt").read_text()
    assert "[tool.mutmut]" not in (built / "pyproject.toml").read_text()
    assert f'Repository = "{STUDENT_REPO}"' in (built / "pyproject.toml").read_text()
    readme = (built / "README.md").read_text()
    for absent in ("make mutate", "checkpoints/", "Model quality", "test_questions", "seed's", "instructor",
                   "make grade"):
        assert absent not in readme, f"the students' README mentions {absent!r}, which the release lacks"


def test_every_question_id_has_an_exercise_region_in_the_release(built):
    for notebook, ids in questions.ids_by_notebook().items():
        cells = nbformat.read(built / "notebooks" / f"{notebook}.ipynb", as_version=4).cells
        tagged = {export.question_of(c) for c in cells if export.grading(c).get("solution")}
        assert set(ids) <= tagged, f"{notebook}: no exercise region for {sorted(set(ids) - tagged)}"


def test_each_release_notebook_states_its_questions_points_and_grading(built):
    for notebook, ids in questions.ids_by_notebook().items():
        nb = nbformat.read(built / "notebooks" / f"{notebook}.ipynb", as_version=4)
        table = next(c.source for c in nb.cells if c.source.startswith("## Questions of this notebook"))
        for qid in ids:
            assert re.search(rf"^\| {re.escape(qid)} \|.*\| \d+(\.\d+)? \|", table, re.M), (notebook, qid)
        assert "a TA reads" in table or "hidden" in table.lower() or "fresh" in table


def test_no_answer_reaches_the_release(built):
    fragments = leak_fragments()
    assert all(fragments.values()), "the leak test found no fragment of some kind: it would pass anything"
    found = leaks(release_text(built), fragments)
    assert not found, f"answers in the release: {found}"
    stated = docstring_leaks(built)
    assert not stated, f"docstrings that spell out their answer: {stated}"
    given = property_leaks(built)
    assert not given, f"given code that states what a written answer concludes: {given}"


def test_the_leak_test_finds_given_code_that_states_an_answers_conclusion(built, tmp_path):
    copy = tmp_path / "release"
    subprocess.run(["cp", "-r", str(built), str(copy)], check=True)
    path = next((copy / "notebooks").glob("03_*.ipynb"))
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "kl_curve = [" in c.source)
    cell.source += '\nright.scatter([], [], marker="^", label="KL not finite")'
    nbformat.write(nb, path)
    assert property_leaks(copy) == {"03_kl_divergence C3e": ["infinite"]}


@pytest.mark.parametrize("kind", ["code", "prose", "formula", "docstring", "questions"])
def test_the_leak_test_finds_a_planted_leak_of_each_kind(built, tmp_path, kind):
    fragments = leak_fragments()
    copy = tmp_path / "release"
    subprocess.run(["cp", "-r", str(built), str(copy)], check=True)
    if kind == "docstring":
        path = next((copy / "notebooks").glob("03_*.ipynb"))
        nb = nbformat.read(path, as_version=4)
        cell = next(c for c in nb.cells if "def gaussian_kl(" in c.source)
        planted = '"""KL = torch.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5: KL('
        cell.source = cell.source.replace('"""KL(', planted, 1)
        nbformat.write(nb, path)
        assert docstring_leaks(copy), "a docstring that spells out its answer went unnoticed"
        return
    planted = sorted(fragments["formula" if kind == "questions" else kind])[0]
    target = copy / ("QUESTIONS.md" if kind == "questions" else "helpers/plotting.py")
    target.write_text(target.read_text() + f"\n# {planted}\n")
    assert leaks(release_text(copy), fragments), f"a planted {kind} leak went unnoticed"


def test_an_untouched_release_notebook_stops_at_its_first_stub_naming_it(built):
    """Run each exercise notebook as a student would: it stops at the first answer not yet written, with its name."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    env = {**os.environ, "DGM_MODE": "quick", "DGM_DATA_SOURCE": "embedded", "PYTHONPATH": str(built),
           "DGM_OUTPUT": str(built / ".quick")}
    for path in sorted((built / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        first = next((c for c in nb.cells if export.grading(c).get("solution") and c.cell_type == "code"), None)
        if first is None:
            continue
        os.environ.update(env)
        try:
            with pytest.raises(CellExecutionError) as stopped:
                NotebookClient(nb, timeout=300, kernel_name="python3",
                               resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
        finally:
            for key in env:
                os.environ.pop(key, None)
        assert stopped.value.ename == "NotImplementedError", (path.name, stopped.value.ename, stopped.value.evalue)
        assert "is not written yet" in stopped.value.evalue and export.question_of(first) in stopped.value.evalue


def test_the_students_own_tests_that_read_the_release_pass_there(built):
    """tests/ is the same in the release; these are the ones that read files the release makes anew (its README,
    its notebooks' Colab cells, its pyproject): the others run on every `make test` here."""
    result = subprocess.run([sys.executable, "-m", "pytest", "tests/test_colab.py", "tests/test_runtime.py", "-q",
                             "-p", "no:cacheprovider", "-x"],
                            cwd=built, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": str(built)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


def test_the_release_answers_are_stubs_exported_from_its_notebooks(built):
    for module in (built / "answers").glob("*.py"):
        if module.stem in ("__init__", "export"):
            continue
        inside, _ = regions_of(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
            module.read_text(), metadata={"nbgrader": {"solution": True, "grade": False, "grade_id": "x_y"}})]))
        assert all("not written yet" in line or "YOUR CODE HERE" in line for line in inside.split("\n") if line.strip())


def test_the_instructors_guide_names_every_asked_answer_and_the_points_it_gives():
    """docs/instructors.md says per notebook what is given and what is asked: checked against the notebooks and the
    bank, so that the guide cannot drift from what the release asks."""
    from instructor.grader import bank, jobs

    guide = (ROOT / "docs" / "instructors.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in guide.splitlines() if re.match(r"^\| 0\d \|", line)}
    parts = jobs.manual_parts()
    for path in SOLUTIONS:
        cells = nbformat.read(path, as_version=4).cells
        names = set()
        for cell in filter(export.is_code_answer, cells):
            lines = cell.source.split("\n")
            for first, last in export.regions(cell.source):
                name = release.enclosing_definitions(lines, first).split(".")[0]
                names |= {name} if name else {m.group(1) for line in lines[first + 1:last]
                                              if (m := re.match(r"(\w+)\s*=[^=]", line))}
        if not names:
            continue
        row = rows[path.stem[:2]]
        assert all(f"`{name}`" in row for name in names), (path.stem, sorted(n for n in names if f"`{n}`" not in row))
        tests = bank.tests(path.stem)
        points = (sum(t.points for t in tests if isinstance(t, bank.FunctionTest)),
                  sum(t.points for t in tests if isinstance(t, bank.ModelTest)),
                  sum(p for (stem, _), (_, p) in parts.items() if stem == path.stem))
        assert row.rstrip(" |").endswith(" + ".join(f"{p:g}" for p in points)), (path.stem, points)
    counts = [sum(isinstance(t, kind) for t in bank.tests()) for kind in (bank.FunctionTest, bank.ModelTest)]
    assert f"{counts[0]} tests calling the students' functions" in guide and f"the {counts[1]} model" in " ".join(
        guide.split()), counts


def test_every_stub_says_what_it_returns(built, tmp_path):
    """The docstring is all a student sees of an answer function: it names the returned type, and a tensor's shape."""
    docstrings = answer_functions(built)
    assert len(docstrings) >= 50 and "07_backprop Linear.backward" in docstrings, sorted(docstrings)
    gaps = return_gaps(docstrings)
    assert not gaps, f"stubs that do not say what they return: {gaps}"
    copy = tmp_path / "release"
    subprocess.run(["cp", "-r", str(built), str(copy)], check=True)
    path = next((copy / "notebooks").glob("03_*.ipynb"))
    nb = nbformat.read(path, as_version=4)
    for planted, gap in (("The KL divergence of the two Gaussians, elementwise, in nats.", "no type"),
                         ("The KL divergence of the two Gaussians as a tensor (s1, s2 are deviations).", "its shape")):
        nb = nbformat.read(next((built / "notebooks").glob("03_*.ipynb")), as_version=4)
        cell = next(c for c in nb.cells if "def gaussian_kl(" in c.source)
        cell.source = re.sub(r'""".*?"""', f'"""{planted}"""', cell.source, count=1, flags=re.S)
        nbformat.write(nb, path)
        assert gap in return_gaps(answer_functions(copy)).get("03_kl_divergence gaussian_kl", ""), planted
