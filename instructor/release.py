"""`make student`: build the students' repository, release/, from the solution notebooks (docs/instructors.md).

The solution notebooks are the single source. nbgrader's own preprocessors make the exercise notebooks: ClearSolutions
replaces every region between `### BEGIN SOLUTION` and `### END SOLUTION` of a solution cell (nbgrader metadata) with a
stub and refuses a region in any other cell, ClearHiddenTests drops `### BEGIN HIDDEN TESTS` regions, and ClearOutput
removes every output. NamedStubs, the one extension, only chooses each stub: code raises NotImplementedError naming the
function and the question, a written answer becomes a Markdown cell "YOUR ANSWER HERE". Each release notebook then
gets a table of its questions under its title, made from the course model (course_model.py), which reads the hidden
tests' declarations as text: the release never imports the bank.

    python -m instructor.release --out release --repository https://github.com/<course>/<homework>
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import nbformat
from nbconvert.exporters import NotebookExporter
from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions
from traitlets.config import Config

from answers import export
from instructor import course_model
from instructor.course_model import answer_names, enclosing_definitions
from tools import colab, nbcells

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).with_name("student-README.md")
FOLDERS = ["helpers", "tools", "tests", "data", ".ci"]                  # what students get, whole
FILES = ["Makefile", "pyproject.toml", "requirements.txt", "environment.yml", "LICENSE", "QUESTIONS.md", ".gitignore",
         "answers/__init__.py", "answers/export.py", "notebooks/conftest.py"]
BEGIN, END = export.BEGIN, export.END
TEXT_STUB = ("**YOUR ANSWER HERE** (question {question}, part `{part}`): replace this text with your answer, in "
             "Markdown, with LaTeX between `$` signs.")


def stub(kind: str, name: str, question: str, notebook: str) -> list:
    """The lines a code region becomes; they keep the markers, between which students write. Each message matches
    export.UNANSWERED, by which the checks and `make test` tell an answer not written yet from a wrong one."""
    where = f"(question {question}, notebook {notebook})"
    if kind == "function":
        message = (f"{name} {where} is not written yet: write it between the markers in {notebook}, then check it "
                   f"with `make check NB={notebook[:2]} Q={question}` (or `python -m tools.check {notebook[:2]} "
                   f"{question}`)")
    elif kind == "figure":
        message = f"the figure {where} is not drawn yet: write the code between the markers"
    else:
        message = f"the answer of this cell {where} is not written yet: write it between the markers"
    assert export.unanswered(message) == question, message
    return ["### BEGIN SOLUTION", "# YOUR CODE HERE", f"raise NotImplementedError({message!r})", "### END SOLUTION"]


def is_written(cell) -> bool:
    """A written answer: a Markdown solution cell, or a code cell whose region renders Markdown from numbers."""
    meta = nbcells.grading(cell)
    return meta.get("solution", False) and (cell.cell_type == "markdown" or (
        meta.get("grade", False) and "Markdown(" in cell.source))


class NamedStubs(ClearSolutions):
    """nbgrader's ClearSolutions, with a stub of its own for each region (see the module's docstring)."""

    def preprocess_cell(self, cell, resources, index):
        # a line naming both markers is prose about the convention, not a region: hide it from nbgrader's scan
        mentions = [line for line in cell.source.split("\n") if BEGIN in line and END in line]
        for number, line in enumerate(mentions):
            cell.source = cell.source.replace(line, f"__MENTION_{number}__", 1)
        cell, resources = self.stub_cell(cell, resources, index)
        for number, line in enumerate(mentions):
            cell.source = cell.source.replace(f"__MENTION_{number}__", line, 1)
        return cell, resources

    def stub_cell(self, cell, resources, index):
        if is_written(cell):
            question = nbcells.question_of(cell)
            cell.cell_type = "markdown"
            cell.source = TEXT_STUB.format(question=question, part=nbcells.grading(cell)["grade_id"])
            for key in ("outputs", "execution_count"):
                cell.pop(key, None)
            return cell, resources
        if cell.cell_type != "code" or not nbcells.grading(cell).get("solution"):
            return super().preprocess_cell(cell, resources, index)
        lines = cell.source.split("\n")
        figure = nbcells.grading(cell).get("grade", False)
        stubs = []
        for first, _ in export.regions(cell.source):
            name = enclosing_definitions(lines, first)
            stubs.append(stub("figure" if figure else "function" if name else "code", name,
                              nbcells.question_of(cell), resources["metadata"]["name"]))
        self.code_stub = {"python": "__STUB__"}
        cell, resources = super().preprocess_cell(cell, resources, index)
        out = []
        for line in cell.source.split("\n"):
            if line.strip() == "__STUB__":
                indent = line[:len(line) - len(line.lstrip())]
                out += [indent + s for s in stubs.pop(0)]
            else:
                out.append(line)
        cell.source = "\n".join(out)
        return cell, resources


def exporter() -> NotebookExporter:
    config = Config()
    config.NamedStubs.enforce_metadata = True            # a region outside a solution cell would leak: refuse it
    config.NamedStubs.text_stub = "**YOUR ANSWER HERE**"
    config.ClearOutput.remove_metadata_fields = {"collapsed", "scrolled", "execution", "ExecuteTime"}
    notebook_exporter = NotebookExporter(config=config)
    for preprocessor in (ClearHiddenTests, NamedStubs, ClearOutput):
        notebook_exporter.register_preprocessor(preprocessor(config=config), enabled=True)
    return notebook_exporter


def questions_table(source: nbformat.NotebookNode, stem: str) -> str:
    """The Markdown table of a notebook's questions: what to write, its points, and who grades each part."""
    rows = ["## Questions of this notebook", "",
            "| id | question | you write | points | how it is graded |", "|---|---|---|---|---|"]
    cells = {nbcells.grading(c)["grade_id"]: c for c in source.cells if nbcells.question_of(c)}
    for question in course_model.load(ROOT).asked(stem):
        code = list(dict.fromkeys(n for grade_id in question.answers
                                  for n in answer_names(cells[grade_id].source, grade_id)))
        ta = question.graded_by(course_model.TA)
        written = [p for p in ta if p.description == "written"]
        figures = [p for p in ta if p.description == "figure"]
        parts = ([", ".join(code)] if code else []) + (["a written answer"] if written else []) + (
            ["a figure"] if figures else [])
        how = [f"{p.description} ({p.points:g})" for p in question.parts if p.grader != course_model.TA]
        how += [f"a TA reads your {'figure' if p in figures else 'answer'} `{p.name}` ({p.points:g})" for p in ta]
        rows.append(f"| {question.id} | {question.text.replace('|', chr(92) + '|')} | {'; '.join(parts) or '-'} | "
                    f"{question.points:g} | {'; '.join(how) or '-'} |")
    rows += ["", "Write code between `### BEGIN SOLUTION` and `### END SOLUTION`, keeping the function's name, "
             "arguments "
             "and docstring, and written answers in the cells that say **YOUR ANSWER HERE**. The grader runs its own "
             "tests on your functions, with inputs you have not seen, and evaluates the models your notebook trains; "
             "it runs only what lies between the markers, with the rest of the notebook as released. A TA reads the "
             "written answers and figures."]
    return "\n".join(rows)


def strip_notebook(source: Path, notebook_exporter: NotebookExporter) -> nbformat.NotebookNode:
    """The exercise notebook made from one solution notebook."""
    try:
        body, _ = notebook_exporter.from_filename(str(source), resources={"metadata": {"name": source.stem}})
    except (RuntimeError, export.ExportError) as error:
        raise SystemExit(f"{source.name}: {error}. Put `### BEGIN SOLUTION` and `### END SOLUTION` on lines of their "
                         "own "
                         "around each answer, in a cell marked as a solution (nbgrader metadata).") from None
    nb = nbformat.reads(body, as_version=4)
    nb.metadata.pop("widgets", None)
    title = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and c.source.startswith("# "))
    table = questions_table(nbformat.read(source, as_version=4), source.stem)
    nb.cells.insert(title + 1, nbformat.v4.new_markdown_cell(table, id=f"questions-{source.stem[:2]}"))
    return nb


def release_files(root: Path = ROOT) -> list:
    """The files students get: FILES, and every file git does not ignore in FOLDERS."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", *FOLDERS],
                            cwd=root, capture_output=True, text=True)
    if listed.returncode != 0:
        raise SystemExit(f"cannot list the repository's files with git ({listed.stderr.strip()}): build the release "
                         "from a clone of the course repository")
    return FILES + [line for line in listed.stdout.splitlines() if (root / line).is_file()]


def repository_url(root: Path = ROOT) -> str:
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["urls"]["Repository"]


def check_repository(repository: str | None) -> str:
    """The students' repository URL, refused when missing or when it is the solutions' own."""
    if not repository:
        raise SystemExit("STUDENT_REPO is not set: the release's Colab cells and links must point at the students' "
                         "repository, not at these solutions. Run `make student STUDENT_REPO=https://github.com/"
                         "<course>/<homework>` (the repository you will push release/ to).")
    if colab.parts(repository) is None:
        raise SystemExit(f"STUDENT_REPO={repository} is not a repository address: give it as https://<host>/<owner>/"
                         "<name>, git@<host>:<owner>/<name>.git or ssh://git@<host>/<owner>/<name>")
    if colab.colab_link(repository, "x.ipynb") is None:
        print(f"STUDENT_REPO={repository} is not on GitHub: the release has no Colab links (Colab opens notebooks "
              "from GitHub alone), and its README says so")
    if colab.parts(repository) == colab.parts(repository_url()):
        raise SystemExit(f"STUDENT_REPO={repository} is the solutions' repository (pyproject.toml): students would "
                         "open "
                         "the answers. Give the address of the separate repository you will push release/ to.")
    return repository


def run(command: list, cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, env={**os.environ, "PYTHONPATH": str(cwd)}, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed in the release:\n{result.stdout}{result.stderr}")


def build(out: Path, repository: str) -> Path:
    """Write the release into `out` (replaced as a whole, never half-built, its .git kept); returns it."""
    out = out.resolve()
    if out == ROOT or out in ROOT.parents or (out / "instructor").exists() or (out / "results").exists():
        raise SystemExit(f"refusing to replace {out}: it is not a student release (default: release/)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for name in release_files():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, staging / name)
        (staging / "notebooks").mkdir(exist_ok=True)
        notebook_exporter = exporter()
        for source in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
            nbformat.write(strip_notebook(source, notebook_exporter), staging / "notebooks" / source.name)
        pyproject = staging / "pyproject.toml"
        text = re.sub(r'(?m)^Repository = ".*"$', f'Repository = "{repository}"', pyproject.read_text())
        pyproject.write_text(re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[|\Z)", "", text).rstrip() + "\n")  # instructors'

        run([sys.executable, "-m", "answers.export"], staging)       # stubs, exported like the students' own answers
        (staging / "README.md").write_text(student_readme(staging))
        run([sys.executable, "tools/colab.py"], staging)             # Colab cells and links point at the students' repo
        if (out / ".git").is_dir():
            os.replace(out / ".git", staging / ".git")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def student_readme(release: Path) -> str:
    """The students' README: the template, with a row per notebook and its Open-in-Colab link (on GitHub)."""
    url = repository_url(release)
    on_github, ids = colab.colab_link(url, "x.ipynb") is not None, course_model.load(ROOT).ids_by_notebook()
    rows = ["| notebook | questions | |", "|---|---|---|"] if on_github else ["| notebook | questions |", "|---|---|"]
    for stem in sorted(p.stem for p in (release / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        link = f" [Open in Colab]({colab.colab_link(url, stem + '.ipynb')}) |" if on_github else ""
        rows.append(f"| [`{stem}`](notebooks/{stem}.ipynb) | {', '.join(ids.get(stem, [])) or '(setup)'} |{link}")
    text = TEMPLATE.read_text()
    if not on_github:
        rows += ["", f"This repository is not on GitHub ({colab.parts(url)[0]}), and Colab opens notebooks from "
                 "GitHub alone: there are no Open-in-Colab links. To use Colab, upload a notebook there (File > "
                 "Upload notebook) and run its first cell, which clones this repository."]
        for linked, uploaded in ((', or its "Open in Colab" link.', ", or upload it to Colab (below)."),
                                 ('Click a notebook\'s "Open in Colab" link',
                                  "Upload a notebook (File > Upload notebook)")):
            assert linked in text, f"the students' README no longer says {linked!r}"
            text = text.replace(linked, uploaded)
    return text.replace("{{notebooks}}", "\n".join(rows))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "release")
    parser.add_argument("--repository", default=os.environ.get("STUDENT_REPO") or None,
                        help="the students' repository URL, for the Colab cells and links (required)")
    args = parser.parse_args(argv)
    out = build(args.out, check_repository(args.repository))
    count = len(list((out / "notebooks").glob("*.ipynb")))
    print(f"wrote {out}: {count} exercise notebooks, helpers, answers (stubs), "
          "tests, README.md")
    print("push it as the students' repository: cd release && " + ("git add . && git commit -m Homework && git push"
          if (out / ".git").is_dir() else "git init -b main && git add . && git commit -m Homework"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
