"""The hidden tests themselves: the reference answers earn every point, and a planted wrong answer to one question
loses points on that question and on no other (each question stands on its own). No notebook runs here: the probes
run in this process on the exported answers, exactly as they run in the sandbox on a student's."""
import ast
import importlib
import inspect
import json
import sys
import types
from pathlib import Path

import pytest
import torch

from instructor.grader import bank, score
from instructor.grader.reference import Reference
from tools import nbcells

ROOT = Path(__file__).resolve().parents[2]
SEED = 20261129
MODULES = sorted({t.notebook for t in bank.tests() if isinstance(t, bank.FunctionTest)})


def answer_module(notebook: str):
    return importlib.import_module(f"answers.{notebook.split('_', 1)[1]}")


def defined_names(notebook: str, question: str) -> list:
    """The functions, classes and variables that a question's code answer cells define."""
    cells = json.loads((ROOT / "notebooks" / f"{notebook}.ipynb").read_text())["cells"]
    names = []
    for cell in cells:
        if nbcells.is_code_answer(cell) and nbcells.question_of(cell) == question:
            for node in ast.parse(nbcells.source_of(cell)).body:
                if isinstance(node, ast.FunctionDef | ast.ClassDef):
                    names.append(node.name)
                elif isinstance(node, ast.Assign):
                    names += [t.id for t in node.targets if isinstance(t, ast.Name)]
    return names


def perturbed(value):
    """A wrong version of an answer's output or value: every number moved by 10% and 0.25."""
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value * 1.1 + 0.25
    if isinstance(value, float):
        return value * 1.1 + 0.25
    if isinstance(value, dict):
        return {k: perturbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(perturbed(v) for v in value)
    return value


def planted(module, notebook: str, question: str):
    """A copy of the answer module where every answer of `question` is wrong (the bank module's own PLANTED
    override when a generic perturbation of outputs cannot make it wrong)."""
    wrong = types.ModuleType(f"planted_{module.__name__}")
    wrong.__dict__.update(module.__dict__)
    overrides = {k: v for bank_module in bank.modules(notebook) for k, v in getattr(bank_module, "PLANTED", {}).items()}
    if question in overrides:
        overrides[question](wrong)
        return wrong
    for name in defined_names(notebook, question):
        original = getattr(module, name)
        if isinstance(original, types.FunctionType):
            setattr(wrong, name, lambda *a, _f=original, **k: perturbed(_f(*a, **k)))
        else:
            setattr(wrong, name, perturbed(original))
    return wrong


@pytest.fixture(scope="module")
def ref():
    return Reference()


@pytest.mark.parametrize("notebook", MODULES)
def test_the_reference_answers_earn_every_point(notebook, ref):
    tests = [t for t in bank.tests(notebook) if isinstance(t, bank.FunctionTest)]
    verdicts = score.run_in_process(tests, answer_module(notebook), SEED, ref)
    failed = [f"{v.question} {v.test}: {v.message}" for v in verdicts if v.earned < v.points]
    assert not failed, failed


def planted_cases():
    for notebook in MODULES:
        for question in sorted({t.question for t in bank.tests(notebook) if isinstance(t, bank.FunctionTest)}):
            yield notebook, question


@pytest.mark.parametrize("notebook, question", list(planted_cases()), ids=lambda v: v)
def test_a_wrong_answer_loses_points_on_its_own_question_only(notebook, question, ref):
    tests = [t for t in bank.tests(notebook) if isinstance(t, bank.FunctionTest)]
    verdicts = score.run_in_process(tests, planted(answer_module(notebook), notebook, question), SEED, ref)
    own = [v for v in verdicts if v.question == question]
    others = [f"{v.question} {v.test}: {v.message}" for v in verdicts if v.question != question and v.earned < v.points]
    assert any(v.earned < v.points for v in own), f"no test of {question} noticed the wrong answer"
    assert not others, f"a wrong {question} cost other questions: {others}"


def test_every_test_has_fresh_inputs_that_differ_between_students():
    for test in bank.tests():
        if isinstance(test, bank.FunctionTest):
            first = score.draw_inputs(test, score.seed_for("key", "alice", test.name))
            second = score.draw_inputs(test, score.seed_for("key", "bob", test.name))
            tensors = [(a, b) for a, b in zip(torch.utils._pytree.tree_leaves(first),
                                              torch.utils._pytree.tree_leaves(second)) if isinstance(a, torch.Tensor)]
            assert not tensors or any(not torch.equal(a, b) for a, b in tensors), test.name


MODEL_TESTS = [t for t in bank.tests() if isinstance(t, bank.ModelTest)]
COMMITTED = {"ModelB": "vae_fixed_var.pt", "Model2D": "vae_2d.pt", "Model20D": "vae_20d.pt",
             "GeneratorFrechetDistance": "gan_generator.pt", "HandTrainedClassifier": "hand_mlp.pt"}


def committed_weights(test) -> dict:
    """The weights of the fully trained model committed for a model test's architecture, as its training returns
    them from the sandbox."""
    state = torch.load(ROOT / "checkpoints" / COMMITTED[test.name], map_location="cpu", weights_only=True)["state_dict"]
    if test.name == "HandTrainedClassifier":                # an nn.Sequential of Linear and ReLU: [weight, bias] each
        return {"state": [[state[f"{2 * k}.weight"], state[f"{2 * k}.bias"]] for k in range(3)]}
    return {"state": state}


def test_every_model_test_has_a_committed_model_to_measure():
    assert sorted(t.name for t in MODEL_TESTS) == sorted(COMMITTED)


@pytest.mark.parametrize("test", MODEL_TESTS, ids=lambda t: f"{t.question}-{t.name}")
def test_a_trained_model_passes_its_model_test_and_an_untrained_one_fails_it(test, ref):
    """The measurement alone, without training: the committed (fully trained) weights reach the key's bound, the
    same architecture with fresh small weights does not."""
    from instructor.grader.bank.digits import grader_digits

    key = json.loads((ROOT / "instructor" / "key.json").read_text())["models"]
    trained = committed_weights(test)
    verdict, value = score.evaluate_trained(test, {"outputs": trained}, key[test.name], ref, grader_digits())
    assert verdict.earned == test.points, (verdict.message, value, key[test.name])
    generator = torch.Generator().manual_seed(0)
    untrained = torch.utils._pytree.tree_map(
        lambda v: 0.01 * torch.randn(v.shape, generator=generator, dtype=v.dtype)
        if isinstance(v, torch.Tensor) and v.is_floating_point() else v, trained)
    verdict, value = score.evaluate_trained(test, {"outputs": untrained}, key[test.name], ref, grader_digits())
    assert verdict.earned == 0, (value, key[test.name])


@pytest.mark.parametrize("outputs, words", [({"state": {"wrong": torch.zeros(2)}}, "could not be evaluated"),
                                            (None, "could not be evaluated"),
                                            ({"state": [[torch.zeros(3, 3), torch.zeros(3)]]}, "could not be")])
def test_weights_of_another_shape_earn_nothing_and_say_so(outputs, words, ref):
    from instructor.grader.bank.digits import grader_digits

    for test in MODEL_TESTS:
        verdict, value = score.evaluate_trained(test, {"outputs": outputs}, -1e9 if test.rule == "at_least" else 1e9,
                                                ref, grader_digits())
        assert verdict.earned == 0 and words in verdict.message and value is None, (test.name, verdict.message)


# --- shortcuts: answers that try to earn what an honest answer of the same quality does not ------------------------

def graded_by_stack() -> bool:
    """What a student's code can see of the grader: a frame named `probe` on the stack."""
    return any(frame.function == "probe" for frame in inspect.stack(0))


def graded_by_kernel() -> bool:
    return "ipykernel" not in sys.modules


def copy_of(notebook: str, made=lambda copy: {}, **functions):
    """A copy of the answer module whose functions read the copy's names, with `functions` and those that
    `made(copy)` returns in place of its own."""
    module = answer_module(notebook)
    copy = types.ModuleType(f"shortcut_{module.__name__}")
    namespace = vars(copy)
    namespace.update(vars(module))
    for name, value in list(namespace.items()):
        if isinstance(value, types.FunctionType) and value.__globals__ is vars(module):
            namespace[name] = types.FunctionType(value.__code__, namespace, value.__name__, value.__defaults__,
                                                 value.__closure__)
    namespace.update(functions)
    namespace.update(made(copy))
    return copy


def points_per_question(notebook: str, module, ref) -> dict:
    tests = [t for t in bank.tests(notebook) if isinstance(t, bank.FunctionTest)]
    earned = {}
    for v in score.run_in_process(tests, module, SEED, ref):
        earned[v.question] = earned.get(v.question, 0.0) + v.earned
    return earned


def when_graded(detect, graded, honest):
    """A function that is `graded` while `detect()` says the grader calls it, else `honest`."""
    return lambda *a, **k: (graded if detect() else honest)(*a, **k)


def zeros_like_first(*args, **kwargs):
    """A density that is zero everywhere: the shape of log p(z) for the z given."""
    z = args[0] if len(args) < 3 or not isinstance(args[0], torch.nn.Module) else args[2]
    return torch.zeros(z.shape[:-1], dtype=z.dtype)


def degenerate_estimators(vae) -> dict:
    """04's ELBO and log p(x) estimators as they would be if log p(x|z), log p(z) and log q were zero everywhere."""
    def elbo_terms(model, x, samples=1):
        mu, logvar = model.encode(x)
        return torch.zeros(len(x), dtype=mu.dtype), vae.kl_to_standard_normal(mu, logvar)

    def elbo_estimates(model, x, samples):
        mu, logvar = model.encode(x)
        kl = vae.kl_to_standard_normal(mu, logvar)
        return -kl.expand(samples, -1), torch.zeros(samples, len(x), dtype=mu.dtype)

    def log_likelihood(model, x, k=1000, chunk=100):
        mu, _ = model.encode(x)
        for size in [chunk] * (k // chunk) + ([k % chunk] if k % chunk else []):
            vae.reparameterize(mu, mu, size)
        return torch.zeros(len(x), dtype=mu.dtype)

    return {"elbo_terms": elbo_terms, "elbo_estimates": elbo_estimates, "log_likelihood": log_likelihood}


def emptying_the_probe_inputs(wrong):
    """`wrong`, except that its first call empties the list of cases that the grader's probe iterates over."""
    def function(a, b):
        for frame in inspect.stack(0):
            cases = frame.frame.f_locals.get("inputs")
            if isinstance(cases, dict) and isinstance(cases.get("pairs"), list):
                cases["pairs"].clear()
        return wrong(a, b)
    return function


def swapped_value(module):
    def value_at_optimal_discriminator(p_data, p_model, dx):
        return module.value_on_grid(module.optimal_discriminator(p_data, p_model), p_model, p_data, dx)
    return value_at_optimal_discriminator


def swapped_value_inline(p_data, p_model, dx):
    d = p_data / (p_data + p_model)
    return ((p_model * torch.log(d) + p_data * torch.log1p(-d)) * dx).sum()


def shortcut_cases():
    """(name, notebook, shortcut, honest twin): each pair of answer modules built by a function of the notebook."""
    kl, vae, gan, backprop = "03_kl_divergence", "04_vae", "05_gan_theory", "07_backprop"
    off = perturbed
    wrong = {"kl_segments": lambda a, b: 0.0 if a == b else 1.0, "js_segments": lambda a, b: 0.0 if a == b else 1.0}

    def perturbing(notebook, names, detect):
        module = answer_module(notebook)
        graded = {n: (lambda f: lambda *a, **k: off(f(*a, **k)))(getattr(module, n)) for n in names}
        return (lambda: copy_of(notebook, **{n: when_graded(detect, graded[n], getattr(module, n)) for n in names}),
                lambda: copy_of(notebook, **graded))

    def zero_densities(detect):
        module = answer_module(vae)
        return {n: when_graded(detect, zeros_like_first, getattr(module, n)) for n in ("log_prior", "log_q")} | \
            {"log_px_given_z": when_graded(detect, zeros_like_first, module.log_px_given_z)}

    yield ("wrong only when graded (stack)", kl, *perturbing(kl, ["gaussian_kl", "kl_to_standard_normal"],
                                                              graded_by_stack))
    yield ("wrong only when graded (kernel)", vae, *perturbing(vae, ["log_prior", "log_q", "log_bernoulli"],
                                                               graded_by_kernel))
    yield ("wrong only when graded (stack)", gan, *perturbing(gan, ["optimal_discriminator", "value_on_grid"],
                                                               graded_by_stack))
    yield ("empty cases", kl, lambda: copy_of(kl, **{k: emptying_the_probe_inputs(f) for k, f in wrong.items()}),
           lambda: copy_of(kl, **wrong))
    yield ("wrong arguments to a stand-in", gan,
           lambda: copy_of(gan, lambda m: {"value_at_optimal_discriminator": swapped_value(m)}),
           lambda: copy_of(gan, value_at_optimal_discriminator=swapped_value_inline))
    yield ("layers cleared", backprop, lambda: copy_of(backprop, sgd_step=lambda network, lr: network.linears.clear()),
           lambda: copy_of(backprop, sgd_step=lambda network, lr: None))
    for detect in (graded_by_stack, graded_by_kernel):
        yield (f"zero densities when graded ({detect.__name__}), degenerate estimators", vae,
               lambda d=detect: copy_of(vae, degenerate_estimators, **zero_densities(d)),
               lambda: copy_of(vae, degenerate_estimators))


SHORTCUTS = list(shortcut_cases())


@pytest.mark.parametrize("case", SHORTCUTS, ids=[f"{c[1]}: {c[0]}" for c in SHORTCUTS])
def test_a_shortcut_scores_no_more_than_its_honest_twin_on_any_question(case, ref):
    name, notebook, shortcut, twin = case
    tricked, honest = (points_per_question(notebook, build(), ref) for build in (shortcut, twin))
    gained = {q: (tricked[q], honest[q]) for q in tricked if tricked[q] > honest[q]}
    assert not gained, f"{name}: points (with the shortcut, without) {gained}"


@pytest.mark.parametrize("case", [c for c in SHORTCUTS if c[0].startswith("wrong only when graded")],
                         ids=lambda c: f"{c[1]}: {c[0]}")
def test_an_answer_that_behaves_differently_when_graded_scores_as_if_it_always_did(case, ref):
    """The twin here is the answer as the grader sees it, always: the points depend on nothing else."""
    name, notebook, shortcut, twin = case
    assert points_per_question(notebook, shortcut(), ref) == points_per_question(notebook, twin(), ref), name


def test_the_stand_ins_are_the_reference_answers_applied_to_their_arguments(ref):
    from instructor.grader.bank import gan_theory, vae, vae_latent

    rng = torch.Generator().manual_seed(SEED)
    z, mu, logvar, eps = (torch.randn(5, 4, 3, generator=rng, dtype=torch.float64) for _ in range(4))
    x = vae.binary(rng, 4, 7)
    model = vae.tiny_vae(vae.tiny_model(rng, 7, 3))
    p, q, d = (torch.rand(50, generator=rng, dtype=torch.float64) for _ in range(3))
    q[:5] = 0.0
    pairs = {"log_prior": (vae.reference_log_prior(z), ref.vae.log_prior(z)),
             "log_q": (vae.reference_log_q(z, mu, logvar), ref.vae.log_q(z, mu, logvar)),
             "kl_to_standard_normal": (vae.reference_kl_to_standard_normal(mu, logvar),
                                       ref.kl_divergence.kl_to_standard_normal(mu, logvar)),
             "log_px_given_z, Bernoulli": (vae.reference_log_px_bernoulli(model, x, z),
                                           ref.vae.log_px_given_z(model, x, z)),
             "reparameterize": (vae.given_noise(eps)(mu[0], logvar[0], 5), mu[0] + (0.5 * logvar[0]).exp() * eps),
             "value_on_grid": (gan_theory.reference_value_on_grid(d, p, q, 0.1),
                               ref.gan_theory.value_on_grid(d, p, q, 0.1)),
             "optimal_discriminator": (gan_theory.reference_optimal_discriminator(p, q),
                                       ref.gan_theory.optimal_discriminator(p, q)),
             "value_at_optimal_discriminator": (gan_theory.reference_value_at_optimal_discriminator(p, q, 0.1),
                                                ref.gan_theory.value_at_optimal_discriminator(p, q, 0.1))}
    model.likelihood, model.precision = "gaussian", 4.0
    pairs["log_px_given_z, Gaussian"] = (vae_latent.reference_log_px_gaussian(model, x, z),
                                         ref.vae.log_px_given_z(model, x, z))
    for name, (stand_in, reference) in pairs.items():
        torch.testing.assert_close(stand_in, reference, rtol=1e-12, atol=1e-12, msg=name)
