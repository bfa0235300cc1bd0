#!/usr/bin/env bash
# Mutation testing of the answer code (`make mutate`; docs/mutation.md explains it).
#
# mutmut 3 (configured in pyproject.toml's [tool.mutmut]) copies the project into ./mutants, mutates every function of
# every generated module answers/<name>.py and runs the answer tests and the hidden tests against each mutant
# (instructor/tests/answers/ and instructor/tests/test_bank.py). This script prints the surviving mutants and the score,
# and exits non-zero when a mutant survives that docs/mutation.md does not list as equivalent, when a listed one no
# longer is the mutation it describes, or when an answer function carries a decorator (mutmut 3 silently skips
# decorated functions: write `with torch.no_grad():` inside the body instead).
#
# Usage: instructor/mutate.sh [--keep]   Every run starts from nothing (rm -rf mutants) unless --keep, which lets mutmut
#                                        reuse earlier results (faster while iterating; a changed test is not
#                                        always noticed).
# Environment: VENV (default .venv), MUTATE_CHILDREN (parallel mutants, default 1).
# Installs nothing: `make mutate` installs requirements-dev.txt first.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
MUTMUT="$VENV/bin/mutmut"
PYTHON="$VENV/bin/python"
CHILDREN=${MUTATE_CHILDREN:-1}
EQUIVALENTS_DOC=docs/mutation.md

if [ ! -x "$MUTMUT" ]; then
  echo "error: $MUTMUT not found; install it with: $PYTHON -m pip install -r requirements-dev.txt (make mutate does)" >&2
  exit 2
fi
if [ "${1:-}" != "--keep" ]; then
  rm -rf mutants
fi

# The tests' settings; one thread per test process (torch in forked workers, and a small shared machine).
export DGM_MODE=quick DGM_DATA_SOURCE=embedded
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}

start=$(date +%s)
# mutmut redraws a progress line per mutant: keep that in a log (mutants/run.log afterwards), show its end on failure.
log=$(mktemp)
if ! "$MUTMUT" run --max-children "$CHILDREN" > "$log" 2>&1; then
  tail -c 4000 "$log" >&2
  echo "error: mutmut run failed (full log: $log)" >&2
  exit 2
fi
mv "$log" mutants/run.log
elapsed=$(( $(date +%s) - start ))

"$MUTMUT" export-cicd-stats > /dev/null
results=$("$MUTMUT" results)   # every mutant that was not killed, as "    name: status"

echo "mutmut results (every mutant not killed):"
echo "${results:-    (none)}"

"$PYTHON" - "$MUTMUT" "$EQUIVALENTS_DOC" "$elapsed" "$results" <<'PY'
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

mutmut, doc, elapsed, results = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
stats = json.loads(Path("mutants/mutmut-cicd-stats.json").read_text())

# The equivalent mutants: a table between the two markers of docs/mutation.md, one row per mutant:
# | `answers.module.x_function__mutmut_N` | `the mutated line, as mutmut show prints it` | why it cannot change a result |
equivalent = {}
if doc.exists():
    block = re.search(r"<!-- equivalent-mutants:begin -->(.*?)<!-- equivalent-mutants:end -->", doc.read_text(), re.S)
    for row in re.finditer(r"^\|\s*`([\w.]+__mutmut_\d+)`\s*\|\s*`(.+?)`\s*\|", block.group(1) if block else "", re.M):
        equivalent[row.group(1)] = row.group(2)

not_killed = dict(re.findall(r"^\s*(\S+): (.+)$", results, re.M))
failing = ("survived", "no tests", "suspicious", "not checked", "check was interrupted by user")
unexplained, stale = [], []
for name, status in sorted(not_killed.items()):
    if status not in failing:
        continue
    if name not in equivalent:
        unexplained.append((name, status))
        continue
    # a listed name must still be the mutation the table describes: mutant numbers shift when a function changes
    diff = subprocess.run([mutmut, "show", name], capture_output=True, text=True).stdout
    added = [line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    if equivalent[name].strip() not in added:
        stale.append(name)

# mutmut 3 leaves decorated functions (other than staticmethod/classmethod) unmutated: name them rather than skip them
unmutated = []
for module in sorted(Path("answers").glob("*.py")):
    if module.name in ("__init__.py", "export.py"):
        continue
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                not (isinstance(d, ast.Name) and d.id in ("staticmethod", "classmethod")) for d in node.decorator_list):
            unmutated.append(f"{module}:{node.lineno} {node.name}")

tested = stats["total"] - stats["skipped"]
killed = stats["killed"] + stats["timeout"] + stats.get("segfault", 0)
survivors = [name for name, status in not_killed.items() if status in failing]
print(f"\n{len(survivors)} not killed: {len(survivors) - len(unexplained) - len(stale)} listed as equivalent in {doc}, "
      f"{len(unexplained)} unexplained, {len(stale)} listed but changed")
for name, status in unexplained:
    print(f"  UNEXPLAINED {status}: {name}   (see: mutmut show {name})")
for name in stale:
    print(f"  CHANGED (the listed line is not this mutant's any more): {name}")
for where in unmutated:
    print(f"  NOT MUTATED (decorated; use `with torch.no_grad():` in the body instead): {where}")
print(f"killed {killed} of {tested} mutants ({100 * killed / max(tested, 1):.1f}%); "
      f"{tested - len(survivors) - killed} other; mutmut ran {elapsed // 60} min {elapsed % 60} s")
sys.exit(1 if unexplained or stale or unmutated else 0)
PY
