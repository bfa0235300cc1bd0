"""Runs the probes of the hidden tests on a student's answer module: the only grading code that runs in the sandbox.

    python probes.py <job.pt> <outputs folder>

job.pt (written by the grader, read with torch.load(weights_only=True)) holds the module to test, the folder its file
lies in, and for each test its name, the source of its probe and its inputs. For each test this writes
`<name>.started`, then `<name>.pt` with {"outputs": ...} or {"error": ...}. What a probe returns is only data: the
grader checks it outside, against its own reference, so nothing written here can award a point by itself.
This file imports nothing of the grader's: the sandbox sees it, the checks and the reference stay outside.
"""
import ast
import importlib
import importlib.util
import math
import os
import signal
import sys
import traceback
from pathlib import Path

import torch

PER_TEST_SECONDS = 120


class ProbeTimeout(Exception):
    """A probe ran past its time."""


def _alarm(signum, frame):
    raise ProbeTimeout("the test ran out of time")


def plain(value, depth: int = 0):
    """The outputs as data torch.load(weights_only=True) reads back: tensors, numbers, strings, lists, dicts."""
    if depth > 8:
        raise TypeError("outputs nested too deeply")
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone(memory_format=torch.contiguous_format)   # the grader reads only dense tensors
    if value is None:
        return value
    for kind in (bool, int, float, str):        # numpy.float64 and other subclasses, as the built-in value they hold
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, dict):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v, depth + 1) for v in value]
    if hasattr(value, "item") and hasattr(value, "dtype"):       # numpy scalars and arrays
        return torch.as_tensor(value)
    raise TypeError(f"a {type(value).__name__} is not a plain output")


def where_raised(error: BaseException, module_file: str) -> str:
    """'answer' when the innermost frame of the error is in the student's module, else 'elsewhere'."""
    frames = traceback.extract_tb(error.__traceback__)
    inside = [f for f in frames if os.path.abspath(f.filename) == os.path.abspath(module_file)]
    return "answer" if inside else "elsewhere"


def write(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def fresh_torch_state() -> None:
    """PyTorch's process-wide settings as a new process has them, before each test: what an answer switched off
    (gradients, say) or changed (the default dtype, the random state) for itself costs no other test."""
    torch.set_grad_enabled(True)
    torch.set_default_dtype(torch.float32)
    torch.autograd.set_detect_anomaly(False)
    torch.manual_seed(0)


def run_test(module, test: dict) -> dict:
    """{"outputs": ...} or {"error": ..., "where": ...} for one test."""
    namespace = {"torch": torch, "math": math}
    fresh_torch_state()
    try:
        exec(compile(test["source"], f"<probe {test['name']}>", "exec"), namespace)
        signal.alarm(int(test.get("seconds", PER_TEST_SECONDS)))
        try:
            outputs = namespace["probe"](module, test["inputs"])
        finally:
            signal.alarm(0)
        return {"outputs": plain(outputs)}
    except BaseException as error:           # a probe must report, whatever the answer raised (SystemExit too)
        if isinstance(error, KeyboardInterrupt):
            raise
        return {"error": f"{type(error).__name__}: {str(error)[:300]}",
                "where": where_raised(error, getattr(module, "__file__", "") or "")}


def library_state() -> dict:
    """The public functions and classes of the libraries a model test's training loop calls, by identity: builtins,
    torch (its tensors, autograd, nn, functional, optimisers) and helpers, as far as they are imported."""
    import builtins

    names = ["torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "torch.optim", "torch.optim.lr_scheduler",
             "torch.optim.swa_utils", "torch.autograd", "helpers", "helpers.models", "helpers.training", "helpers.data",
             "helpers.runtime", "helpers.measures", "helpers.checkpoints"]
    spaces = {"builtins": vars(builtins), "torch.Tensor": vars(torch.Tensor),
              **{name: vars(sys.modules[name]) for name in names if name in sys.modules}}
    for space in ("torch.nn.Module", "torch.optim.Optimizer", "torch.optim.Adam", "torch.optim.SGD"):
        owner, _, attribute = space.rpartition(".")
        if owner in sys.modules and hasattr(sys.modules[owner], attribute):
            spaces[space] = vars(getattr(sys.modules[owner], attribute))
    models = sys.modules.get("helpers.models")
    for cls in ("VAE", "ConvGenerator", "Discriminator", "Generator"):
        if hasattr(models, cls):
            spaces[f"helpers.models.{cls}"] = vars(getattr(models, cls))
    return {f"{space}.{key}": id(value) for space, members in spaces.items() for key, value in list(members.items())
            if not key.startswith("_") or key in ("__init__", "__call__")}


def settle_libraries() -> None:
    """Let torch make the changes it makes to itself on first use (importing its compiler wraps `manual_seed`, the
    first optimizer of a class wraps that class's `step`), so that `library_state` afterwards sees only the answers'."""
    import torch._dynamo  # noqa: F401

    weight = torch.zeros(1, requires_grad=True)
    for kind in (torch.optim.Adam, torch.optim.SGD):
        optimizer = kind([weight], lr=0.0)
        weight.sum().backward()
        optimizer.step()


def changed_since(before: dict) -> list:
    """The names of `before` that now stand for something else, or for nothing (what an answer patched)."""
    now = library_state()
    return sorted(name for name, identity in before.items() if now.get(name) != identity)


def statement_by_statement(name: str):
    """The answer module, its top-level statements run one at a time: one that raises (or runs past its time) leaves
    its own names undefined and the others run, so an error at import costs only the answers that need that
    statement."""
    spec = importlib.util.find_spec(name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    for node in ast.parse(Path(spec.origin).read_text(), spec.origin).body:
        signal.alarm(PER_TEST_SECONDS)
        try:
            exec(compile(ast.Module([node], []), spec.origin, "exec"), module.__dict__)
        except Exception:                    # the tests that need what it defines say what is missing
            pass
        finally:
            signal.alarm(0)
    return module


def run(job_file: Path, out: Path) -> None:
    job = torch.load(job_file, map_location="cpu", weights_only=True)
    sys.path.insert(0, job["path"])
    signal.signal(signal.SIGALRM, _alarm)
    torch.manual_seed(0)
    if any(test.get("trains") for test in job["tests"]):
        import helpers  # noqa: F401  (its classes and loops are what the grader's training calls)
        import helpers.measures  # noqa: F401  (the notebook cells a model test runs call it: watched from the start)
        import helpers.models  # noqa: F401
        settle_libraries()
    libraries = library_state()
    try:
        module = statement_by_statement(f"answers.{job['module']}")
    except BaseException as error:
        failure = {"error": f"{type(error).__name__}: {str(error)[:300]}", "where": "import"}
        for test in job["tests"]:
            write(out / f"{test['name']}.pt", failure)
        return
    for test in job["tests"]:
        (out / f"{test['name']}.started").touch()
        # a library the answers changed when imported (or in an earlier test) refuses the training before it runs,
        # one changed during the training after it: either way not the grader's training
        patched = changed_since(libraries) if test.get("trains") else []
        result = None if patched else run_test(module, test)
        if test.get("trains") and not patched:
            patched = changed_since(libraries)
        if patched:
            result = {"error": f"LibraryChanged: your answers changed {', '.join(patched[:5])}, which the grader's "
                               "training loop calls: a model test trains with the libraries as installed",
                      "where": "answer"}
        write(out / f"{test['name']}.pt", result)


if __name__ == "__main__":
    run(Path(sys.argv[1]), Path(sys.argv[2]))
