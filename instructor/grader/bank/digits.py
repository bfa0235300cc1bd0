"""The digits of the model tests: the training split goes into the sandbox, the test split never does.

The grader trains every model it scores on the training split of the embedded digits and measures it on their test
split, in its own process; a job's sandbox is given the training and validation splits only (run.py writes them to
the job's control folder, and the kernel reads them through `DGM_DATA_SOURCE=given`), and the installed copy of the
digits is hidden from it (sandbox.py).
"""
from functools import cache


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
