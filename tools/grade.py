"""The answer key and the autograder: `make key` and `make grade SUBMISSIONS=<dir>` (docs/instructors.md).

grading/points.csv is the grading scheme, written by hand: one row per criterion (a question id, the recorded field
graded, the rule, its tolerance and its points). `make key` runs the reference notebooks in quick settings and writes
grading/key.json: every criterion with its reference value and bounds, for quick grading (from that run) and for full
grading (from the committed results/). `make grade` runs every submitted notebook in a fresh kernel in its own
temporary directory (quick settings unless --full), one make target per notebook so that `make grade -j 2` runs two
at once, reads the records each notebook wrote, and scores them against the key into grades/.

Subcommands: key, grade, check-key; execute and run-one are internal (grade.mk and the sandbox call them).
"""
import argparse
import csv
import datetime
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRADING = ROOT / "grading"
KEY = GRADING / "key.json"
POINTS = GRADING / "points.csv"
QUESTIONS = ROOT / "QUESTIONS.md"
MAKEFILE = ROOT / "tools" / "grade.mk"
NOTEBOOK_PATTERN = re.compile(r"^\d\d_\w+$")
SLUG = re.compile(r"[^A-Za-z0-9._-]")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
RULES = ("close", "band", "at_least", "at_most", "small", "equal", "present")
MODES = ("quick", "full")
MAX_RECORDS_BYTES = 20_000_000
MAX_NOTEBOOK_BYTES = 100_000_000
DEFAULT_CELL_TIMEOUT = 600        # seconds per cell
DEFAULT_NOTEBOOK_TIMEOUT = 1800   # seconds per notebook, all cells together


# --------------------------------------------------------------------------------------------------------------------
# The scheme (points.csv) and the key (key.json)
# --------------------------------------------------------------------------------------------------------------------

def question_index(path: Path = QUESTIONS) -> list:
    """(id, notebook) for each row of QUESTIONS.md's table, in order."""
    return re.findall(r"^\| (\w[\w-]*) \| .+ \| (\d\d_\w+) \|$", path.read_text(), re.M)


def read_points(path: Path = POINTS) -> list:
    """The criteria of grading/points.csv, checked: known rule, a tolerance where the rule needs one, points >= 0."""
    rows = []
    with open(path, newline="") as f:
        for line, row in enumerate(csv.DictReader(row for row in f if not row.startswith("#")), start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            where = f"{path.name}, row {line} ({row.get('notebook')} {row.get('id')})"
            if row["rule"] not in RULES:
                raise ValueError(f"{where}: rule {row['rule']!r} is not one of {', '.join(RULES)}")
            if row["rule"] not in ("equal", "present"):
                margin(row["tolerance"], 1.0)  # raises on a malformed tolerance
            if row["rule"] != "present" and not row["field"]:
                raise ValueError(f"{where}: rule {row['rule']} needs a field")
            if not NOTEBOOK_PATTERN.match(row["notebook"]):
                raise ValueError(f"{where}: {row['notebook']!r} is not a notebook name like 03_kl_divergence")
            row["points"] = float(row["points"])
            if row["points"] < 0:
                raise ValueError(f"{where}: negative points")
            rows.append(row)
    return rows


def margin(tolerance: str, reference) -> float:
    """A tolerance as a number: '0.5' is absolute, '5%' is relative to |reference|."""
    text = str(tolerance).strip()
    if text.endswith("%"):
        return float(text[:-1]) / 100 * abs(reference)
    value = float(text)
    if not value >= 0:
        raise ValueError(f"tolerance {tolerance!r} must be a number >= 0 or a percentage")
    return value


def as_number(value):
    """JSON leaves as floats: record() spells infinities "inf" and "-inf"; booleans are not numbers."""
    if isinstance(value, bool):
        raise TypeError("a boolean, not a number")
    if isinstance(value, int | float):
        return float(value)
    if value in ("inf", "-inf"):
        return float(value)
    raise TypeError(f"{type(value).__name__} {str(value)[:40]!r}, not a number")


def get_field(record, field: str):
    """The value at a '/'-separated path in one id's record; a segment '{name}' is replaced by the value of the record's
    field `name` (e.g. 'frechet_by_epoch/{epochs}', the last epoch whatever the mode); list indices may be negative."""
    value = record
    for segment in field.split("/"):
        segment = re.sub(r"\{([^}]+)\}", lambda m: str(get_field(record, m.group(1))), segment)
        if isinstance(value, dict):
            if segment not in value:
                raise KeyError(f"no field {field!r}")
            value = value[segment]
        elif isinstance(value, list):
            try:
                value = value[int(segment)]
            except (ValueError, IndexError):
                raise KeyError(f"no field {field!r}") from None
        else:
            raise KeyError(f"no field {field!r}")
    return value


def bounds(rule: str, tolerance: str, reference) -> dict:
    """The key's entry for one criterion and one mode: the reference and the interval (elementwise for lists)."""
    if rule == "present":
        return {"reference": None}
    if rule == "equal":
        return {"reference": reference}
    if isinstance(reference, list):
        parts = [bounds(rule, tolerance, r) for r in reference]
        return {"reference": reference, "lo": [p["lo"] for p in parts], "hi": [p["hi"] for p in parts]}
    ref = as_number(reference)
    if rule == "small":
        m = margin(tolerance, 1.0)
        return {"reference": reference, "lo": -m, "hi": m}
    if not math.isfinite(ref):
        return {"reference": reference, "lo": ref, "hi": ref}
    m = margin(tolerance, ref)
    if rule == "close":
        m = m * max(1.0, abs(ref))
    lo = ref - m if rule in ("close", "band", "at_least") else None
    hi = ref + m if rule in ("close", "band", "at_most") else None
    return {"reference": reference, "lo": lo, "hi": hi}


def column_names(criteria: list) -> dict:
    """(notebook, id) -> gradebook column: the id, or id@NN when two notebooks record the same id (A2, N)."""
    notebooks_of = {}
    for c in criteria:
        notebooks_of.setdefault(c["id"], set()).add(c["notebook"])
    return {(c["notebook"], c["id"]): c["id"] if len(notebooks_of[c["id"]]) == 1 else f"{c['id']}@{c['notebook'][:2]}"
            for c in criteria}


def build_key(points: list, quick_records: dict, full_records: dict) -> dict:
    """The key: every criterion of the scheme with its quick and full reference. A criterion the quick reference does
    not record is an error (quick settings are the default); a full one may be missing until `make run`."""
    index = set(question_index())
    problems, criteria = [], []
    columns = column_names(points)
    for row in points:
        if (row["id"], row["notebook"]) not in index:
            problems.append(f"{row['notebook']} {row['id']}: not a question of QUESTIONS.md for that notebook")
            continue
        entry = {k: row[k] for k in ("notebook", "id", "field", "rule", "tolerance", "note")}
        entry["points"] = row["points"]
        entry["column"] = columns[(row["notebook"], row["id"])]
        for mode, records in (("quick", quick_records), ("full", full_records)):
            record = records.get(row["notebook"], {}).get(row["id"])
            try:
                if record is None:
                    raise KeyError(f"no record {row['id']!r} in {row['notebook']}")
                reference = get_field(record, row["field"]) if row["rule"] != "present" else None
                entry[mode] = bounds(row["rule"], row["tolerance"], reference)
                if row["rule"] != "present":
                    verdict, _ = judge(entry, mode, {row["id"]: record})
                    if verdict != "pass":
                        raise ValueError(f"the reference itself fails its criterion ({verdict})")
            except (KeyError, TypeError, ValueError) as error:
                entry[mode] = {"unavailable": str(error).strip("'\"")}
                if mode == "quick":
                    problems.append(f"{row['notebook']} {row['id']} {row['field']}: {entry[mode]['unavailable']}")
        criteria.append(entry)
    if problems:
        raise SystemExit("grading/points.csv does not fit the reference records:\n  " + "\n  ".join(problems)
                         + "\nFix grading/points.csv (or the notebooks), then run `make key` again.")
    recorded = {(i, nb) for nb, records in quick_records.items() for i in records}
    keyed = {(c["id"], c["notebook"]) for c in criteria}
    unkeyed = sorted((nb, i) for i, nb in index if (i, nb) in recorded and (i, nb) not in keyed)
    return {
        "about": "Generated by `make key` (tools/grade.py key) from grading/points.csv and the reference notebooks' "
                 "records; do not edit by hand. 'quick': the reference run in quick settings (the default grading); "
                 "'full': results/*.json of the committed full run.",
        "data_source": "embedded",
        "notebooks": sorted({c["notebook"] for c in criteria}),
        "total_points": sum(c["points"] for c in criteria),
        "ungraded_ids": [f"{nb} {i}" for nb, i in unkeyed],
        "criteria": criteria,
    }


def load_key(path: Path = KEY) -> dict:
    try:
        key = json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"{path} is missing: run `make key`.") from None
    if not key.get("criteria"):
        raise SystemExit(f"{path} holds no criteria: run `make key`.")
    return key


def judge(criterion: dict, mode: str, records: dict | None) -> tuple:
    """(verdict, got): verdict is 'pass', 'fail' or 'missing' (with why) for one criterion against one notebook's
    records."""
    if records is None or criterion["id"] not in records:
        return "missing", None
    record = records[criterion["id"]]
    if criterion["rule"] == "present":
        ok = isinstance(record, dict) and bool(record)
        return ("pass" if ok else "fail"), ("recorded" if ok else f"malformed: {str(record)[:60]}")
    try:
        got = get_field(record, criterion["field"])
    except KeyError:
        return "missing", None
    expected = criterion.get(mode, {})
    if "unavailable" in expected:
        raise SystemExit(f"the key has no {mode} reference for {criterion['notebook']} {criterion['id']} "
                         f"{criterion['field']} ({expected['unavailable']}): run `make key`"
                         + (" after `make run`" if mode == "full" else ""))
    if criterion["rule"] == "equal":
        return ("pass" if normalise(got) == normalise(expected["reference"]) else "fail"), got
    try:
        ok = within(got, expected["lo"], expected["hi"])
    except (TypeError, ValueError):
        return "fail", got
    return ("pass" if ok else "fail"), got


def normalise(value):
    if isinstance(value, list):
        return [normalise(v) for v in value]
    try:
        return as_number(value)
    except TypeError:
        return value


def within(got, lo, hi) -> bool:
    if isinstance(lo, list) or isinstance(hi, list):
        size = len(lo if isinstance(lo, list) else hi)
        if not isinstance(got, list) or len(got) != size:
            raise ValueError("not a list of the reference's length")
        los = lo if isinstance(lo, list) else [lo] * size
        his = hi if isinstance(hi, list) else [hi] * size
        return all(within(g, a, b) for g, a, b in zip(got, los, his))
    value = as_number(got)
    if math.isnan(value):
        return False
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def describe_expected(criterion: dict, mode: str) -> str:
    e = criterion.get(mode, {})
    rule = criterion["rule"]
    if rule == "present":
        return "recorded, non-empty"
    if "unavailable" in e:
        return "(no reference)"
    if rule == "equal":
        return f"= {short(e['reference'])}"
    lo, hi = e.get("lo"), e.get("hi")
    each = "each " if isinstance(lo, list) or isinstance(hi, list) else ""
    if rule == "small":
        return f"|x| <= {criterion['tolerance']}"
    if rule == "close":
        if each:
            return f"each {short(e['reference'])} within {criterion['tolerance']} x max(1, |ref|)"
        return f"{short(e['reference'])} +- {(hi - lo) / 2:.2g}"
    if rule == "band":
        return f"{each}{short(lo)} to {short(hi)}"
    if rule == "at_least":
        return f"{each}>= {short(lo)}"
    return f"{each}<= {short(hi)}"


def short(value) -> str:
    if isinstance(value, list):
        inner = ", ".join(short(v) for v in value[:6])
        return f"[{inner}{', ...' if len(value) > 6 else ''}]"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------------------------------------------------
# Running one notebook of one submission (the untrusted part)
# --------------------------------------------------------------------------------------------------------------------

SANDBOX_SCRIPT = r"""set -e
T="$1"; shift
n="$1"; shift
hidden=""
while [ "$n" -gt 0 ]; do hidden="$hidden
$1"; shift; n=$((n - 1)); done
mount --bind "$T" "$T"
awk '{print $5}' /proc/self/mountinfo | sort -u | while read -r m; do
  case "$m" in "$T"|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue;; esac
  mount -o remount,bind,ro "$m" 2>/dev/null || echo "sandbox: could not make $m read-only" >&2
done
printf '%s\n' "$hidden" | while read -r h; do
  if [ -n "$h" ] && [ -d "$h" ]; then mount -t tmpfs -o ro,size=4k,mode=0555 hidden "$h"; fi
done
if [ -d /dev/shm ]; then mount -t tmpfs -o size=2g tmpfs /dev/shm; fi
exec setpriv --no-new-privs --inh-caps=-all --bounding-set=-all -- "$@"
"""


def hidden_paths(extra: list) -> list:
    """What a submission must not read while it runs: the key, the reference notebooks and answers, the committed
    results and checkpoints, the release and site builds, plus `extra` (grades/, the other submissions, the grader's
    scratch space). Each is covered by an empty read-only folder inside the sandbox."""
    names = ["grading", "notebooks", "answers", "results", "checkpoints", ".quick", "release", "site", "grades"]
    return [str(ROOT / name) for name in names] + [str(p) for p in extra]


def sandbox_prefix(writable: Path, hidden: list = ()) -> list:
    """The command that runs argv in the sandbox: new mount, PID and network namespaces (a user namespace too when not
    root); every mount read-only except `writable`; the `hidden` folders covered by empty ones; a private /dev/shm;
    no capabilities; all its processes killed when it ends."""
    base = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc", "--net",
            "--propagation", "private"]
    if os.geteuid() != 0:
        base.insert(1, "--map-root-user")
    writable = Path(writable).resolve()
    hidden = [h for h in dict.fromkeys(str(Path(h).resolve()) for h in hidden)
              if Path(h) != writable and Path(h) not in writable.parents]
    return base + ["sh", "-c", SANDBOX_SCRIPT, "sandbox", str(writable), str(len(hidden)), *hidden]


def sandbox_probe(protected: list, hidden: list) -> str | None:
    """None when the sandbox works here (it can write its own folder, none of `protected`, and sees nothing of
    `hidden`), else why not."""
    if not shutil.which("unshare") or not shutil.which("setpriv"):
        return "unshare or setpriv (util-linux) is not installed"
    with tempfile.TemporaryDirectory(prefix="dgm-sandbox-probe-") as tmp:
        check = ("import os, sys\nopen(os.path.join(sys.argv[1], 'ok'), 'w').close()\n"
                 "n = int(sys.argv[2]); protected, hidden = sys.argv[3:3 + n], sys.argv[3 + n:]\n"
                 "for p in protected:\n"
                 "    try:\n        open(os.path.join(p, '.sandbox-probe'), 'w').close()\n"
                 "    except OSError:\n        continue\n"
                 "    os.remove(os.path.join(p, '.sandbox-probe')); sys.exit('writable: ' + p)\n"
                 "for p in hidden:\n"
                 "    if os.path.isdir(p) and os.listdir(p):\n        sys.exit('visible: ' + p)\n")
        try:
            result = subprocess.run(sandbox_prefix(Path(tmp), hidden)
                                    + [sys.executable, "-c", check, tmp, str(len(protected)), *map(str, protected),
                                       *map(str, hidden)],
                                    capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            return str(error)
        if result.returncode != 0 or not (Path(tmp) / "ok").exists():
            return (result.stderr.strip() or f"exit status {result.returncode}").splitlines()[-1]
    return None


def export_answers(notebooks: list, answers_dir: Path) -> dict:
    """The student's own answer modules (answers/<name>.py), exported from their notebooks with the project's
    exporter; a notebook that cannot be exported is skipped (a later notebook importing it fails). Returns problems."""
    sys.path.insert(0, str(ROOT))
    from answers import export  # noqa: PLC0415 (the grader's exporter, pure parsing)

    answers_dir.mkdir(parents=True)
    shutil.copy(ROOT / "answers" / "__init__.py", answers_dir / "__init__.py")
    problems = {}
    for notebook in notebooks:
        try:
            text = export.module_text(notebook)
        except Exception as error:  # a student's notebook: invalid JSON, a syntax error in an answer cell
            problems[notebook.stem] = f"answers not exported: {type(error).__name__}: {str(error)[:200]}"
            continue
        if text is not None:
            (answers_dir / f"{export.module_name(notebook)}.py").write_text(text)
    return problems


SKIPPED_PARTS = {"executed", "logs", "__pycache__"}   # what grade() rewrites anyway, and caches


def owned_files(roots: list) -> list:
    """The files under `roots` (files or folders) that the grader owns, scratch space left out."""
    files = []
    for root in map(Path, roots):
        if root.is_file():
            files.append(root)
        elif root.is_dir():
            files += [p for p in sorted(root.rglob("*"))
                      if p.is_file() and not SKIPPED_PARTS & set(p.relative_to(root).parts)]
    return files


def manifest(roots: list) -> dict:
    """sha256 of every file the grader owns under `roots`, to notice a change made while a submission ran."""
    digests = {}
    for path in owned_files(roots):
        try:
            digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            digests[str(path)] = "unreadable"
    return digests


def find_submitted(folder: Path, stem: str) -> Path | None:
    """A student's notebook, named as released: <folder>/<stem>.ipynb or <folder>/notebooks/<stem>.ipynb."""
    for candidate in (folder / f"{stem}.ipynb", folder / "notebooks" / f"{stem}.ipynb"):
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
    return None


def kernel_environment(tmp: Path, settings: dict, ipc: bool) -> dict:
    """The kernel's environment: quick (or full) settings, records and checkpoints in tmp/out, the student's answers
    first on the path, then the grader's helpers; home, caches and temporary files inside tmp."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DGM_", "MAKE", "MFLAGS", "JUPYTER_", "PYTEST", "COV_", "PYTHON"))}
    if os.environ.get("DGM_DATA"):
        env["DGM_DATA"] = os.environ["DGM_DATA"]
    for name in ("home", "tmp", "runtime", "cache", "mpl", "ipython"):
        (tmp / name).mkdir(exist_ok=True)
    env.update({
        "DGM_MODE": settings["mode"], "DGM_OUTPUT": str(tmp / "out"), "DGM_PLAIN_PROGRESS": "1",
        "PYTHONPATH": os.pathsep.join([str(tmp / "lib"), str(ROOT)]), "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": str(tmp / "home"), "TMPDIR": str(tmp / "tmp"), "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "XDG_CACHE_HOME": str(tmp / "cache"), "MPLCONFIGDIR": str(tmp / "mpl"), "IPYTHONDIR": str(tmp / "ipython"),
        "DGM_GRADE_IPC": "1" if ipc else "",
    })
    if settings.get("data_source"):
        env["DGM_DATA_SOURCE"] = settings["data_source"]
    if settings.get("threads"):
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(settings["threads"])
    return env


def run_one(tmp: Path, stem: str, cell_timeout: float, notebook_timeout: float) -> dict:
    """Inside the sandbox: execute tmp/work/<stem>.ipynb in a fresh kernel (cwd tmp/work), stop at the first error,
    time out a cell after cell_timeout and the notebook after notebook_timeout; write tmp/status.json and
    tmp/executed.ipynb."""
    import nbformat
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = tmp / "work" / f"{stem}.ipynb"
    status = {"status": "ok", "message": "", "cell": None}
    start = time.monotonic()
    deadline = start + notebook_timeout
    current = {"index": None}
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as error:
        status.update(status="invalid", message=f"not a readable notebook: {type(error).__name__}: {error}"[:300])
        nb = None
    if nb is not None:
        ipc = os.environ.get("DGM_GRADE_IPC") == "1"
        km = AsyncKernelManager(kernel_name="python3", **({"transport": "ipc", "ip": str(tmp / "runtime" / "kernel")}
                                                          if ipc else {}))

        def on_cell_start(cell, cell_index):
            current["index"] = cell_index

        def timeout_for(cell):
            return max(1, int(min(cell_timeout, deadline - time.monotonic())))

        client = NotebookClient(nb, km=km, timeout_func=timeout_for, startup_timeout=120, allow_errors=False,
                                shutdown_kernel="immediate", record_timing=False, on_cell_start=on_cell_start,
                                resources={"metadata": {"path": str(tmp / "work")}})
        try:
            client.execute()
        except CellTimeoutError:
            total = time.monotonic() >= deadline - 1
            limit = f"the notebook ran past its limit of {notebook_timeout:.0f} s" if total else \
                f"a cell ran past its limit of {cell_timeout:.0f} s"
            status.update(status="timeout", message=limit)
        except CellExecutionError as error:
            lines = [ln for ln in ANSI.sub("", str(error)).splitlines() if ln.strip()]
            status.update(status="error", message=(lines[-1] if lines else "error")[:300])
        except DeadKernelError as error:
            status.update(status="crash", message=f"the kernel died: {error}"[:300])
        except Exception as error:
            status.update(status="crash", message=f"{type(error).__name__}: {error}"[:300])
        status["cell"] = current["index"] if status["status"] != "ok" else None
        try:
            nbformat.write(nb, tmp / "executed.ipynb")
        except Exception:
            pass
    status["seconds"] = round(time.monotonic() - start, 1)
    (tmp / "status.json").write_text(json.dumps(status))
    return status


def descendants(pid: int) -> list:
    """The process ids below `pid`, from /proc (children first found, then theirs)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def kill_tree(pid: int) -> None:
    for target in [*descendants(pid), pid]:
        try:
            os.kill(target, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def read_json(path: Path, limit: int):
    if not path.is_file() or path.is_symlink() or path.stat().st_size > limit:
        return None
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return None


def execute(plan_path: Path, job: str) -> None:
    """One make target of grade.mk: one notebook of one submission, in a fresh temporary directory, through the
    sandbox when the plan says so; writes <work>/<student>/<notebook>.json (and the executed copy) atomically."""
    plan = json.loads(plan_path.read_text())
    slug, stem = job.split("/")
    folder = Path(plan["students"][slug])
    settings = plan["settings"]
    work = Path(plan["work"])
    protected = plan["protected"]
    result = {"student": slug, "notebook": stem, "status": "missing", "message": "not submitted", "records": None}
    source = find_submitted(folder, stem)
    before = manifest(protected)
    if source is not None:
        tmp = Path(tempfile.mkdtemp(prefix=f"dgm-grade-{slug}-{stem}-"))
        try:
            (tmp / "work").mkdir()
            (tmp / "out").mkdir()
            shutil.copyfile(source, tmp / "work" / f"{stem}.ipynb")   # the submitted file is only ever read
            submitted = [p for p in (find_submitted(folder, s) for s in plan["all_notebooks"]) if p is not None]
            problems = export_answers(submitted, tmp / "lib" / "answers")
            sandboxed = plan["sandbox"] == "unshare"
            env = kernel_environment(tmp, settings, ipc=sandboxed)
            inner = [sys.executable, str(Path(__file__).resolve()), "run-one", str(tmp), stem,
                     str(settings["cell_timeout"]), str(settings["notebook_timeout"])]
            argv = sandbox_prefix(tmp, plan["hidden"]) + inner if sandboxed else inner
            hard_limit = settings["notebook_timeout"] + 180
            process = subprocess.Popen(argv, env=env, cwd=tmp / "work", stdin=subprocess.DEVNULL,
                                       start_new_session=True)
            try:
                process.wait(timeout=hard_limit)
            except subprocess.TimeoutExpired:
                pass
            kill_tree(process.pid)    # whatever is left of it (a kernel survives its parent for a while)
            process.wait()
            status = read_json(tmp / "status.json", 100_000)
            if not isinstance(status, dict) or status.get("status") not in ("ok", "error", "timeout", "crash",
                                                                             "invalid"):
                status = {"status": "crash", "message": f"the run ended without a status (exit {process.returncode})"}
            records = read_json(tmp / "out" / "results" / f"{stem}.json", MAX_RECORDS_BYTES)
            result.update(status=status["status"], message=str(status.get("message", ""))[:300],
                          cell=status.get("cell"), seconds=status.get("seconds"),
                          records=records if isinstance(records, dict) else None)
            if stem in problems:
                result["message"] = (result["message"] + "; " if result["message"] else "") + problems[stem]
            executed = tmp / "executed.ipynb"
            if executed.is_file() and not executed.is_symlink() and executed.stat().st_size < MAX_NOTEBOOK_BYTES:
                shutil.copyfile(executed, work / slug / f"{stem}.ipynb.part")
                os.replace(work / slug / f"{stem}.ipynb.part", work / slug / f"{stem}.ipynb")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    after = manifest(protected)
    result["changed_grader_files"] = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    target = work / slug / f"{stem}.json"
    target.with_suffix(".part").write_text(json.dumps(result))
    os.replace(target.with_suffix(".part"), target)


# --------------------------------------------------------------------------------------------------------------------
# Grading a class: plan, fan out with make, verify what the grader owns, score, write grades/
# --------------------------------------------------------------------------------------------------------------------

def jobs_from_make() -> int | None:
    """-j N of an enclosing `make grade -j N` (MAKEFLAGS holds ' -j2 --jobserver-auth=...'); None when absent."""
    match = re.search(r"(?:^|\s)-j(\d*)(?:\s|$)", " " + os.environ.get("MAKEFLAGS", "") + " ")
    if not match:
        return None
    return int(match.group(1)) if match.group(1) else os.cpu_count() or 1


def snapshot(roots: list) -> dict:
    """The bytes of every file the grader owns, kept in memory to restore after the submissions have run."""
    return {path: path.read_bytes() for path in owned_files(roots)}


def restore(kept: dict, roots: list, removable: list) -> list:
    """Put back every file of the snapshot that changed or went missing, remove files that appeared under `removable`
    (the key's folder, grades/), report files that appeared elsewhere under `roots`; returns what was wrong."""
    damage = []
    for path, data in kept.items():
        try:
            same = path.is_file() and not path.is_symlink() and path.read_bytes() == data
        except OSError:
            same = False
        if not same:
            damage.append(f"{path} was {'changed' if path.exists() or path.is_symlink() else 'deleted'}: restored")
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    for path in owned_files(roots):
        if path in kept:
            continue
        if any(Path(r) == path or Path(r) in path.parents for r in removable):
            damage.append(f"{path} appeared: removed")
            path.unlink()
        else:
            damage.append(f"{path} appeared (left in place)")
    return damage


def changed(kept: dict, roots: list) -> list:
    """What restore() would put back or remove, only reported."""
    lines = [f"{path} changed during grading (not restored: the sandbox was on)" for path, data in kept.items()
             if not path.is_file() or path.read_bytes() != data]
    return lines + [f"{path} appeared during grading" for path in owned_files(roots) if path not in kept]


def discover(submissions: Path) -> dict:
    """slug -> folder for each student's folder in `submissions` (slugs are safe make target names)."""
    students = {}
    for folder in sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith(".")):
        slug = SLUG.sub("_", folder.name)
        while slug in students:
            slug += "_"
        students[slug] = str(folder.resolve())
    return students


def run_class(students: dict, notebooks: list, work: Path, settings: dict, jobs: int, sandbox: str,
              protected: list, hidden: list) -> dict:
    """Execute every submitted notebook through grade.mk (make -j jobs -k), one target each; slug -> stem -> result."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    targets = []
    for slug, folder in students.items():
        (work / slug).mkdir()
        targets += [f"{slug}/{stem}" for stem in notebooks if find_submitted(Path(folder), stem) is not None]
    plan = {"students": students, "all_notebooks": notebooks, "settings": settings, "work": str(work),
            "sandbox": sandbox, "protected": [str(p) for p in protected], "hidden": hidden}
    (work / "plan.json").write_text(json.dumps(plan, indent=1))
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES")}
    command = ["make", "--no-print-directory", "-k", "-j", str(jobs), "-f", str(MAKEFILE), f"WORK={work}",
               f"PYTHON={sys.executable}", f"GRADER={Path(__file__).resolve()}", "TARGETS=" + " ".join(targets)]
    if targets:
        subprocess.run(command, env=env, cwd=ROOT, check=False)
    results = {}
    for slug in students:
        results[slug] = {}
        for stem in notebooks:
            result = read_json(work / slug / f"{stem}.json", MAX_RECORDS_BYTES + 1_000_000)
            if f"{slug}/{stem}" not in targets:
                result = {"status": "missing", "message": "", "records": None}
            elif not isinstance(result, dict):
                result = {"status": "crash", "message": "the grader's worker left no result (see its .log)",
                          "records": None}
            results[slug][stem] = result
    return results


def score(key: dict, mode: str, results: dict) -> dict:
    """student -> {'criteria': [...], 'columns': {column: points}, 'total': points}."""
    columns = list(dict.fromkeys(c["column"] for c in key["criteria"]))
    graded = {}
    for student, notebooks in results.items():
        rows, by_column = [], dict.fromkeys(columns, 0.0)
        for c in key["criteria"]:
            run = notebooks.get(c["notebook"], {"status": "missing", "message": "not submitted", "records": None})
            verdict, got = judge(c, mode, run.get("records"))
            points = c["points"] if verdict == "pass" else 0.0
            by_column[c["column"]] += points
            why = ""
            if verdict == "missing":
                why = ("not submitted" if run["status"] == "missing" else
                       f"not recorded: {c['id']} was never reached" if run["status"] != "ok" else
                       "not recorded by the notebook" if run.get("records") is None or c["id"] not in run["records"]
                       else f"field {c['field']} not recorded")
            rows.append({"id": c["id"], "column": c["column"], "notebook": c["notebook"], "field": c["field"],
                         "rule": c["rule"], "expected": describe_expected(c, mode),
                         "got": "" if got is None else short(got), "result": verdict, "why": why,
                         "points": points, "max": c["points"]})
        graded[student] = {"criteria": rows, "columns": by_column, "total": sum(by_column.values())}
    return graded


def number(x: float) -> str:
    return f"{x:g}"


def feedback_text(student: str, folder: str, graded: dict, runs: dict, key: dict, mode: str, when: str) -> str:
    lines = [f"# Feedback for {student}", "",
             f"Graded {when} in {mode} settings (DGM_MODE={mode}) from `{folder}`: "
             f"**{number(graded['total'])} / {number(key['total_points'])} points**.", "",
             "## Notebooks", "", "| notebook | run | seconds | note |", "|---|---|---|---|"]
    labels = {"ok": "completed", "error": "stopped by an error", "timeout": "timed out", "crash": "crashed",
              "invalid": "unreadable", "missing": "not submitted"}
    for stem, run in runs.items():
        cell = f"cell {run['cell']}: " if run.get("cell") is not None else ""
        note = (cell + run.get("message", "")).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {stem} | {labels.get(run['status'], run['status'])} | {run.get('seconds') or ''} | {note} |")
    lines += ["", "## Questions", "", "| id | notebook | field | expected | got | result | points |",
              "|---|---|---|---|---|---|---|"]
    for r in graded["criteria"]:
        result = r["result"] + (f" ({r['why']})" if r["why"] else "")
        cells = [r["id"], r["notebook"], r["field"] or "(the record)", r["expected"], r["got"], result,
                 f"{number(r['points'])} / {number(r['max'])}"]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    part.write_text(text)
    os.replace(part, path)


def grade(submissions: Path, grades: Path, jobs: int, mode: str, cell_timeout: float, notebook_timeout: float,
          sandbox_choice: str, data_source: str | None) -> int:
    submissions, grades = submissions.resolve(), grades.resolve()
    if not submissions.is_dir():
        raise SystemExit(f"SUBMISSIONS={submissions} is not a folder (one folder per student with their notebooks)")
    key = load_key()
    students = discover(submissions)
    if not students:
        raise SystemExit(f"{submissions} holds no student folders")
    grades.mkdir(parents=True, exist_ok=True)
    owned = [GRADING, ROOT / "notebooks", ROOT / "tools", ROOT / "helpers", ROOT / "answers", grades]
    kept = snapshot(owned)                                   # everything the grader owns, in memory
    hidden = hidden_paths([grades, submissions])
    sandbox = choose_sandbox(sandbox_choice, [ROOT, grades, submissions], hidden)
    settings = {"mode": mode, "cell_timeout": cell_timeout, "notebook_timeout": notebook_timeout,
                "data_source": data_source, "threads": max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None}
    print(f"grading {len(students)} submission(s) in {submissions} ({mode} settings, {jobs} at a time, "
          f"sandbox: {sandbox}; limits {cell_timeout:g} s per cell, {notebook_timeout:g} s per notebook)", flush=True)
    started = time.monotonic()
    # the runs' scratch space is a private temporary folder, not grades/: a submission that wipes grades/ while the
    # others run (possible without the sandbox) cannot take their results with it
    work = Path(tempfile.mkdtemp(prefix="dgm-grades-"))
    try:
        results = run_class(students, key["notebooks"], work, settings, jobs, sandbox, [GRADING, ROOT / "notebooks"],
                            hidden + [str(work)])
        seconds = time.monotonic() - started
        # without the sandbox a submission may have changed them: put them back. In the sandbox it cannot, so a change
        # comes from outside (someone editing the repository meanwhile): report it, never revert their work
        damage = restore(kept, owned, removable=[GRADING, grades]) if sandbox == "none" else changed(kept, owned)
        for folder in ("executed", "logs"):
            if (grades / folder).exists():
                shutil.rmtree(grades / folder)
        for slug in students:
            for kind, pattern in (("executed", "*.ipynb"), ("logs", "*.log")):
                for path in (work / slug).glob(pattern):
                    (grades / kind / slug).mkdir(parents=True, exist_ok=True)
                    shutil.move(path, grades / kind / slug / path.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    graded = score(key, mode, results)
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    columns = list(dict.fromkeys(c["column"] for c in key["criteria"]))
    rows = [["student", *columns, "total"]]
    for slug, g in graded.items():
        rows.append([Path(students[slug]).name, *[number(g["columns"][c]) for c in columns], number(g["total"])])
    text = "".join(",".join(csv_cell(v) for v in row) + "\n" for row in rows)
    offenders = {}
    for slug, notebooks in results.items():
        for stem, run in notebooks.items():
            for path in run.get("changed_grader_files", []):
                offenders.setdefault(path, []).append(f"{slug}/{stem}")
    feedback_dir = grades / "feedback"
    if feedback_dir.exists():
        shutil.rmtree(feedback_dir)
    for slug, g in graded.items():
        write_file(feedback_dir / f"{slug}.md", feedback_text(Path(students[slug]).name, students[slug], g,
                                                              results[slug], key, mode, when))
    details = {"when": when, "mode": mode, "submissions": str(submissions), "sandbox": sandbox, "jobs": jobs,
               "seconds": round(seconds, 1), "limits": {"cell": cell_timeout, "notebook": notebook_timeout},
               "total_points": key["total_points"], "grader_files_damaged": damage,
               "changes_seen_during_runs": offenders,
               "students": {slug: {"folder": students[slug], "total": g["total"], "columns": g["columns"],
                                   "criteria": g["criteria"],
                                   "notebooks": {s: {k: v for k, v in r.items() if k != "records"}
                                                 for s, r in results[slug].items()}}
                            for slug, g in graded.items()}}
    write_file(grades / "details.json", json.dumps(details, indent=1))
    write_file(grades / "gradebook.csv", text)
    print(f"\n{text}\ngraded in {seconds:.0f} s: {grades / 'gradebook.csv'}, feedback in {feedback_dir}", flush=True)
    if damage:
        print("\nWARNING: files the grader owns changed while submissions ran"
              + (" (restored from memory):" if sandbox == "none" else ":"), file=sys.stderr)
        for line in damage:
            print("  " + line, file=sys.stderr)
        for path, who in offenders.items():
            print(f"  {path}: changed while {', '.join(who)} ran", file=sys.stderr)
    return 0


def csv_cell(value: str) -> str:
    value = str(value)
    return f'"{value.replace(chr(34), chr(34) * 2)}"' if any(c in value for c in ',"\n') else value


def choose_sandbox(choice: str, protected: list, hidden: list) -> str:
    choice = os.environ.get("DGM_GRADE_SANDBOX", choice)
    if choice == "none":
        return "none"
    problem = sandbox_probe(protected, hidden)
    if problem is None:
        return "unshare"
    if choice == "unshare":
        raise SystemExit(f"the sandbox does not work here: {problem}")
    print(f"WARNING: no sandbox ({problem}); submissions run as you, with your rights. The grader restores its own "
          "files afterwards, but for a real class run `make grade` in a container (docs/instructors.md).",
          file=sys.stderr)
    return "none"


# --------------------------------------------------------------------------------------------------------------------
# make key
# --------------------------------------------------------------------------------------------------------------------

def make_key(quick_records_dir: Path | None, jobs: int, sandbox_choice: str) -> int:
    points = read_points()
    notebooks = sorted({row["notebook"] for row in points})
    full = {nb: read_json(ROOT / "results" / f"{nb}.json", MAX_RECORDS_BYTES) or {} for nb in notebooks}
    if quick_records_dir is None:
        with tempfile.TemporaryDirectory(prefix="dgm-key-") as tmp:
            work = Path(tmp) / "work"
            hidden = hidden_paths([work])
            sandbox = choose_sandbox(sandbox_choice, [ROOT], hidden)
            print(f"running the reference notebooks in quick settings ({jobs} at a time, sandbox: {sandbox})",
                  flush=True)
            settings = {"mode": "quick", "cell_timeout": DEFAULT_CELL_TIMEOUT,
                        "notebook_timeout": DEFAULT_NOTEBOOK_TIMEOUT, "data_source": "embedded",
                        "threads": max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None}
            runs = run_class({"reference": str(ROOT / "notebooks")}, notebooks, work, settings, jobs, sandbox,
                             [GRADING, ROOT / "notebooks"], hidden)["reference"]
        failed = {nb: run for nb, run in runs.items() if run["status"] != "ok"}
        if failed:
            raise SystemExit("reference notebooks failed in quick settings:\n" + "\n".join(
                f"  {nb}: {run['status']}: {run.get('message')}" for nb, run in failed.items()))
        quick = {nb: run["records"] or {} for nb, run in runs.items()}
    else:
        quick = {nb: read_json(quick_records_dir / f"{nb}.json", MAX_RECORDS_BYTES) or {} for nb in notebooks}
    key = build_key(points, quick, full)
    write_file(KEY, json.dumps(key, indent=1, sort_keys=False) + "\n")
    missing_full = [f"{c['notebook']} {c['id']} {c['field']}" for c in key["criteria"] if "unavailable" in c["full"]]
    print(f"wrote {KEY.relative_to(ROOT)}: {len(key['criteria'])} criteria, {number(key['total_points'])} points")
    if missing_full:
        print(f"  no full-settings reference yet for {len(missing_full)} criteria (run `make run`, then `make key`): "
              + "; ".join(missing_full[:8]) + (" ..." if len(missing_full) > 8 else ""))
    if key["ungraded_ids"]:
        print("  recorded but not graded (no row in grading/points.csv): " + ", ".join(key["ungraded_ids"]))
    return 0


def check_key() -> list:
    """Problems between the committed key, the scheme and the question index (empty when they agree)."""
    key, points = load_key(), read_points()
    problems = []
    scheme = [(r["notebook"], r["id"], r["field"], r["rule"], r["tolerance"], r["points"]) for r in points]
    keyed = [(c["notebook"], c["id"], c["field"], c["rule"], c["tolerance"], c["points"]) for c in key["criteria"]]
    if scheme != keyed:
        problems.append("grading/key.json does not match grading/points.csv: run `make key`")
    index = set(question_index())
    problems += [f"{c['notebook']} {c['id']} is not in QUESTIONS.md" for c in key["criteria"]
                 if (c["id"], c["notebook"]) not in index]
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grade", help="grade every student folder of SUBMISSIONS into grades/")
    g.add_argument("submissions", type=Path)
    g.add_argument("--grades", type=Path, default=ROOT / "grades")
    g.add_argument("--jobs", "-j", type=int, default=None, help="notebooks run at once (default: make's -j, else 1)")
    g.add_argument("--full", action="store_true", help="full settings (DGM_MODE=full) instead of quick ones")
    g.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT, help="seconds per cell")
    g.add_argument("--timeout", type=float, default=DEFAULT_NOTEBOOK_TIMEOUT, help="seconds per notebook")
    g.add_argument("--sandbox", choices=("auto", "unshare", "none"), default="auto")
    g.add_argument("--data-source", default="embedded", help="DGM_DATA_SOURCE for the runs (embedded|full)")
    k = sub.add_parser("key", help="run the reference notebooks in quick settings and write grading/key.json")
    k.add_argument("--quick-records", type=Path, default=None, help="use these quick records instead of running")
    k.add_argument("--jobs", "-j", type=int, default=None)
    k.add_argument("--sandbox", choices=("auto", "unshare", "none"), default="auto")
    sub.add_parser("check-key", help="exit 1 when key.json, points.csv and QUESTIONS.md disagree")
    e = sub.add_parser("execute", help=argparse.SUPPRESS)
    e.add_argument("--plan", type=Path, required=True)
    e.add_argument("--job", required=True)
    r = sub.add_parser("run-one", help=argparse.SUPPRESS)
    r.add_argument("tmp", type=Path)
    r.add_argument("stem")
    r.add_argument("cell_timeout", type=float)
    r.add_argument("notebook_timeout", type=float)
    args = parser.parse_args(argv)
    if args.command == "grade":
        jobs = args.jobs or jobs_from_make() or 1
        return grade(args.submissions, args.grades, jobs, "full" if args.full else "quick", args.cell_timeout,
                     args.timeout, args.sandbox, args.data_source)
    if args.command == "key":
        return make_key(args.quick_records, args.jobs or jobs_from_make() or 1, args.sandbox)
    if args.command == "check-key":
        problems = check_key()
        print("\n".join(problems) or "grading/key.json agrees with grading/points.csv and QUESTIONS.md")
        return 1 if problems else 0
    if args.command == "execute":
        execute(args.plan, args.job)
        return 0
    if args.command == "run-one":
        run_one(args.tmp, args.stem, args.cell_timeout, args.notebook_timeout)
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
