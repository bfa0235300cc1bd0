"""The digits of the model tests: the training split goes into the sandbox, the test split never does.

The grader trains every model it scores on the training split of the embedded digits and measures it on their test
split, in its own process; a job's sandbox is given the training and validation splits only (run.py writes them to
the job's control folder, and the kernel reads them through `DGM_DATA_SOURCE=given`), and the installed copy of the
digits is hidden from it (sandbox.py). The course's digit classifier, given code that notebooks 04 and 06 would train
in every job, is trained once per process on the digits given to the sandbox and laid in the jobs that load it.
"""
import tempfile
from functools import cache
from pathlib import Path

CLASSIFIER = "digit_classifier.pt"             # under a job's checkpoints folder, where notebooks 04 and 06 look
CLASSIFIER_EPOCHS = {"quick": 5, "full": 50}   # their `classifier_epochs` setting, by run mode


@cache
def grader_digits():
    """The embedded digits with all three splits: for the grader's own process only."""
    from helpers.data import load_mnist

    return load_mnist(source="embedded", device="cpu", announce=False)


def given_to_the_sandbox() -> dict:
    """What a job's sandbox may read of the digits: training and validation splits; the validation split stands in
    for the test split, which stays with the grader."""
    data = grader_digits()
    return {"train_x": data.train_x, "train_y": data.train_y, "val_x": data.val_x, "val_y": data.val_y,
            "test_x": data.val_x, "test_y": data.val_y}


@cache
def classifier_checkpoint(mode: str) -> bytes:
    """The course's digit classifier (given code, `helpers.measures.train_classifier`) trained on the digits given to
    the sandbox with the notebooks' settings for `mode`, as its checkpoint file. Laid in the checkpoints folder of
    every job whose notebook names the file, it is what notebooks 04 and 06 load instead of training it again in each
    job (a process trains it on its first such job): it was trained under their settings, so
    `helpers.training.trained` takes it as their own training (a notebook whose settings differ trains its own, and
    says so)."""
    import torch

    from helpers.data import MNIST
    from helpers.measures import train_classifier

    splits = given_to_the_sandbox()
    data = MNIST("given", "the digits given to the sandbox",
                 *(splits[name] for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)                   # as a job trains (one thread): the same classifier on every worker
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / CLASSIFIER
            train_classifier(data, epochs=CLASSIFIER_EPOCHS[mode], checkpoint=path)
            return path.read_bytes()
    finally:
        torch.set_num_threads(threads)
