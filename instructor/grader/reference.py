"""The reference answers the grader checks against: the solution notebooks' own answer code, loaded from notebooks/.

They are exported from the notebooks in memory, never imported from answers/: that package is what mutation testing
mutates and what a student's copy of the repository overwrites, so the reference would move with the code under test.
"""
import re
import sys
import types
from functools import cache
from pathlib import Path

from answers import export

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "reference_answers"


class Reference:
    """Attribute access to the reference modules: `ref.kl_divergence.gaussian_kl`."""

    def __init__(self, notebooks: Path = ROOT / "notebooks"):
        self.notebooks = Path(notebooks)

    def __getattr__(self, name: str) -> types.ModuleType:
        if name.startswith("_"):
            raise AttributeError(name)
        return load(self.notebooks, name)


@cache
def load(notebooks: Path, name: str) -> types.ModuleType:
    """The answer module `name` of the solution notebooks, its own imports of earlier answers resolved the same way."""
    package = sys.modules.setdefault(PACKAGE, types.ModuleType(PACKAGE))
    package.__path__ = []
    matches = sorted(notebooks.glob(f"[0-9][0-9]_{name}.ipynb"))
    if not matches:
        raise AttributeError(f"no solution notebook for answers.{name} in {notebooks}")
    text = export.module_text(matches[0], report=lambda _: None)
    for earlier in dict.fromkeys(re.findall(r"^\s*from answers\.(\w+) import", text, re.M)):  # what it imports
        if earlier != name:
            load(notebooks, earlier)
    text = text.replace("from answers.", f"from {PACKAGE}.")
    module = types.ModuleType(f"{PACKAGE}.{name}")
    module.__file__ = str(matches[0])
    sys.modules[module.__name__] = module
    exec(compile(text, f"<reference {matches[0].name}>", "exec"), module.__dict__)
    setattr(package, name, module)
    return module
