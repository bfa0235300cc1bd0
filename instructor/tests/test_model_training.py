"""The model tests train their own models, in the grader's loops, with the student's functions plugged in: a function
that trains badly earns no model points. The probes run here in this process, as they run in the sandbox; the
reference answers earning every model point is shown sandboxed (test_grader_reference.py), and nothing a notebook
saves playing a part end to end (test_grader_models.py)."""
import json
import os
import types
from pathlib import Path

import pytest
import torch

from instructor.grader import bank, score
from instructor.grader.reference import Reference
from instructor.tests.test_bank import SEED, answer_module

ROOT = Path(__file__).resolve().parents[2]
KEY = json.loads((ROOT / "instructor" / "key.json").read_text())["models"]
MODEL_TESTS = {t.name: t for t in bank.tests() if isinstance(t, bank.ModelTest)}


@pytest.fixture(scope="module")
def ref():
    return Reference()


def trained_by_the_grader(test, module, ref):
    verdict, = score.run_in_process([test], module, SEED, ref, KEY)
    return verdict


def with_functions(module, **functions):
    """A copy of an answer module with `functions` in place of its own (the rest unchanged)."""
    copy = types.ModuleType(f"planted_{module.__name__}")
    vars(copy).update(vars(module))
    vars(copy).update(functions)
    return copy


def vae_without_kl(vae):
    """vae_loss that forgets the KL term: the reconstruction alone."""
    return with_functions(vae, vae_loss=lambda model, x: -vae.elbo_terms(model, x)[0].mean())


def vae_ascending(vae):
    """vae_loss with its sign flipped: the ELBO itself, minimised."""
    return with_functions(vae, vae_loss=lambda model, x: vae.elbo(model, x).mean())


def gan_without_generator_update(gan):
    """gan_step whose generator never moves: only D is trained."""
    def gan_step(generator, discriminator, opt_g, opt_d, real, max_shift=2):
        fake = generator(torch.randn(len(real), generator.latent_dim)).detach()
        loss_d = gan.discriminator_loss(discriminator(gan.translate(real, max_shift)),
                                        discriminator(gan.translate(fake, max_shift)))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        return torch.stack([loss_d.detach(), loss_d.detach(), loss_d.detach(), loss_d.detach()])
    return with_functions(gan, gan_step=gan_step)


def sgd_ascending(backprop):
    """sgd_step that adds the gradient instead of subtracting it."""
    def sgd_step(network, lr):
        for linear in network.linears:
            linear.weight += lr * linear.grad_weight
            linear.bias += lr * linear.grad_bias
    return with_functions(backprop, sgd_step=sgd_step)


def no_backward(backprop):
    """HandMLP.backward still the stub."""
    class HandMLP(backprop.HandMLP):
        def backward(self):
            raise NotImplementedError("not written yet")
    return with_functions(backprop, HandMLP=HandMLP)


@pytest.mark.parametrize("name, plant", [
    ("ModelB", vae_ascending), ("Model20D", vae_without_kl), ("Model2D", vae_ascending),
    ("GeneratorFrechetDistance", gan_without_generator_update),
    ("HandTrainedClassifier", sgd_ascending), ("HandTrainedClassifier", no_backward)],
    ids=lambda v: getattr(v, "__name__", v))
def test_a_function_that_trains_badly_earns_no_model_points(name, plant, ref):
    test = MODEL_TESTS[name]
    verdict = trained_by_the_grader(test, plant(answer_module(test.notebook)), ref)
    assert verdict.earned == 0, verdict.message
    assert verdict.message, "a model that earns nothing is told why"
    if plant is not no_backward:                  # trained and measured, not a probe that broke on the way
        assert verdict.message.startswith("measured"), verdict.message


SLOW_STEP = """

def sgd_step(network, lr):
    for linear in network.linears:
        linear.weight -= lr / 20 * linear.grad_weight
        linear.bias -= lr / 20 * linear.grad_bias
"""
LONGER_EPOCHS = """

_randperm = torch.randperm


def _twenty_passes(n, *args, **kwargs):
    open(__file__ + ".patch-ran", "a").write("x")        # the patched loop ran: the grader trained with the patch
    return torch.cat([_randperm(n, *args, **kwargs) for _ in range(20)])


torch.randperm = _twenty_passes
"""
PATCHES_WHILE_TRAINING = """

_step = sgd_step


def sgd_step(network, lr):
    if torch.randperm.__name__ != "_same_permutation":
        _randperm = torch.randperm

        def _same_permutation(n, *args, **kwargs):
            return _randperm(n, *args, **kwargs)
        torch.randperm = _same_permutation
    _step(network, lr)
"""


def probed_in_a_process(tmp_path, answers_text: str, test) -> dict:
    """One model test run by the grader's probe runner in a process of its own, as in the sandbox (unsandboxed
    here), on an answer module with the text given."""
    import subprocess
    import sys

    (tmp_path / "lib" / "answers").mkdir(parents=True)
    (tmp_path / "lib" / "answers" / "__init__.py").write_text("")
    (tmp_path / "lib" / "answers" / "backprop.py").write_text(answers_text)
    inputs = score.draw_inputs(test, 0)
    torch.save({"module": "backprop", "path": str(tmp_path / "lib"), "tests": [
        {"name": test.name, "source": test.probe_source, "inputs": inputs, "seconds": 300, "trains": True}]},
        tmp_path / "job.pt")
    (tmp_path / "out").mkdir()
    done = subprocess.run([sys.executable, str(ROOT / "instructor" / "grader" / "probes.py"), str(tmp_path / "job.pt"),
                           str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return torch.load(tmp_path / "out" / f"{test.name}.pt", weights_only=True)


def test_an_answer_that_changes_the_libraries_of_the_graders_loop_earns_no_model_point(tmp_path, ref):
    """A too-slow sgd_step with torch.randperm patched at import to make each epoch twenty passes long: the patch
    would carry the wrong step past the bound; the grader refuses a training its loop would not run as written, before
    it runs (the patch is never called), and the same wrong step without the patch trains and is measured (and fails
    on its own)."""
    test = MODEL_TESTS["HandTrainedClassifier"]
    honest = (ROOT / "answers" / "backprop.py").read_text() + SLOW_STEP
    patched = probed_in_a_process(tmp_path / "patched", honest + LONGER_EPOCHS, test)
    assert "LibraryChanged" in patched["error"] and "torch.randperm" in patched["error"]
    assert not (tmp_path / "patched" / "lib" / "answers" / "backprop.py.patch-ran").exists()
    verdict, _ = score.evaluate_trained(test, patched, KEY[test.name], ref, None)
    assert verdict.earned == 0 and "changed torch.randperm" in verdict.message
    alone = probed_in_a_process(tmp_path / "honest", honest, test)
    assert "outputs" in alone, alone


def test_a_library_changed_during_the_graders_training_earns_no_model_point(tmp_path, ref):
    """The same refusal when the answers change a library only once the grader's loop calls them."""
    test = MODEL_TESTS["HandTrainedClassifier"]
    answers = (ROOT / "answers" / "backprop.py").read_text() + PATCHES_WHILE_TRAINING
    patched = probed_in_a_process(tmp_path / "patched", answers, test)
    assert "LibraryChanged" in patched["error"] and "torch.randperm" in patched["error"]
    verdict, _ = score.evaluate_trained(test, patched, KEY[test.name], ref, None)
    assert verdict.earned == 0 and "changed torch.randperm" in verdict.message


def test_the_budget_table_trains_each_planted_answer_at_each_budget(capsys):
    """`python -m instructor.bench.budgets`, on the cheapest model test at one epoch: a line per budget, each planted
    answer measured and judged against the reference's bound at that budget."""
    from instructor.bench import budgets

    assert budgets.main(["--tests", "HandTrainedClassifier", "--epochs", "1"]) == 0
    line, = [row for row in capsys.readouterr().out.splitlines() if row.startswith("HandTrainedClassifier")]
    assert line.split()[1] == "1" and "sgd_ascending" in line and line.endswith("(no)"), line


def gan_probe_in_one_epoch(module, **inputs):
    """GeneratorFrechetDistance's probe run here on `module`, its notebook cells set to one epoch: its result."""
    from instructor.bench.budgets import with_epochs
    from instructor.grader import probes

    test = MODEL_TESTS["GeneratorFrechetDistance"]
    sent = {**with_epochs(test.inputs(None), 1), **inputs}
    return probes.run_test(module, {"name": test.name, "source": test.probe_source, "inputs": sent})


def test_the_gan_is_trained_in_quick_settings_on_the_given_digits_from_scratch(tmp_path, monkeypatch):
    """06's model test runs the notebook's own training cells: in quick settings whatever the environment says, on the
    digits the grader gives and no others, and never from a checkpoint already in its folder (code that ran before
    could have put one there); and what the cells change in this process for themselves is put back."""
    import helpers.data

    gan = answer_module("06_gan_mnist")
    monkeypatch.setenv("DGM_MODE", "full")                 # as an answer could set it at import
    torch.manual_seed(0)                                   # as the probes' runner seeds before each probe
    state = (torch.get_rng_state(), ours())
    result = gan_probe_in_one_epoch(gan, output=str(tmp_path / "notebook"))
    assert "outputs" in result, result
    assert torch.equal(torch.get_rng_state(), state[0]) and ours() == state[1]
    again = gan_probe_in_one_epoch(gan, output=str(tmp_path / "notebook"))    # its checkpoint is there now
    assert "error" in again and "did not train its quick recipe" in again["error"], again
    shorter = gan_probe_in_one_epoch(gan, epochs=2)         # the cells' settings train fewer epochs than the recipe
    assert "error" in shorter and "did not train its quick recipe" in shorter["error"], shorter

    given = helpers.data._load_given
    monkeypatch.setattr(helpers.data, "_load_given", lambda: doubled(given()))
    more = gan_probe_in_one_epoch(gan)
    assert "error" in more and "did not train its quick recipe" in more["error"], more


def ours() -> dict:
    """The variables the notebook's cells read or set: this collection's, and cuBLAS's that seed_everything sets."""
    return {k: v for k, v in os.environ.items() if k.startswith("DGM_") or k == "CUBLAS_WORKSPACE_CONFIG"}


def doubled(data):
    """`data` with its training digits twice over (what a patched loader would hand a training)."""
    import dataclasses

    return dataclasses.replace(data, train_x=data.train_x.repeat(2, 1), train_y=data.train_y.repeat(2))
