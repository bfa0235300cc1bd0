"""The hidden tests themselves: the reference answers earn every point, and a planted wrong answer to one question
loses points on that question and on no other (each question stands on its own). No notebook runs here: the probes
run in this process on the exported answers, exactly as they run in the sandbox on a student's."""
import ast
import importlib
import json
import types
from pathlib import Path

import pytest
import torch

from answers import export
from instructor.grader import bank, score
from instructor.grader.reference import Reference

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
        if export.is_code_answer(cell) and export.question_of(cell) == question:
            for node in ast.parse(export.source_of(cell)).body:
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


@pytest.mark.parametrize("test", MODEL_TESTS, ids=lambda t: f"{t.question}-{t.name}")
def test_a_trained_model_passes_its_model_test_and_an_untrained_one_fails_it(test, ref, tmp_path):
    """The model tests, without running a notebook: the committed (fully trained) model reaches the key's bound,
    the same architecture with fresh small weights does not; each test reads its own checkpoint only."""
    from helpers import load_mnist

    key = json.loads((ROOT / "instructor" / "key.json").read_text())["models"]
    data = load_mnist(source="embedded", device="cpu", announce=False)
    committed = ROOT / "checkpoints" / test.checkpoint
    verdict, value = score.evaluate_model(test, committed, ROOT / "checkpoints", key[test.name], ref, data)
    assert verdict.earned == test.points, (verdict.message, value, key[test.name])
    payload = torch.load(committed, map_location="cpu", weights_only=True)
    generator = torch.Generator().manual_seed(0)
    payload["state_dict"] = {k: 0.01 * torch.randn(v.shape, generator=generator, dtype=v.dtype)
                             if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    untrained = tmp_path / test.checkpoint
    torch.save(payload, untrained)
    verdict, value = score.evaluate_model(test, untrained, tmp_path, key[test.name], ref, data)
    assert verdict.earned == 0, (value, key[test.name])
