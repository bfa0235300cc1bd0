"""What the grader writes for people: the gradebook, the feedback, the TA pages and the TAs' sheet, and the round
trip of manual points (TAs fill grades/manual-points.csv, `make gradebook` merges it, a regrade keeps it)."""
import csv
import json

import pytest

from instructor import course_model
from instructor.grader import __main__ as cli
from instructor.grader import jobs, report
from tools import nbcells


def verdict(question, notebook, test, points, earned, message=""):
    return {"question": question, "notebook": notebook, "test": test, "description": f"{test} on fresh inputs",
            "points": points, "earned": earned, "message": message, "detail": "0.12 at index (3,), got 0.5"}


def result(student, written):
    return {"student": student, "slug": student, "notebook": "03_kl_divergence", "status": "ok", "status_message": "",
            "errors": [], "problems": [], "seconds": 3.0, "figures": {}, "written": written, "measured": {},
            "verdicts": [verdict("A3", "03_kl_divergence", "GaussianKL", 3, 3 if student == "ada" else 0,
                                 "" if student == "ada" else "KL: wrong for 200 of 200 fresh inputs")]}


@pytest.fixture
def graded(tmp_path):
    results = {"ada/03": result("ada", {"A3_derivation": "By Jensen, $\\log$ ... <script>alert(1)</script>"}),
               "bo/03": result("bo", {"A3_derivation": ""})}
    details = {"results": results}
    (tmp_path / "details.json").write_text(json.dumps(details))
    report.write_reports(tmp_path, results, course_model.load().ta_parts(), False, details)
    return tmp_path, results


def sheet(grades):
    with open(grades / "manual-points.csv", newline="") as f:
        return list(csv.DictReader(f))


def book(grades):
    with open(grades / "gradebook.csv", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def test_every_written_part_gets_a_page_with_every_answer_escaped_and_a_row_per_student(graded):
    grades, _ = graded
    page = (grades / "manual" / "03_kl_divergence" / "A3_derivation.html").read_text()
    assert "By Jensen" in page and "<script>alert" not in page and "&lt;script&gt;" in page
    assert page.index(">ada</h2>") < page.index(">bo</h2>") and "no answer" in page
    rows = {(r["student"], r["part"]): r for r in sheet(grades)}
    assert rows[("ada", "A3_derivation")]["points"] == "" and rows[("bo", "A3_derivation")]["max_points"] == "2"


PNG_1x1 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def test_a_ta_page_renders_markdown_runs_nothing_and_labels_each_figure(tmp_path):
    text = ("The **second** term, $x_1$.\n\n<img src=x onerror=alert(1)> [link](javascript:alert(2)) "
            "<a href='https://example.org' onclick='steal()'>ok</a>")
    answer = result("ada", {"A3_derivation": text})
    answer["figures"] = {"A3_derivation": [PNG_1x1, "bm90IGEgcG5n"]}           # the second is not a PNG
    answer["handed_in_figures"] = {"A3_derivation": [PNG_1x1]}
    results = {"ada/03": answer}
    parts = course_model.load().ta_parts()
    report.write_reports(tmp_path, results, parts, False, {"results": results, "mode": "quick"})
    page = (tmp_path / "manual" / "03_kl_divergence" / "A3_derivation.html").read_text()
    assert "<strong>second</strong>" in page and "$x_1$" in page and "**second**" not in page
    assert "<img src=x" not in page and "onerror" not in page.replace("&lt;img src=x onerror", "")
    assert "javascript:" not in page.replace("[link](javascript", "") and "onclick" not in page
    assert '<a href="https://example.org">ok</a>' in page
    assert page.count("as handed in (the student's own run)") == 1
    assert page.count("the grader's rerun (quick settings)") == 1                # the non-PNG is not shown


def test_manual_points_reach_the_gradebook_and_survive_a_regrade(graded, capsys):
    grades, results = graded
    assert book(grades)["ada"]["A3"] == "3"
    rows = sheet(grades)
    for row in rows:
        if row["part"] == "A3_derivation":
            row["points"], row["comment"] = ("2", "clear") if row["student"] == "ada" else ("0.5", "only the result")
    with open(grades / "manual-points.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, report.SHEET_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    assert cli.main(["gradebook", "--grades", str(grades)]) == 0
    assert book(grades)["ada"]["A3"] == "5" and book(grades)["bo"]["A3"] == "0.5"
    assert "| A3 | a TA reads your `A3_derivation` | 2 / 2 | clear |" in (grades / "feedback" / "ada.md").read_text()
    report.write_reports(grades, results, course_model.load().ta_parts(), False, {"results": results})     # a regrade
    assert book(grades)["ada"]["A3"] == "5"


def test_points_that_are_not_a_number_in_range_are_named_and_not_counted(graded, capsys):
    grades, _ = graded
    rows = sheet(grades)
    for row in rows:
        if row["part"] == "A3_derivation":
            row["points"] = "two" if row["student"] == "ada" else "9"
    with open(grades / "manual-points.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, report.SHEET_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    assert cli.main(["gradebook", "--grades", str(grades)]) == 1
    err = capsys.readouterr().err
    assert "student 'ada', 03_kl_divergence part A3_derivation: points 'two' is not a number" in err
    assert "student 'bo', 03_kl_divergence part A3_derivation: points 9 is outside 0..2" in err
    assert book(grades)["ada"]["A3"] == "3" and book(grades)["bo"]["A3"] == "0"


def test_the_expected_values_show_only_when_the_instructor_asks(graded):
    grades, results = graded
    assert "0.12 at index" not in (grades / "feedback" / "bo.md").read_text()
    report.write_reports(grades, results, course_model.load().ta_parts(), True, {"results": results})
    assert "(expected 0.12 at index (3,), got 0.5)" in (grades / "feedback" / "bo.md").read_text()


def test_the_gradebook_has_a_column_per_question_and_notebook_and_its_maximum(graded):
    grades, _ = graded
    header = next(csv.reader(open(grades / "gradebook.csv")))
    assert header[0] == "student" and header[-1] == "total" and "A2@02" in header and "A2@04" in header
    assert book(grades)["maximum/"]["A3"] == "5"           # 3 hidden-test points and the TA's 2


def test_every_file_written_is_readable_by_the_group_as_the_umask_allows(tmp_path):
    import os

    results = {"ada/03": result("ada", {})}
    old = os.umask(0o027)
    try:
        report.write_reports(tmp_path, results, course_model.load().ta_parts(), False, {"results": results})
    finally:
        os.umask(old)
    written = [p for p in tmp_path.rglob("*") if p.is_file() and "mathjax" not in p.parts]
    assert written and all(p.stat().st_mode & 0o777 == 0o640 for p in written), \
        {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in written}


def test_each_student_gets_their_own_notebook_back_with_points_and_comments_at_each_question(graded):
    import zipfile

    import nbformat

    grades, results = graded
    nb = nbformat.read(jobs.ROOT / "notebooks" / "03_kl_divergence.ipynb", as_version=4)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell("mine <script>alert('x')</script>"))
    (grades / "submitted" / "bo").mkdir(parents=True)
    nbformat.write(nb, grades / "submitted" / "bo" / "03_kl_divergence.ipynb")
    rows = sheet(grades)
    for row in rows:
        if row["student"] == "bo" and row["part"] == "A3_derivation":
            row.update(points="1", comment="the second term's sign")
    with open(grades / "manual-points.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, report.SHEET_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    assert cli.main(["gradebook", "--grades", str(grades)]) == 0
    page = (grades / "handback" / "bo" / "03_kl_divergence.html").read_text()
    from instructor.grader import handback

    cells = handback.annotated(nb, {"A3": ["x"], "Z9": ["y"]}).cells
    boxes = [i for i, c in enumerate(cells) if c.metadata.get("dgm_feedback")]
    a3 = [i for i, c in enumerate(cells) if nbcells.grading(c).get("grade_id", "").startswith("A3_")]
    assert boxes[0] == a3[-1] + 1 and cells[boxes[1]].metadata["dgm_feedback"] == "Z9" and boxes[1] == len(cells) - 1
    assert "Feedback on question A3" in page
    assert "GaussianKL on fresh inputs: <strong>0 / 3</strong> - KL: wrong for 200 of 200 fresh inputs" in page
    assert "<strong>1 / 2</strong> - the second term" in page
    assert "<script>alert('x')</script>" not in page and "mine" in page
    with zipfile.ZipFile(grades / "handback-zips" / "bo.zip") as bundle:
        assert sorted(bundle.namelist()) == ["bo/03_kl_divergence.html", "bo/index.html"]
    assert "Feedback for bo" in (grades / "handback" / "bo" / "index.html").read_text()
    assert not (grades / "handback" / "ada" / "03_kl_divergence.html").exists()     # ada handed nothing in here

    (grades / "submitted" / "bo" / "03_kl_divergence.ipynb").unlink()          # regraded without it: its page goes
    assert cli.main(["gradebook", "--grades", str(grades)]) == 0
    assert not (grades / "handback" / "bo" / "03_kl_divergence.html").exists()
    with zipfile.ZipFile(grades / "handback-zips" / "bo.zip") as bundle:
        assert bundle.namelist() == ["bo/index.html"]


def test_the_feedback_keeps_bars_as_written():
    answer = result("bo", {})
    answer["verdicts"][0]["message"] = "KL(p || q) is not symmetric"
    text = report.feedback_text("bo", [answer], {}, {}, False)
    assert "KL(p \\|\\| q) is not symmetric" in text and "KL(p // q)" not in text
    from instructor.grader import pages

    assert "KL(p || q) is not symmetric" in pages.safe_markdown(text)


def test_a_hand_back_page_renders_markdown_and_math_and_runs_nothing(graded):
    import nbformat

    grades, _ = graded
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A3\n\n### BEGIN SOLUTION\nThe **KL** is $\\\\log \\\\sigma$.\n\n"
                                      "| a | b |\n|---|---|\n| 1 | 2 |\n\n"
                                      "<script>alert('x')</script> [l](javascript:alert(1)) "
                                      "<img src=x onerror=alert(2)>"),
        nbformat.v4.new_code_cell("1", metadata={"nbgrader": {"grade_id": "A3_gaussian_kl", "solution": True}})])
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data={"text/html": "<script>alert(3)</script>",
                                                                         "text/plain": "x"})]
    (grades / "submitted" / "bo").mkdir(parents=True)
    nbformat.write(nb, grades / "submitted" / "bo" / "03_kl_divergence.ipynb")
    assert cli.main(["gradebook", "--grades", str(grades)]) == 0
    page = (grades / "handback" / "bo" / "03_kl_divergence.html").read_text()
    body = page[page.index("<body"):]
    assert '<h1 id="A3">' in body and "<strong>KL</strong>" in body and "<thead>" in body and "&lt;p&gt;" not in body
    assert "sigma$" in body and 'src="../../mathjax/MathJax.js' in page and "onerror" in page.split("<body")[0]
    import re

    assert "<script>alert" not in body and 'href="javascript' not in body and not re.search(r"<img[^>]*onerror", body)
    assert "<strong>0 / 3</strong>" in body                                 # the feedback box, rendered too
    assert "SOLUTION" not in body                                          # a written answer's markers are not shown


def test_a_hand_back_page_reads_no_file_a_students_markdown_names_and_loads_no_widget(graded, monkeypatch):
    import nbformat

    grades, _ = graded
    secret = grades / "gradebook.csv"                   # the class's grades, beside the pages
    monkeypatch.chdir(grades)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        f"![k](gradebook.csv)\n\n<img src=\"{secret}\">\n\n![m](manual-points.csv)"), nbformat.v4.new_code_cell("1")])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {"m": {
        "model_name": "HTMLModel", "model_module": "@jupyter-widgets/controls",
        "state": {"value": "<img src=x onerror=alert(1)>"}}}, "version_major": 2, "version_minor": 0}}
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "m", "version_major": 2, "version_minor": 0},
        "text/plain": "HTML(value='...')"})]
    (grades / "submitted" / "bo").mkdir(parents=True)
    nbformat.write(nb, grades / "submitted" / "bo" / "03_kl_divergence.ipynb")
    assert cli.main(["gradebook", "--grades", str(grades)]) == 0
    page = (grades / "handback" / "bo" / "03_kl_divergence.html").read_text()
    import base64

    encoded = base64.b64encode(secret.read_bytes()[:30]).decode()[:24]
    assert encoded not in page and "widget-state" not in page and "html-manager" not in page


def test_students_whose_names_would_share_a_file_keep_their_own(tmp_path):
    from instructor.grader import plan

    taken = set()
    assert [plan.slug_for(n, taken) for n in ("Alice", "alice", "x", "x.zip")] == ["Alice", "alice-2", "x", "x.zip"]
    results = {name: {**result(name, {}), "slug": slug} for name, slug in (("x", "x"), ("x.zip", "x.zip"))}
    for name in results:
        (tmp_path / "submitted" / results[name]["slug"]).mkdir(parents=True)
    report.write_reports(tmp_path, results, course_model.load().ta_parts(), False, {"results": results})
    assert (tmp_path / "handback-zips" / "x.zip").is_file() and (tmp_path / "handback-zips" / "x.zip.zip").is_file()


def test_names_that_start_with_a_quote_or_hold_a_separator_stay_their_own_cells():
    assert report.uncell(report.cell("'=dup")) == "'=dup" and report.uncell(report.cell("=dup")) == "=dup"
    assert report.cell("'=dup") != report.cell("=dup")
    text = report.gradebook_text({"x;=1+1;": {"TA parts to grade": 0, "before late": 1.0, "late deduction": 0.0,
                                             "total": 1.0, "problems": []}}, {})
    assert '"x;=1+1;"' in text


def test_a_page_drawn_by_another_grader_is_drawn_again(tmp_path, monkeypatch):
    import nbformat

    from instructor.grader import handback

    source, target = tmp_path / "03_kl_divergence.ipynb", tmp_path / "page.html"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A3")]), source)
    handback.render_page(source, {"A3": ["x"]}, target)
    target.write_text("drawn by an older grader")
    handback.render_page(source, {"A3": ["x"]}, target)
    assert target.read_text() == "drawn by an older grader"           # the same grader keeps what it drew
    monkeypatch.setattr(handback, "renderer", lambda: b"another grader")
    handback.render_page(source, {"A3": ["x"]}, target)
    assert "Feedback on question A3" in target.read_text()


def test_a_class_s_pages_drawn_by_a_pool_of_processes_are_the_pages_drawn_one_by_one(tmp_path, monkeypatch):
    import nbformat

    from instructor.grader import handback

    pages = {}
    for k in range(handback.POOL_FROM):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# A3 of student {k}")])
        for way in ("one_by_one", "pool"):
            source = tmp_path / way / "submitted" / f"s{k}" / "03_kl_divergence.ipynb"
            source.parent.mkdir(parents=True)
            nbformat.write(nb, source)
            pages.setdefault(way, []).append((source, {"A3": [f"x{k}"]}, tmp_path / way / f"s{k}.html"))
    handback.render_pages(pages["one_by_one"], workers=1)
    handback.render_pages(pages["pool"], workers=2)
    for (_, _, alone), (_, _, pooled) in zip(pages["one_by_one"], pages["pool"]):
        assert pooled.read_text() == alone.read_text() and "Feedback on question A3" in pooled.read_text()
    drawn = []
    monkeypatch.setattr(handback, "render_page", lambda *page: drawn.append(page))
    handback.render_pages(pages["pool"], workers=2)
    assert drawn == [], "a page up to date is drawn again"


def test_a_notebook_nbconvert_fails_on_gets_a_page_of_its_feedback_and_the_class_goes_on(tmp_path, monkeypatch,
                                                                                         capsys):
    import nbformat

    from instructor.grader import handback

    pages = []
    for name in ("odd", "plain"):
        source = tmp_path / name / "03_kl_divergence.ipynb"
        source.parent.mkdir()
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {name}")]), source)
        pages.append((source, {"A3": [f"<b>{name}</b>: 1 / 4"]}, tmp_path / name / "page.html"))
    drawn = handback.exporter().from_notebook_node

    class Failing:
        def from_notebook_node(self, nb, **kwargs):
            if "odd" in nb.cells[0].source:
                raise ValueError("nbconvert choked")
            return drawn(nb, **kwargs)

    monkeypatch.setattr(handback, "exporter", Failing)
    handback.render_pages(pages, workers=1)
    odd, plain = (target.read_text() for _, _, target in pages)
    assert "could not be drawn" in odd and "&lt;b&gt;odd&lt;/b&gt;: 1 / 4" in odd and "<b>odd</b>" not in odd
    assert "Feedback on question A3" in plain
    assert "odd/03_kl_divergence.ipynb not drawn (ValueError: nbconvert choked)" in capsys.readouterr().err
    assert not handback.up_to_date(*pages[0]), "a page that failed is kept as if drawn"


def test_a_process_cleans_each_piece_of_a_page_once_and_keeps_no_long_piece():
    from instructor.grader import pages

    piece = '<div class="highlight"><pre><span class="k">import</span> torch<script>alert(1)</script></pre></div>'
    hits = pages.cleaned_once.cache_info().hits
    first, again = pages.clean_rendered(piece), pages.clean_rendered(piece.encode())
    assert first == again == pages.cleaned(piece) and "<script>" not in first
    assert pages.cleaned_once.cache_info().hits == hits + 1
    long_piece = "<p>" + "x" * pages.REMEMBERED_CHARS + "</p>"
    kept = pages.cleaned_once.cache_info().currsize
    assert pages.clean_rendered(long_piece) == pages.cleaned(long_piece)
    assert pages.cleaned_once.cache_info().currsize == kept
    # a piece that cleans to nothing is counted by its source: remembered pieces are bounded whatever they clean to
    vanishing = "<!--" + "x" * 19_000 + "-->"
    assert pages.clean_rendered(vanishing) == ""
    assert pages.cleaned_once.cache_info().currsize >= kept + len(vanishing)
