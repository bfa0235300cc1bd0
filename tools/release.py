"""`make student`: build the students' repository, release/, from the solution notebooks (docs/instructors.md).

The solution notebooks are the single source. nbgrader's own preprocessors make the exercise notebooks:
ClearSolutions (with enforce_metadata=False, so cells need no nbgrader metadata) replaces every region between
`### BEGIN SOLUTION` and `### END SOLUTION` with a stub, ClearHiddenTests drops `### BEGIN HIDDEN TESTS` regions, and
ClearOutput removes every output and execution count. The one extension, NamedStubs, only chooses the stub's text:
a code region's stub raises NotImplementedError naming the function to implement; a written answer (a region that
renders Markdown(...)) becomes a Markdown "YOUR ANSWER HERE" that does not stop the notebook; both keep the markers
around them, which is where students write and where `make answers` finds their code. Markdown cells with the
markers get nbgrader's text stub. helpers/*.py files holding markers go through the same preprocessor; answers/*.py is
then exported from the stripped notebooks by the project's own exporter, so it holds stubs too.

    python tools/release.py [--out release] [--repository https://github.com/<course>/<repo>]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from nbconvert.exporters import NotebookExporter
from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions
from traitlets.config import Config

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "tools" / "release-README.md"
PLACEHOLDER = "__DGM_RELEASE_STUB__"
MENTION = "__DGM_MARKER_MENTION__"

# What students get. Everything else (results/, checkpoints/, grading/, docs/, .quick/, site/, grades/) stays out.
TOP_FILES = ["Makefile", "pyproject.toml", "requirements.txt", "environment.yml", "LICENSE", "QUESTIONS.md",
             ".gitignore", "data/README.md", ".ci/run", "bench/__init__.py", "bench/throughput.py",
             "answers/__init__.py", "answers/export.py"]
PACKAGES = ["helpers"]
INSTRUCTOR_TOOLS = {"release.py", "release-README.md", "grade.py", "grade.mk", "html_pages.py", "instructor.mk",
                    "mutate.sh"}
INSTRUCTOR_TESTS = {"test_answers.py", "test_questions.py", "test_committed_models.py", "test_course_edition.py",
                    "test_repo.py"}
# a test that reads the reference outputs, the committed models or the answers' code checks what students write
INSTRUCTOR_TEST_PATTERN = re.compile(r"^\s*(from|import) answers\b|ROOT / \"(results|checkpoints)\"", re.M)


def region_descriptions(source: str, begin: str, end: str) -> list:
    """For each solution region of a code cell, in order: ('function', 'Class.method'), ('prose', '') for a written
    answer rendered with Markdown(...), or ('code', '') for top-level answer code."""
    lines = source.split("\n")
    regions, start = [], None
    for i, line in enumerate(lines):
        if begin in line:
            start = i
        elif end in line and start is not None:
            regions.append((start, i))
            start = None
    described = []
    for first, last in regions:
        indent = len(lines[first]) - len(lines[first].lstrip())
        body = "\n".join(lines[first + 1:last])
        name, limit = [], indent
        for line in reversed(lines[:first]):
            stripped = line.lstrip()
            depth = len(line) - len(stripped)
            match = re.match(r"(?:async\s+)?(def|class)\s+(\w+)", stripped)
            if match and depth < limit and stripped:
                name.insert(0, match.group(2))
                limit = depth
                if depth == 0:
                    break
        if name:
            described.append(("function", ".".join(name)))
        elif "Markdown(" in body:
            described.append(("prose", ""))
        else:
            described.append(("code", ""))
    return described


def stub_lines(kind: str, name: str, notebook: str) -> list:
    """The stub of one region. It keeps the markers around it: students write their answer between them, and the
    project's exporter (`make answers`, and the grader for notebooks that import earlier answers) finds it there."""
    where = f" (notebook {notebook})" if notebook else ""
    if kind == "function":
        body = ["# YOUR CODE HERE",
                f'raise NotImplementedError("implement {name}{where}: replace this line with your code")']
    elif kind == "prose":
        body = ["# YOUR ANSWER HERE: replace the text below with your written answer (Markdown and LaTeX)",
                "from IPython.display import Markdown", 'Markdown("**YOUR ANSWER HERE**")']
    else:
        body = ["# YOUR CODE HERE", f'raise NotImplementedError("write the answer code of this cell{where}")']
    return ["### BEGIN SOLUTION", *body, "### END SOLUTION"]


class NamedStubs(ClearSolutions):
    """nbgrader's ClearSolutions; only the stub's text differs per region (see the module's docstring)."""

    def preprocess(self, nb, resources):
        self._notebook = resources.get("metadata", {}).get("name", "")
        return super().preprocess(nb, resources)

    def _replace_solution_region(self, cell, language):
        # a line naming both markers (prose about the convention) is text, not a region: hide it from the scan
        mentions = [line for line in cell.source.split("\n")
                    if self.begin_solution_delimeter in line and self.end_solution_delimeter in line]
        for i, line in enumerate(mentions):
            cell.source = cell.source.replace(line, f"{MENTION}{i}", 1)
        try:
            return self._replace_regions(cell, language)
        finally:
            for i, line in enumerate(mentions):
                cell.source = cell.source.replace(f"{MENTION}{i}", line, 1)

    def _replace_regions(self, cell, language):
        if cell.cell_type != "code" or self.begin_solution_delimeter not in cell.source:
            return super()._replace_solution_region(cell, language)
        regions = region_descriptions(cell.source, self.begin_solution_delimeter, self.end_solution_delimeter)
        saved = self.code_stub
        self.code_stub = {**saved, language: PLACEHOLDER}
        try:
            replaced = super()._replace_solution_region(cell, language)
        finally:
            self.code_stub = saved
        lines = []
        for line in cell.source.split("\n"):
            if line.strip() == PLACEHOLDER:
                kind, name = regions.pop(0)
                indent = line[:len(line) - len(line.lstrip())]
                lines += [indent + stub for stub in stub_lines(kind, name, getattr(self, "_notebook", ""))]
            else:
                lines.append(line)
        cell.source = "\n".join(lines)
        return replaced


def exporter() -> NotebookExporter:
    config = Config()
    config.NamedStubs.enforce_metadata = False          # our cells carry markers, not nbgrader cell metadata
    config.ClearOutput.remove_metadata_fields = {"collapsed", "scrolled", "execution", "ExecuteTime"}
    exporter = NotebookExporter(config=config)
    for preprocessor in (ClearHiddenTests, NamedStubs, ClearOutput):
        exporter.register_preprocessor(preprocessor(config=config), enabled=True)
    return exporter


def strip_notebook(source: Path, target: Path, notebook_exporter: NotebookExporter) -> None:
    try:
        body, _ = notebook_exporter.from_filename(str(source), resources={"metadata": {"name": source.stem}})
    except RuntimeError as error:   # nbgrader: nested or unterminated regions
        raise SystemExit(f"{source.relative_to(ROOT)}: {error}. Put `### BEGIN SOLUTION` and `### END SOLUTION` on "
                         "lines of their own around each answer (a line that names a marker counts as one).") from None
    nb = nbformat.reads(body, as_version=4)
    nb.metadata.pop("widgets", None)
    target.write_text(nbformat.writes(nb) + "\n")


def strip_python(source: Path, target: Path, notebook_exporter: NotebookExporter) -> None:
    """A .py file with solution regions, through the same preprocessors as one code cell."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source.read_text())])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    stripped, _ = notebook_exporter.from_notebook_node(nb, resources={"metadata": {"name": ""}})
    text = nbformat.reads(stripped, as_version=4).cells[0].source
    target.write_text(text if text.endswith("\n") else text + "\n")


def question_ids() -> dict:
    """notebook stem -> its question ids, in QUESTIONS.md's order."""
    ids = {}
    for qid, notebook in re.findall(r"^\| (\w[\w-]*) \| .+ \| (\d\d_\w+) \|$", (ROOT / "QUESTIONS.md").read_text(),
                                    re.M):
        ids.setdefault(notebook, [])
        if qid not in ids[notebook]:
            ids[notebook].append(qid)
    return ids


def notebook_title(path: Path) -> str:
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


def student_readme(release: Path) -> str:
    ids = question_ids()
    colab_link = None
    sys.path.insert(0, str(release / "tools"))
    try:
        import colab  # the release's own tools/colab.py, when the collection has one

        url = colab.repository_url()
        colab_link = lambda name: colab.colab_link(url, name)  # noqa: E731
    except Exception:
        pass
    finally:
        sys.path.pop(0)
    rows = ["| Notebook | Questions | |", "|---|---|---|"]
    for path in sorted((release / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        link = f"[Open in Colab]({colab_link(path.name)})" if colab_link else ""
        rows.append(f"| [`{path.stem}`](notebooks/{path.name}) {notebook_title(path)} | "
                    f"{', '.join(ids.get(path.stem, [])) or '(setup)'} | {link} |")
    return TEMPLATE.read_text().replace("{{notebooks}}", "\n".join(rows))


def copy_tree(source: Path, target: Path, keep) -> None:
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if "__pycache__" in relative.parts or any(p.startswith(".") for p in relative.parts) or not keep(path):
            continue
        if path.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / relative)


def instructor_test(path: Path) -> bool:
    return path.name in INSTRUCTOR_TESTS or bool(INSTRUCTOR_TEST_PATTERN.search(path.read_text()))


def run(command: list, cwd: Path) -> None:
    result = subprocess.run(command, cwd=cwd, env={**os.environ, "PYTHONPATH": str(cwd)}, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed in the release:\n{result.stdout}{result.stderr}")


def build(out: Path, repository: str | None = None) -> Path:
    """Write the release into `out` (replaced as a whole, never half-built); returns it."""
    out = out.resolve()
    if out == ROOT or out in ROOT.parents or (out / "grading").exists() or (out / "results").exists():
        raise SystemExit(f"refusing to replace {out}: it is not a student release (default: release/)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        for name in TOP_FILES:
            if (ROOT / name).is_file():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, staging / name)
        notebook_exporter = exporter()
        for package in PACKAGES:
            copy_tree(ROOT / package, staging / package, lambda p: p.suffix == ".py")
            for path in (staging / package).rglob("*.py"):
                if "BEGIN SOLUTION" in path.read_text():
                    strip_python(path, path, notebook_exporter)
        copy_tree(ROOT / "tools", staging / "tools", lambda p: p.name not in INSTRUCTOR_TOOLS)
        copy_tree(ROOT / "tests", staging / "tests",
                  lambda p: not (p.suffix == ".py" and p.name.startswith("test_") and instructor_test(p)))
        (staging / "notebooks").mkdir()
        for source in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
            strip_notebook(source, staging / "notebooks" / source.name, notebook_exporter)
        if repository:
            pyproject = staging / "pyproject.toml"
            pyproject.write_text(re.sub(r'(?m)^Repository = ".*"$', f'Repository = "{repository}"',
                                        pyproject.read_text()))
        # the release's answers/*.py: exported from the stripped notebooks by the project's exporter (stubs too)
        run([sys.executable, "-m", "answers.export"], staging)
        (staging / "README.md").write_text(student_readme(staging))
        if (staging / "tools" / "colab.py").exists():   # Colab cells and links point at the students' repository
            run([sys.executable, "tools/colab.py"], staging)
        if (out / ".git").is_dir():                   # the instructor's git repository of the release is kept
            os.replace(out / ".git", staging / ".git")
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "release")
    parser.add_argument("--repository", default=os.environ.get("STUDENT_REPO") or None,
                        help="the students' repository URL, for the notebooks' Colab cells (default: pyproject's)")
    args = parser.parse_args(argv)
    out = build(args.out, args.repository)
    notebooks = sorted(p.name for p in (out / "notebooks").glob("*.ipynb"))
    print(f"wrote {out}: {len(notebooks)} exercise notebooks, helpers, answers (stubs), tests, README.md")
    print("push it as the students' repository: cd release && git init && git add . && git commit -m 'Homework'")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
