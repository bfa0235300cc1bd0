"""How short the grader's trainings may be: `python -m instructor.bench.budgets [--tests ModelB ...] [--epochs 1 2 4]`.

Each model test trains its model in the grader's own loop (the GAN's: the notebook's training cell) for the epochs of
its recipe (bank/): the fewer, the faster every submission is graded, and the less the measure tells a right answer
from a wrong one. For each model test and each number of epochs, this trains the model with the reference answers and
with each planted wrong answer of instructor/tests/test_model_training.py (the loss without its KL term tried on all
three VAEs), in this process, one thread, and prints each measure, whether the planted answer would pass the test's
bound around the reference's measure at that budget (as `make key` would set it), and the CPU seconds of the
reference's training (after one untimed epoch). A budget is long enough when no planted answer passes.
"""
import argparse
import contextlib
import io
import re
import time

import torch

from instructor.grader import bank
from instructor.grader.bank.digits import grader_digits
from instructor.grader.reference import Reference
from instructor.tests import test_model_training as planted
from instructor.tests.test_bank import answer_module

PLANTED = {"ModelB": (planted.vae_ascending, planted.vae_without_kl),
           "Model2D": (planted.vae_ascending, planted.vae_without_kl),
           "Model20D": (planted.vae_ascending, planted.vae_without_kl),
           "GeneratorFrechetDistance": (planted.gan_without_generator_update,),
           "HandTrainedClassifier": (planted.sgd_ascending,)}


QUICK_EPOCHS = re.compile(r"\bepochs=pick\(quick=\d+")        # in a notebook's settings cell: its quick epochs


def with_epochs(inputs: dict, epochs: int) -> dict:
    """The inputs of a training of `epochs` epochs: the recipe's number replaced, and the notebook's quick setting in
    the cells a probe runs."""
    cells = [QUICK_EPOCHS.sub(f"epochs=pick(quick={epochs}", cell) for cell in inputs.get("cells", [])]
    return {**inputs, "epochs": epochs, **({"cells": cells} if cells else {})}


def measure(test, module, epochs: int, ref, data) -> tuple:
    """(the measure of the model trained with `module` for `epochs`, the training's CPU seconds)."""
    inputs = with_epochs(test.inputs(None), epochs)
    torch.manual_seed(0)
    started = time.process_time()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):   # the cells' lines
        outputs = test.probe(module, inputs)
    seconds = time.process_time() - started
    return float(test.evaluate(outputs, ref, data)), seconds


def main(argv=None) -> int:
    tests = {t.name: t for t in bank.tests() if isinstance(t, bank.ModelTest)}
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", nargs="+", default=list(PLANTED), choices=list(PLANTED))
    parser.add_argument("--epochs", nargs="+", type=int, default=None, help="default: 1 to the recipe's epochs")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ref, data = Reference(), grader_digits()
    print(f"{'model test':<26} {'epochs':>6} {'reference':>10} {'CPU s':>6}  planted wrong answers: measure (passes?)")
    for name in args.tests:
        test, module = tests[name], answer_module(tests[name].notebook)
        measure(test, module, 1, ref, data)         # untimed: the first training's one-off costs stay out of the table
        for epochs in args.epochs or range(1, test.inputs(None)["epochs"] + 1):
            value, seconds = measure(test, module, epochs, ref, data)
            wrong = []
            for plant in PLANTED[name]:
                try:
                    measured = measure(test, plant(module), epochs, ref, data)[0]
                    verdict = "PASSES" if test.passes(measured, value) else "no"
                    wrong.append(f"{plant.__name__} {measured:.4g} ({verdict})")
                except Exception as error:          # a stub that raises trains nothing: it cannot pass
                    wrong.append(f"{plant.__name__} raised {type(error).__name__} (no)")
            print(f"{name:<26} {epochs:>6} {value:>10.4g} {seconds:>6.1f}  " + "; ".join(wrong), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
