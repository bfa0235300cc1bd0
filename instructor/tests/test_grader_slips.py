"""Honest slips cost their own question: a cell that does not parse, an error at import, a notebook missing or
broken that another builds on. Shown on the jobs the grader builds (a job's result is a function of its data) and on
the probes' import, without running notebooks; the hostile class grades the same slips end to end."""
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import nbformat

from instructor.grader import jobs, plan, rebuild
from tools import nbcells

ROOT = Path(__file__).resolve().parents[2]


def solution(stem: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)


def student(name: str, notebooks: dict) -> plan.Student:
    return plan.Student(name, name, Path("."), notebooks=notebooks)


def broken(stem: str, grade_id: str) -> nbformat.NotebookNode:
    nb = solution(stem)
    cell = next(c for c in nb.cells if nbcells.grading(c).get("grade_id") == grade_id)
    cell.source = cell.source.replace("### END SOLUTION", "    return (\n    ### END SOLUTION", 1)
    return nb


def test_a_cell_that_does_not_parse_becomes_its_own_error_and_the_others_export_as_written(tmp_path):
    result = rebuild.rebuild(jobs.released("03_kl_divergence"), broken("03_kl_divergence", "C3e_functions"))
    assert any("C3e_functions does not parse" in p for p in result.problems)
    module = jobs.exported_answers({"03_kl_divergence": result.notebook})["kl_divergence"]
    namespace = {}
    exec(compile(module, "kl_divergence.py", "exec"), namespace)         # the module imports
    import torch

    one = torch.tensor(1.0)
    assert abs(float(namespace["kl_equal_variance"](one, 0 * one, one)) - 0.5) < 1e-6     # another answer, intact
    try:
        namespace["kl_segments"](0.0, 1.0)
        raise AssertionError("the broken cell's function ran")
    except SyntaxError as error:
        assert "C3e_functions does not parse" in str(error)


def test_an_answer_too_long_to_parse_safely_costs_its_cell_only():
    nb = solution("03_kl_divergence")
    cell = next(c for c in nb.cells if nbcells.grading(c).get("grade_id") == "A3_pairs")
    cell.source = cell.source.replace("### END SOLUTION", "junk = [" + "1," * 200_000 + "]\n### END SOLUTION")
    result = rebuild.rebuild(jobs.released("03_kl_divergence"), nb)
    assert any("A3_pairs is 400,0" in p and "over the 100,000 allowed" in p for p in result.problems)
    assert "junk" not in next(c for c in result.notebook.cells
                              if nbcells.grading(c).get("grade_id") == "A3_pairs").source


def test_a_notebook_gets_the_same_job_whether_those_it_builds_on_are_right_wrong_broken_or_missing():
    """04 imports 02's and 03's answers: it runs with the reference ones, so its job (and so its grade) is the same."""
    vae = solution("04_vae")
    alone = jobs.jobs_for(student("s", {"04_vae": vae}))
    slips = {"03_kl_divergence": broken("03_kl_divergence", "N_kl_functions"),
             "02_latent_variable_models": jobs.released("02_latent_variable_models")}
    with_slips = jobs.jobs_for(student("s", {"04_vae": vae, **slips}))
    job = next(j for j in with_slips if j.notebook == "04_vae")
    assert (job.rebuilt, job.answers) == (alone[0].rebuilt, alone[0].answers)
    for module in ("kl_divergence", "latent_variable_models"):
        assert job.answers[module] == (ROOT / "answers" / f"{module}.py").read_text()
    three = next(j for j in with_slips if j.notebook == "03_kl_divergence")
    assert set(three.answers) == {"kl_divergence"}                       # 03 imports no other notebook's answers


def test_the_probes_import_an_answer_module_statement_by_statement(tmp_path):
    (tmp_path / "answers").mkdir()
    (tmp_path / "answers" / "__init__.py").write_text("")
    (tmp_path / "answers" / "demo.py").write_text("scale = 1 / 0\n\n\ndef twice(x):\n    return 2 * x\n")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        sys.path.insert(0, {str(ROOT / 'instructor' / 'grader')!r})
        import probes
        module = probes.statement_by_statement("answers.demo")
        print(module.twice(21), hasattr(module, "scale"))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["42", "False"], done.stderr


def test_a_notebook_near_the_size_limit_costs_the_graders_process_little_and_renders_in_seconds(tmp_path):
    """Reading, rebuilding, exporting and handing back an 18 MB notebook whose answer is one 18 MB line: measured as
    the peak memory of a process doing what the grader does, against the same for the solution notebook."""
    script = textwrap.dedent("""
        import resource, sys, time
        from pathlib import Path
        from instructor import course_model
        from instructor.grader import handback, jobs, plan, run
        started = time.monotonic()
        students, _ = plan.read_class(Path(sys.argv[1]), course_model.load().graded_notebooks())
        for job in jobs.jobs_for(students[0]):
            run.figures(students[0].notebooks[job.notebook])
        handback.render_page(next(Path(sys.argv[1]).glob("*/*.ipynb")), {"A3": ["x"]}, Path(sys.argv[2]))
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, time.monotonic() - started)
    """)
    peaks = {}
    for name, junk in (("ordinary", 0), ("huge", 3_700_000)):
        nb = solution("03_kl_divergence")
        cell = next(c for c in nb.cells if nbcells.grading(c).get("grade_id") == "A3_pairs")
        cell.source = cell.source.replace("### END SOLUTION", "junk = [" + "(1,)," * junk + "]\n### END SOLUTION")
        (tmp_path / name / "subs" / "s").mkdir(parents=True)
        nbformat.write(nb, tmp_path / name / "subs" / "s" / "03_kl_divergence.ipynb")
        done = subprocess.run([sys.executable, "-c", script, str(tmp_path / name / "subs"),
                               str(tmp_path / name / "page.html")], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        peaks[name] = [float(v) for v in done.stdout.split()]
    assert (tmp_path / "huge" / "subs" / "s" / "03_kl_divergence.ipynb").stat().st_size > 17 * 2**20
    assert peaks["huge"][0] - peaks["ordinary"][0] < 500 * 2**20, peaks
    assert peaks["huge"][1] < 60, peaks


def test_a_duplicated_answer_cell_is_named_and_the_first_copy_graded():
    nb = solution("05_gan_theory")
    index, cell = next((i, c) for i, c in enumerate(nb.cells)
                       if nbcells.grading(c).get("grade_id") == "C3c_optimal_discriminator")
    copy = nbformat.from_dict(dict(cell))
    copy["id"] = "pasted-copy"
    nb.cells.insert(index + 1, copy)
    result = rebuild.rebuild(jobs.released("05_gan_theory"), nb)
    words = "C3c_optimal_discriminator appears 2 times: the first was graded"
    assert any(words in problem for problem in result.problems), result.problems


def test_a_number_of_a_float_subclass_is_handed_back_as_the_number_it_holds():
    import numpy as np
    import torch

    from instructor.grader import probes, score

    result = probes.run_test(types.SimpleNamespace(f=lambda: np.float64(0.25)),
                             {"name": "t", "source": "def probe(answers, inputs):\n    return {'v': answers.f()}",
                              "inputs": {}})
    value = torch.load(score._roundtrip(result), weights_only=True)["outputs"]["v"]
    assert value == 0.25 and type(value) is float


def test_what_one_answer_switches_off_in_torch_is_back_on_for_the_next_test():
    import torch

    from instructor.grader import probes

    def switches_off():
        torch.set_grad_enabled(False)
        torch.set_default_dtype(torch.float64)

    module = types.SimpleNamespace(switch=switches_off, needs=lambda: torch.ones(2, requires_grad=True).sum() * 2)
    probe = "def probe(answers, inputs):\n    return {'v': answers.%s()}"
    try:
        probes.run_test(module, {"name": "a", "source": probe % "switch", "inputs": {}})
        assert not torch.is_grad_enabled()                  # the state the first answer left behind
        result = probes.run_test(module, {"name": "b", "source": probe % "needs", "inputs": {}})
        assert result["outputs"]["v"].dtype == torch.float32 and torch.is_grad_enabled()
    finally:
        torch.set_grad_enabled(True)
        torch.set_default_dtype(torch.float32)


def test_an_answer_that_uses_a_name_only_a_given_cell_imports_is_told_so():
    nb = solution("03_kl_divergence")
    cell = next(c for c in nb.cells if nbcells.grading(c).get("grade_id") == "C1h_kl_equal_variance")
    cell.source = cell.source.replace("### BEGIN SOLUTION\n", "### BEGIN SOLUTION\n    np.asarray(s)\n", 1)
    job = next(j for j in jobs.jobs_for(student("forgot_import", {"03_kl_divergence": nb})))
    assert any("your answers use `np`, which no answer cell defines or imports" in p for p in job.problems), \
        job.problems
    honest = next(j for j in jobs.jobs_for(student("honest", {"03_kl_divergence": solution("03_kl_divergence")})))
    assert not any("no answer cell defines or imports" in p for p in honest.problems)
