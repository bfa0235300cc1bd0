"""Points from the grader's own measurements: the hidden tests' verdicts and the model evaluations, per question id.

Nothing here runs student code: probes ran in the sandbox and left data (probes.py); the weights of the models the
grader trained there are loaded into its own architectures and evaluated with the reference code on digits the
sandbox never saw.
"""
import contextlib
import hashlib
import math
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from . import probes
from .bank import FunctionTest, ModelTest
from .bank.compare import DETAIL

MAX_OUTPUT_BYTES = 64 * 2**20


@dataclass
class Verdict:
    """The result of one hidden test or model evaluation for one student."""
    question: str
    notebook: str
    test: str
    description: str
    points: float
    earned: float
    message: str            # what is wrong, in the grader's words ('' when right); never the expected values
    detail: str = ""        # the expected values, shown only when the instructor asks


def seed_for(key_version: str, student: str, test: str) -> int:
    """The seed of one test's fresh inputs: fixed for a student and a key, different between students and tests."""
    return int.from_bytes(hashlib.sha256(f"{key_version}/{student}/{test}".encode()).digest()[:8], "little")


def draw_inputs(test: FunctionTest, seed: int) -> dict:
    return test.inputs(torch.Generator().manual_seed(seed))


def verdict(test, earned: bool, message: str = "") -> Verdict:
    shown, _, detail = message.partition(DETAIL)
    return Verdict(test.question, test.notebook, test.name, test.description, test.points,
                   test.points if earned else 0.0, shown.strip(), detail.strip())


def inside(path: Path, folder: Path) -> bool:
    """True when `path` is a regular file that lies in `folder` itself, through no symbolic link: a job may replace
    anything in its folder by a link to a file of the host, so every path it could touch is checked before reading."""
    try:
        lexical = folder.resolve() / Path(path).relative_to(folder)
        return path.is_file() and not path.is_symlink() and path.resolve() == lexical
    except (ValueError, OSError):
        return False


def plain_data(value, limit: int) -> bool:
    """True when `value` is data a check can afford: no shared or cyclic containers, at most 200,000 items and 32
    levels, strings under 1 MB, and tensors whose elements (not only their storage) fit in `limit` bytes."""
    seen, todo, items = set(), [(value, 0)], 0
    while todo:
        item, depth = todo.pop()
        items += 1
        if items > 200_000 or depth > 32:
            return False
        if isinstance(item, torch.Tensor):
            if item.numel() * item.element_size() > limit or not item.is_contiguous():
                return False
        elif isinstance(item, str):
            if len(item) > 2**20:
                return False
        elif isinstance(item, dict | list | tuple):
            if id(item) in seen:
                return False
            seen.add(id(item))
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            todo += [(child, depth + 1) for child in children]
        elif not (item is None or isinstance(item, bool | int | float)):
            return False
    return True


def safe_load(path: Path, folder: Path, limit: int = MAX_OUTPUT_BYTES):
    """A file that a job wrote, read as data: in the job's folder, an uncompressed torch zip of at most `limit`
    bytes, read with weights_only=True, holding plain_data; else None."""
    if not inside(path, folder) or path.stat().st_size > limit:
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
        if any(e.compress_type != zipfile.ZIP_STORED for e in entries) or sum(e.file_size for e in entries) > limit:
            return None                                 # a compressed entry could inflate without bound
        value = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None
    return value if plain_data(value, limit) else None


def read_result(path: Path, folder: Path) -> dict | None:
    """A probe's result file, or None when it is missing or not plain data."""
    result = safe_load(path, folder)
    return result if isinstance(result, dict) else None


def withheld_if_quoting(message: str, probe_source: str, width: int = 24) -> str:
    """The message, unless it quotes the grader's probe (which the sandbox can read while the tests run): a probe's
    code is the grader's, never feedback."""
    flat, code = " ".join(message.split()), " ".join(probe_source.split())
    if any(flat[i:i + width] in code for i in range(0, len(flat) - width + 1, 4)):
        return "(an error whose message quotes the grader's test: not shown)"
    return message


def judge(test: FunctionTest, inputs: dict, result: dict | None, ref) -> Verdict:
    """Check one probe's result against the reference; an error in the answer costs this test only."""
    if result is None:
        return verdict(test, False, "the test did not finish (it timed out, or the process running it died), or "
                                    "what it returned was not plain data")
    if "error" in result:
        where = {"answer": "your code raised", "import": "importing your answers raised"}.get(result.get("where"),
                                                                                           "calling your code raised")
        message = result["error"] if isinstance(result["error"], str) else "an error"
        if "NotImplementedError" in message and "not written yet" in message:
            return verdict(test, False, "not answered (the stub is still there)")
        return verdict(test, False, f"{where} {withheld_if_quoting(message[:200], test.probe_source)}")
    try:
        problem = test.check(inputs, result.get("outputs"), ref)
    except Exception as error:      # outputs of an unexpected form: the answer's fault, never a crash of the grader
        problem = f"the outputs are not of the expected form ({type(error).__name__})"
    return verdict(test, problem is None, problem or "")


def run_in_process(tests: list, module, seed: int, ref, key: dict | None = None) -> list:
    """Probe and judge `tests` on an already imported module, in this process: for the bank's own tests and mutation
    testing (never for student code, which only runs in the sandbox). Model tests are measured against `key`."""
    from .bank.digits import grader_digits

    verdicts = []
    for test in tests:
        inputs = draw_inputs(test, seed)
        sent = torch.load(_roundtrip(inputs), weights_only=True)     # the probe's own copy, as the sandbox's job file
        with _as_in_the_sandbox():
            result = probes.run_test(module, {"name": test.name, "source": test.probe_source, "inputs": sent})
        result = torch.load(_roundtrip(result), weights_only=True)   # exactly what the sandbox would hand back
        result = result if isinstance(result, dict) and plain_data(result, MAX_OUTPUT_BYTES) else None
        if isinstance(test, ModelTest):
            verdicts.append(evaluate_trained(test, result, (key or {}).get(test.name), ref, grader_digits())[0])
        else:
            verdicts.append(judge(test, inputs, result, ref))
    return verdicts


@contextlib.contextmanager
def _as_in_the_sandbox():
    """No Jupyter kernel loaded, as in the sandbox's probe process: an answer that looks for one sees what it would
    see there."""
    kernel = {name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] == "ipykernel"}
    try:
        yield
    finally:
        sys.modules.update(kernel)


def _roundtrip(result: dict):
    import io

    buffer = io.BytesIO()
    torch.save(result, buffer)
    buffer.seek(0)
    return buffer


def evaluate_trained(test: ModelTest, result: dict | None, reference_value: float | None, ref, data) -> tuple:
    """(verdict, value) for one model that the grader trained in the sandbox, measured here on the test digits; the
    key's reference value sets the bound."""
    if result is None:
        return verdict(test, False, "the training did not finish (it timed out, or the process running it died), "
                                    "or what it returned was not plain data"), None
    if "error" in result:
        return judge(test, {}, result, ref), None
    try:
        value = float(test.evaluate(result.get("outputs"), ref, data))
    except Exception as error:
        return verdict(test, False, f"the trained model could not be evaluated ({type(error).__name__}: "
                                    f"{str(error).splitlines()[0][:160] if str(error) else ''})"), None
    if reference_value is None:
        return verdict(test, False, "the key has no reference value for this model: run `make key`"), value
    if not math.isfinite(value) or not test.passes(value, reference_value):
        rule = "at least" if test.rule == "at_least" else "at most"
        return verdict(test, False, f"measured {value:.4g}, {rule} {test.bound(reference_value):.4g} needed"
                                    f"{DETAIL}{reference_value:.4g} for the reference run"), value
    return verdict(test, True), value
