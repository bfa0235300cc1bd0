"""The grader's defences that need no notebook run: what a job leaves in its folder is read as bounded data and only
through no link; one student's odd files never stop the class; reports cannot be turned into formulas or broken by odd
text; a hung or swapped probe folder never keeps a sandbox alive; cache keys never collide."""
import ast
import os
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest
import torch

from instructor import course_model
from instructor.grader import bank, jobs, launch, plan, probing, rebuild, report, run, sandbox, score

ROOT = Path(__file__).resolve().parents[2]

TEST = next(t for t in bank.tests("03_kl_divergence") if t.name == "GaussianKL")


def save(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(value, path)
    return path


def test_a_result_is_read_only_from_the_jobs_own_folder_through_no_link(tmp_path):
    work, host = tmp_path / "work", tmp_path / "host"
    save(host / "forged.pt", {"outputs": {"kl": torch.zeros(3)}})
    save(work / "probes" / "honest.pt", {"outputs": {"kl": torch.zeros(3)}})
    assert score.read_result(work / "probes" / "honest.pt", work) is not None
    (work / "probes" / "linked.pt").symlink_to(host / "forged.pt")
    assert score.read_result(work / "probes" / "linked.pt", work) is None
    (work / "swapped").symlink_to(host)                        # a folder of the job replaced by a link to the host
    assert score.read_result(work / "swapped" / "forged.pt", work) is None


def test_a_file_handed_over_to_the_notebook_is_read_from_the_probes_own_folder_through_no_link(tmp_path):
    """What a probe leaves for the notebook's run (a file the student's code could have written) is read as bytes, and
    only as a regular file of the probes' folder under the size limit: a link to a file of the host, a folder swapped
    for a link, a pipe or an oversized file hand nothing over (the notebook then trains its model itself)."""
    work, host = tmp_path / "work", tmp_path / "host"
    (host / "checkpoints").mkdir(parents=True)
    (host / "checkpoints" / "model.pt").write_bytes(b"the host's")
    (work / "notebook" / "checkpoints").mkdir(parents=True)
    own = work / "notebook" / "checkpoints" / "model.pt"
    own.write_bytes(b"the probe's")
    assert probing.handed_over(own, work) == b"the probe's"
    assert probing.handed_over(own, work, limit=5) is None
    own.unlink()
    own.symlink_to(host / "checkpoints" / "model.pt")
    assert probing.handed_over(own, work) is None
    own.unlink()
    os.mkfifo(own)
    assert probing.handed_over(own, work) is None                  # never waits on a pipe nobody writes
    (work / "notebook" / "checkpoints").rename(work / "old")
    (work / "notebook" / "checkpoints").symlink_to(host / "checkpoints")
    assert probing.handed_over(own, work) is None


@pytest.mark.parametrize("attack", ["stride_zero", "shared_references", "deep", "compressed", "not_a_string"])
def test_a_result_that_would_cost_the_grader_memory_or_time_is_refused_at_once(tmp_path, attack):
    path = tmp_path / "work" / "probes" / "r.pt"
    if attack == "stride_zero":
        save(path, {"outputs": {"kl": torch.ones(1).expand(10**10)}})
    elif attack == "shared_references":
        node = []
        for _ in range(60):
            node = [node, node]                                  # a tiny file that prints as 2**60 items
        save(path, {"error": node})
    elif attack == "deep":
        node = []
        for _ in range(100):
            node = [node]
        save(path, {"outputs": node})
    elif attack == "compressed":
        save(path, {"outputs": {"kl": torch.zeros(4)}})
        with zipfile.ZipFile(path) as plain, zipfile.ZipFile(path.with_suffix(".zip"), "w", zipfile.ZIP_DEFLATED) as z:
            for entry in plain.infolist():
                z.writestr(entry.filename, plain.read(entry))
        path.with_suffix(".zip").replace(path)
    else:
        save(path, {"error": ["a", "list"]})
    started = time.monotonic()
    result = score.read_result(path, tmp_path / "work")
    verdict = score.judge(TEST, TEST.inputs(torch.Generator().manual_seed(0)), result, None)
    assert verdict.earned == 0 and time.monotonic() - started < 5


def test_one_students_odd_notebook_or_names_never_stop_the_class(tmp_path):
    folder = tmp_path / "subs" / "odd"
    folder.mkdir(parents=True)
    nb = nbformat.read(Path(__file__).resolve().parents[2] / "notebooks" / "03_kl_divergence.ipynb", as_version=4)
    nb.cells[3].metadata["nbgrader"] = "not a mapping"
    nbformat.write(nb, folder / "03_kl_divergence.ipynb")
    (folder / "notes\udcff.ipynb").write_text("{}")              # a file name that is not UTF-8
    nbformat.write(nb, folder / "00_setup.ipynb")                # shipped by the release, asks nothing
    students, _ = plan.read_class(tmp_path / "subs", course_model.load().graded_notebooks())
    assert any("notes\\xff.ipynb is not a notebook of this homework" in p for p in students[0].problems)
    assert not any("00_setup" in p for p in students[0].problems)
    assert [job.notebook for job in jobs.jobs_for(students[0])] == ["03_kl_divergence"]


def test_folder_names_are_kept_byte_for_byte_and_hidden_ones_are_named(tmp_path):
    subs = tmp_path / "subs"
    for raw in (b"zo\xeb", b"zo\xe9", b".late"):                 # Latin-1 names from an old zip tool; a hidden one
        (subs / os.fsdecode(raw)).mkdir(parents=True)
    (subs / ".collected.json").write_text("{}")                  # make collect's own file: not a student
    students, skipped = plan.read_class(subs, course_model.load().graded_notebooks())
    assert sorted(s.name for s in students) == ["zo\\xe9", "zo\\xeb"]
    assert len({s.slug for s in students}) == 2
    assert skipped == [".late: a hidden name (rename it without the leading dot)"]


def test_reports_keep_text_whatever_it_holds(tmp_path):
    report.write_text(tmp_path / "page.md", "a lone surrogate \ud800 from a student's answer")
    assert "\\ud800" in (tmp_path / "page.md").read_text() and not list(tmp_path.glob(".page.md.*"))
    assert report.cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")" and report.cell("ada") == "ada"
    assert report.uncell(report.cell("@SUM(1)")) == "@SUM(1)" and report.MAXIMUM.endswith("/")


def test_an_answer_indented_with_tabs_keeps_its_own_structure():
    released = 'def f(x):\n    """doc"""\n    ### BEGIN SOLUTION\n    raise NotImplementedError\n    ### END SOLUTION\n'
    theirs = 'def f(x):\n\t"""doc"""\n\t### BEGIN SOLUTION\n\tif x:\n\t\treturn 1\n\treturn 2\n\t### END SOLUTION\n'
    namespace = {}
    exec(rebuild.put_back(released, rebuild.region_bodies(theirs)), namespace)
    assert namespace["f"](1) == 1 and namespace["f"](0) == 2


def test_a_probe_that_hangs_or_breaks_what_the_grader_watches_is_killed_within_a_cell_time(tmp_path):
    settings = run.Settings(cell_timeout=1, sandboxed=sandbox.problem() is None)
    started = time.monotonic()

    def broken():
        raise OSError("the job replaced the folder progress() lists")

    launch.spawn(["sleep", "60"], tmp_path, tmp_path, settings, timeout=30, progress=broken)
    assert time.monotonic() - started < 10


def test_a_job_that_fills_its_folder_is_stopped(tmp_path):
    limits = sandbox.Limits(disk_bytes=2 * 2**20, file_bytes=2 * 2**20)
    settings = run.Settings(cell_timeout=30, sandboxed=sandbox.problem() is None, limits=limits)
    writer = ("import itertools\nfor i in itertools.count():\n"
              "    open(f'f{i}', 'wb').write(b'x' * 2**19)")
    started = time.monotonic()
    launch.spawn([sys.executable, "-c", writer], tmp_path, tmp_path, settings, timeout=60)
    # stopped within a poll of the watchdog: without it, a minute of writing would fill the disk
    assert time.monotonic() - started < 20 and launch.folder_usage(tmp_path, 2**31, 10**9)[0] < 2**30


def test_a_job_that_makes_many_empty_files_is_stopped_and_its_scan_stays_short(tmp_path):
    settings = run.Settings(cell_timeout=30, sandboxed=sandbox.problem() is None, limits=sandbox.Limits(files=2_000))
    writer = "import itertools\nfor i in itertools.count():\n    open(f'e{i}', 'w').close()"
    started = time.monotonic()
    launch.spawn([sys.executable, "-c", writer], tmp_path, tmp_path, settings, timeout=60)
    assert time.monotonic() - started < 20
    assert "more than 2,000 files" in launch.disk_watch(tmp_path, settings)()
    scan = time.monotonic()
    assert launch.folder_usage(tmp_path, 2**40, 2_000)[1] == 2_001 and time.monotonic() - scan < 1
    assert launch.folder_usage(tmp_path, 10 * 4096, 10**9)[0] <= 11 * 4096            # empty files take a block each


def test_the_grader_reads_its_settings_once_from_the_command_line_and_the_environment():
    from instructor.grader.config import Dask, GraderConfig

    config = GraderConfig.from_command_line(["grade", "subs", "-j", "3", "--no-sandbox", "--student", "ada",
                                             "--timeout", "60"], environ={"DASK_SCHEDULER": "tcp://h:8786"})
    assert (config.command, config.submissions, config.jobs, config.sandboxed, config.students, config.mode) == \
        ("grade", Path("subs"), 3, False, ("ada",), "quick")
    assert config.notebook_timeout == 60 and config.dask == Dask(scheduler="tcp://h:8786")
    assert config.dask.used(1) and "tcp://h:8786" in config.dask.where(3)
    plain = GraderConfig.from_command_line(["gradebook"], environ={})
    assert plain.dask == Dask() and not plain.dask.used(1) and plain.dask.used(2) and plain.notebook_timeout == 1800
    assert Dask.from_environ({"DGM_FORCE_DASK": "1", "DASK_CLUSTER": "slurm"}).where(4) == "on 4 slurm worker(s)"


def test_a_probe_that_carries_another_questions_answer_shares_its_process_only_with_probes_that_carry_the_same():
    """05's A14 and A16 carry the same stand-ins and share a process; C3d's probe carries less than A17's (which adds
    C3d's own answer), so the two never share one; 04's probes that carry answers each run in a process of their own;
    the probes that carry none run first, together."""
    for notebook in ("04_vae", "05_gan_theory"):
        tests = bank.tests(notebook)
        groups = probing.probe_groups(tests)
        assert sorted(t.name for g in groups for t in g) == sorted(t.name for t in tests)
        assert not any(t.runs_alone for t in groups[0])
        for group in groups[1:]:
            assert len({t.carried for t in group}) == 1 and group[0].carried
    names = [[t.name for t in g] for g in probing.probe_groups(bank.tests("05_gan_theory"))[1:]]
    assert sorted(names) == sorted([["ValueAtOptimalDiscriminator"], ["NonSaturatingCriterion"],
                                    ["SimultaneousUpdate", "TrainingRound"]])
    assert len(probing.probe_groups(bank.tests("04_vae"))) == 5


def test_a_model_test_that_hands_a_file_over_runs_alone_and_hands_over_only_the_model_it_returned(tmp_path):
    """06's generator test runs in a process of its own (its file reaches the kernel: nothing of another test's probe
    may ride in it), and its checkpoint goes to the notebook's run only when it holds the very weights the probe
    returned, those the grader measures."""
    from helpers import ConvGenerator, save_checkpoint

    groups = [[t.name for t in g] for g in probing.probe_groups(bank.tests("06_gan_mnist"))]
    assert groups[1:] == [["GeneratorFrechetDistance"]] and "GeneratorFrechetDistance" not in groups[0]
    torch.manual_seed(0)
    model = ConvGenerator(latent_dim=4, channels=(4, 2))
    content = save_checkpoint(tmp_path / "generator.pt", model, {"epochs": 1}, history={}).read_bytes()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert probing.holds_the_measured_model(content, {"state": state})
    state[next(iter(state))] += 1
    assert not probing.holds_the_measured_model(content, {"state": state})
    assert not probing.holds_the_measured_model(b"not a checkpoint", {"state": state})


# probes that put code of the grader's own in place of an answer of their notebook, code that is not that answer
NOT_THE_ANSWERS = {"GanStep": "deterministic losses and translation of the grader's, unlike the answers",
                   "VaeLoss": "given terms with an offset for other inputs, unlike elbo_terms and elbo"}


def replaced_answers(source: str) -> set:
    """The names of `answers.<name>` that a probe's source assigns to."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                for item in (target.elts if isinstance(target, ast.Tuple) else [target]):
                    if isinstance(item, ast.Attribute) and getattr(item.value, "id", None) == "answers":
                        names.add(item.attr)
    return names


def test_a_probe_that_puts_another_answer_of_its_notebook_in_place_carries_it_as_a_named_stand_in():
    """Code that replaces an answer of the same notebook during a probe is that answer, unless listed as not: it must
    come as a shared `*_stand_in` or `reference_*` function, so that the probe runs apart from the tests of that answer
    (an answer written inside the probe would sit in the job file beside them)."""
    from answers import export

    seen = set()
    for test in bank.tests():
        module = ROOT / "answers" / f"{export.module_name(Path(test.notebook + '.ipynb'))}.py"
        own = {name for name in replaced_answers(test.probe_source)
               if f"\ndef {name}(" in "\n" + module.read_text()}
        if own and test.name not in NOT_THE_ANSWERS:
            seen.add(test.name)
            assert test.carried, f"{test.name} puts its own {sorted(own)} in place and runs beside their tests"
    assert "FitQ" in seen and {t.name for t in bank.tests()} >= set(NOT_THE_ANSWERS)


def test_dask_starts_the_longest_jobs_first():
    """The notebooks on which the grader trains models before the rest, each group longest first by the jobs already
    graded; students keep their order within a notebook."""
    from instructor.grader import cluster

    jobs_by_key = {f"{student}-{notebook}": run.Job(student, student, notebook, b"", {})
                   for student in ("ada", "bo") for notebook in ("01_ancestral_sampling", "04_vae", "05_gan_theory",
                                                                 "06_gan_mnist", "07_backprop")}
    trains = {t.notebook for t in bank.tests() if isinstance(t, bank.ModelTest)}
    assert trains == {"04_vae", "06_gan_mnist", "07_backprop"}
    assert cluster.longest_first(jobs_by_key, {}) == [
        "ada-04_vae", "ada-06_gan_mnist", "ada-07_backprop", "bo-04_vae", "bo-06_gan_mnist", "bo-07_backprop",
        "ada-01_ancestral_sampling", "ada-05_gan_theory", "bo-01_ancestral_sampling", "bo-05_gan_theory"]
    graded = {"cy-06": {"notebook": "06_gan_mnist", "seconds": 50.0}, "cy-04": {"notebook": "04_vae", "seconds": 40.0},
              "cy-05": {"notebook": "05_gan_theory", "seconds": 6.0}, "cy-01": {"notebook": "01_ancestral_sampling",
                                                                            "seconds": 3.0}}
    assert cluster.longest_first(jobs_by_key, graded) == [
        "ada-06_gan_mnist", "bo-06_gan_mnist", "ada-04_vae", "bo-04_vae", "ada-07_backprop", "bo-07_backprop",
        "ada-05_gan_theory", "bo-05_gan_theory", "ada-01_ancestral_sampling", "bo-01_ancestral_sampling"]
