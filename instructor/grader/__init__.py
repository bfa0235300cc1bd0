"""The autograder: runs untrusted submissions in a sandbox and grades them."""
import sys

# First: helpers pins PyTorch's CPU kernels to one instruction-set path before torch is imported (helpers/cpu.py), so
# that the grader's own measurements (a model's Fréchet distance, say) round the same way on every machine.
import helpers  # noqa: F401

# jsonschema, which nbformat imports, compiles 38 grammars of rfc3987-syntax at import time for its "iri" format
# check: 2 s in every grading process. No notebook schema uses that format; without the module jsonschema skips it.
sys.modules.setdefault("rfc3987_syntax", None)
