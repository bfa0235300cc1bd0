"""The hidden tests: for each question id, what the grader itself runs on a student's answers (never released).

A function test is a class with three static methods, registered with `@hidden_test(question, points)`:

    inputs(rng) -> dict                fresh inputs, drawn outside the sandbox from the grader's seed for this student
    probe(answers, inputs) -> dict     runs INSIDE the sandbox: calls the student's functions (`answers` is the module
                                       exported from their notebook) and returns plain outputs: tensors, numbers,
                                       strings, lists and dicts. Its source is all of the test that is sent there.
    check(inputs, outputs, ref) -> str | None
                                       outside: None when the answer is right, else what is wrong, in the grader's
                                       words. `ref` holds the solution notebooks' own answer code (reference.py).

A model test trains a model itself and scores it: `@model_test(question, points, rule=..., tolerance=...)` on a
class with

    inputs(rng) -> dict                the training digits (never the test digits) and the training's settings
    probe(answers, inputs) -> dict     runs INSIDE the sandbox: the grader's own training loop, with the student's
                                       functions (the loss, the backward, the update, the GAN's step) plugged in;
                                       returns the trained weights as {"state": {name: tensor}}
    evaluate(outputs, ref, data) -> float
                                       outside: the weights loaded into the grader's own architecture, measured on
                                       test digits that the sandbox never sees

and the value must reach the reference answers' own value in the key (`make key`) within the tolerance. What a
notebook saves, and the student's records, are evidence for the TAs, never points. A model test whose probe trains by
the notebook's own training cell (`notebook_cells`) may name, with `hands_over=`, the checkpoint that cell saves: the
grader lays it where the notebook's run looks, which then loads the model instead of training it again (its settings
and code fingerprint are the notebook's own), so the job trains it once.

The tests of a notebook live in the module of the same name as its answers (bank/kl_divergence.py tests
answers/kl_divergence.py), or in modules that add a suffix to it (bank/vae_latent.py); `tests()` collects them all,
for every notebook that notebooks/ holds (instructor/course_model.py maps the modules to the notebooks, and reads these
declarations for the release and the pages without importing the bank). Other modules (compare.py, stand_ins.py) are
the tests' helpers.
"""
import importlib
import inspect
import pkgutil
import textwrap
from dataclasses import dataclass

from instructor import course_model


class _Probed:
    """What the sandbox receives of a test: its probe, with the plain functions it calls."""

    @property
    def carried(self) -> frozenset:
        """The names of the other questions' answers the probe carries, as stand-ins (shared functions named
        `reference_*` or `*_stand_in`)."""
        return frozenset(f.__name__ for f in self.shared
                         if f.__name__.startswith("reference_") or f.__name__.endswith("_stand_in"))

    @property
    def runs_alone(self) -> bool:
        """True when the probe carries another question's answer: it then runs after the others, in a process and
        folder of its own, beside only the probes that carry exactly the same answers (so none can read more)."""
        return bool(self.carried)

    @property
    def probe_source(self) -> str:
        """The probe as the sandbox receives it: the shared functions, then a plain `def probe(answers, inputs)`."""
        sources = [textwrap.dedent(inspect.getsource(f)) for f in (*self.shared, self.probe)]
        alias = [] if self.probe.__name__ == "probe" else [f"probe = {self.probe.__name__}\n"]   # a shared loop
        return "\n\n".join(["\n".join(line for line in s.split("\n") if not line.startswith("@")) for s in sources]
                           + alias)


@dataclass(frozen=True)
class FunctionTest(_Probed):
    """One hidden test of a student's functions."""
    question: str
    notebook: str
    name: str
    points: float
    description: str
    inputs: object
    probe: object
    check: object
    shared: tuple = ()       # plain functions the probe calls, sent with it into the sandbox


@dataclass(frozen=True)
class ModelTest(_Probed):
    """One model that the grader trains with the student's functions, in the sandbox, and measures outside it."""
    question: str
    notebook: str
    name: str
    points: float
    description: str
    rule: str            # "at_least" or "at_most" the key's value, with the tolerance
    tolerance: str       # "0.05" (absolute) or "5%" (of the key's value)
    inputs: object
    probe: object
    evaluate: object
    shared: tuple = ()
    hands_over: str = ""  # a file the probe saves under the notebook's output folder, for the notebook's run to load

    def bound(self, reference_value: float) -> float:
        """The value a student's model must reach, from the reference run's."""
        text = self.tolerance.strip()
        margin = float(text[:-1]) / 100 * abs(reference_value) if text.endswith("%") else float(text)
        return reference_value - margin if self.rule == "at_least" else reference_value + margin

    def passes(self, value: float, reference_value: float) -> bool:
        bound = self.bound(reference_value)
        return value == value and (value >= bound if self.rule == "at_least" else value <= bound)


def _notebook_of(module_name: str) -> str:
    """The notebook a bank module tests: vae.py and vae_latent.py both test answers/vae.py."""
    notebook = course_model.load().notebook_of_module(module_name)
    if notebook is None:
        raise course_model.CourseError(f"{module_name} holds tests, but no notebook's answer module is named after it")
    return notebook


def hidden_test(question: str, points: float, shared: tuple = ()):
    """Register a class with inputs, probe and check as a function test of `question`; `shared` names plain
    functions (of the bank module, using only torch and math) that its probe calls."""
    def register(cls):
        return FunctionTest(question, _notebook_of(cls.__module__), cls.__name__, float(points),
                            " ".join((inspect.getdoc(cls) or cls.__name__).split()), cls.inputs, cls.probe, cls.check,
                            tuple(shared))
    return register


def model_test(question: str, points: float, *, rule: str, tolerance: str, shared: tuple = (),
               hands_over: str = ""):
    """Register a class with inputs, probe (the training) and evaluate as a model test of `question`."""
    if rule not in ("at_least", "at_most"):
        raise ValueError(f"rule {rule!r}: use 'at_least' or 'at_most'")

    def register(cls):
        return ModelTest(question, _notebook_of(cls.__module__), cls.__name__, float(points),
                         " ".join((inspect.getdoc(cls) or cls.__name__).split()), rule, tolerance, cls.inputs,
                         cls.probe, cls.evaluate, tuple(shared), hands_over)
    return register


def notebook_cells(notebook: str, ids: tuple) -> list:
    """The sources of the notebook's cells with these ids, in that order: given cells, the same in the solution, the
    release and every rebuilt notebook, which a probe may run as the notebook runs them (notebook_cells_run)."""
    import nbformat

    cells = {c.get("id"): c for c in nbformat.read(course_model.ROOT / "notebooks" / f"{notebook}.ipynb", 4).cells}
    missing = [i for i in ids if i not in cells]
    if missing:
        raise course_model.CourseError(f"notebooks/{notebook}.ipynb has no cell {missing[0]!r}, which a model test "
                                       "runs")
    return [cells[i].source for i in ids]


def modules(notebook: str | None = None) -> list:
    """The bank modules that hold tests, in name order; only one notebook's with `notebook`."""
    course = course_model.load()
    names = sorted(i.name for i in pkgutil.iter_modules(__path__))
    return [importlib.import_module(f"{__name__}.{name}") for name in names
            if course.notebook_of_module(name) is not None and notebook in (None, course.notebook_of_module(name))]


def tests(notebook: str | None = None) -> list:
    """Every registered test, in module then definition order; only one notebook's with `notebook`."""
    return [v for module in modules(notebook) for v in vars(module).values() if isinstance(v, FunctionTest | ModelTest)]
