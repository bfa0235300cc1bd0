"""The autograder: runs untrusted submissions in a sandbox and grades them."""
import sys

# jsonschema, which nbformat imports, compiles 38 grammars of rfc3987-syntax at import time for its "iri" format
# check: 2 s in every grading process. No notebook schema uses that format; without the module jsonschema skips it.
sys.modules.setdefault("rfc3987_syntax", None)
