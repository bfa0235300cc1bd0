"""Reading hand-ins out of a Canvas or Moodle download and out of GitHub Classroom repositories, for `make collect`.

Every zip and repository is hostile input: entries are read as bytes and written later under names chosen here, so an
entry named `../../x` or `/etc/x` is never a path; symbolic links are named and skipped; reads are bounded per file
and in total, and the number of entries is capped (a zip bomb stops the run with nothing written). Repositories are
cloned bare and read with `git ls-tree` and `git cat-file`: nothing is checked out, so no link is followed.
The names' patterns are written here: no maintained library reads the LMSs' download names.
"""
import os
import re
import subprocess
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path

MAX_ENTRIES = 20_000
MAX_FILE_BYTES = 20 * 2**20          # the grader's own limit on a notebook (grader/plan.py)
MAX_TOTAL_BYTES = 4 * 2**30
GIT_TIMEOUT = 300
CANVAS = re.compile(r"^(?P<name>.+?)_(?:late_)?(?P<user>\d+)_(?P<submission>\d+)_(?P<file>.+)$")
MOODLE = re.compile(r"^(?P<name>.+)_(?P<participant>\d+)_assignsubmission_(?P<plugin>[a-z]+)_(?P<file>.*)$")
# `x-1.ipynb` is Canvas's name for a repeated upload, `x (1).ipynb` a browser's for a repeated download
REPEAT = re.compile(r"^(?P<stem>.+?)(?:-(?P<dash>\d+)| \((?P<paren>\d+)\))?\.ipynb$")
UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class Handin:
    """What one student handed in, as one source names them: the files by the name they will have, and when."""
    key: str                     # the source's id: Canvas user id, Moodle name, or the roster id (GitHub)
    label: str                   # how messages name this hand-in
    email: str = ""
    files: dict = field(default_factory=dict)       # name -> (rank, time, bytes, the name handed in)
    times: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    def add(self, handed: str, data: bytes, time: datetime, expected: list, rank: int = 0) -> None:
        """A notebook under its released name (a repeated upload's suffix dropped); the latest upload wins."""
        match = REPEAT.match(handed)
        stem = match["stem"] if match and match["stem"] in expected else None
        name = f"{stem}.ipynb" if stem else safe_name(handed)
        rank = rank * 1000 + int(match["dash"] or match["paren"] or 0) if stem else rank * 1000
        self.times.append(time)
        if name in self.files:
            kept = max(self.files[name], (rank, time, data, handed), key=lambda f: f[:2])
            dropped = sorted({self.files[name][3], handed} - {kept[3]})
            self.problems.append(f"{kept[3]} and {', '.join(dropped)} were both handed in as {name}: "
                                 f"{kept[3]}, the later upload, was collected")
            self.files[name] = kept
        else:
            self.files[name] = (rank, time, data, handed)


def safe_name(name: str) -> str:
    """A handed-in name made safe as a file name (the grader then names it as misnamed)."""
    stem, dot, suffix = name.rpartition(".")
    return (UNSAFE.sub("_", stem or suffix)[:80].lstrip(".-") or "file") + (f".{suffix}" if stem else "")


def printable(name: str) -> str:
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def entry_name(info: zipfile.ZipInfo) -> str:
    """The entry's name: UTF-8 when it is (whatever the flag says), else as zipfile read it (code page 437)."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def zip_files(path: Path, tz: tzinfo, wanted) -> tuple:
    """([(parts, time, bytes or None)], problems): the zip's files, read where `wanted(parts)`; a bomb stops the run."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise SystemExit(f"error: {path} is not a readable zip ({error}): download it again") from None
    files, problems, total = [], [], 0
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise SystemExit(f"error: {path} holds {len(infos)} entries, more than {MAX_ENTRIES}: it is not an "
                             "assignment's download; nothing was collected")
        for info in infos:
            name = entry_name(info)
            parts = re.split(r"[/\\]", name)
            if info.is_dir():
                continue
            if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts or "" in parts:
                problems.append(f"{printable(name)}: a path leaving the download, not collected")
                continue
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                problems.append(f"{printable(name)}: a symbolic link, not collected")
                continue
            time = datetime(*info.date_time, tzinfo=tz)
            if not wanted(parts):
                files.append((parts, time, None))
                continue
            try:
                with archive.open(info) as f:
                    data = f.read(MAX_FILE_BYTES + 1)
            except (OSError, RuntimeError, ValueError, zipfile.BadZipFile, EOFError) as error:
                problems.append(f"{printable(name)}: damaged in the zip ({type(error).__name__}), not collected")
                continue
            total += len(data)
            if total > MAX_TOTAL_BYTES:
                raise SystemExit(f"error: {path} unpacks to more than {MAX_TOTAL_BYTES // 2**30} GiB of notebooks: "
                                 "it is not an assignment's download; nothing was collected")
            files.append((parts, time, data))
    return files, problems


def is_notebook(parts: list) -> bool:
    return parts[-1].lower().endswith(".ipynb")


def too_big(handed: str) -> str:
    return (f"{printable(handed)} is over {MAX_FILE_BYTES // 2**20} MB: not collected; clear its outputs and hand "
            "it in again")


def file_of(handin: Handin, handed: str, time: datetime, data, expected: list) -> None:
    """One file of a hand-in: a notebook kept, anything else named."""
    if data is None:
        handin.problems.append(f"{printable(handed)} is not a notebook: not collected")
    elif len(data) > MAX_FILE_BYTES:
        handin.problems.append(too_big(handed))
    else:
        handin.add(printable(handed), data, time, expected)


def canvas(path: Path, tz: tzinfo, expected: list) -> tuple:
    """({Canvas user id: Handin}, problems) of a Canvas "Download Submissions" zip."""
    files, problems = zip_files(path, tz, is_notebook)
    handins = {}
    for parts, time, data in files:
        match = CANVAS.match(parts[-1])
        if not match:
            problems.append(f"{printable('/'.join(parts))}: not named like a Canvas submission, not collected")
            continue
        handin = handins.setdefault(match["user"], Handin(match["user"], f"{printable(match['name'])} "
                                                                         f"(Canvas user {match['user']})"))
        file_of(handin, match["file"], time, data, expected)
    return handins, problems


def moodle(path: Path, tz: tzinfo, expected: list) -> tuple:
    """({participant id: Handin}, problems) of a Moodle "Download all submissions" zip, in folders or flat."""
    files, problems = zip_files(path, tz, is_notebook)
    handins = {}
    for parts, time, data in files:
        match = MOODLE.match(parts[0])
        if not match:
            problems.append(f"{printable('/'.join(parts))}: not named like a Moodle submission, not collected")
            continue
        name = printable(match["name"])
        handin = handins.setdefault(match["participant"], Handin(name, f"{name} (Moodle participant "
                                                                       f"{match['participant']})"))
        if "@" in name:
            handin.email = name
        handed = parts[-1] if len(parts) > 1 else match["file"]
        if match["plugin"] != "file":
            handin.problems.append(f"{printable(handed)}: an online text, not a notebook: not collected")
            continue
        file_of(handin, handed, time, data, expected)
    return handins, problems


def git(*args, cwd: Path, check: bool = True) -> bytes:
    """A git command's output; git never asks for a password (a private repository without access fails)."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, timeout=GIT_TIMEOUT)
    if check and done.returncode:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no message"]
        raise RuntimeError(lines[-1])
    return done.stdout


def github(key: str, url: str, deadline: datetime, expected: list, scratch: Path) -> Handin:
    """The notebooks of the last commit at or before the deadline (else the latest), from a bare clone in `scratch`."""
    handin = Handin(key, f"{key} ({url})")
    clone = scratch / f"{len(list(scratch.iterdir()))}.git"
    try:
        git("clone", "--bare", "--quiet", "--", url, str(clone), cwd=scratch)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        handin.problems.append(f"the repository {url} could not be cloned ({error}): nothing collected")
        return handin
    commit = git("rev-list", "-1", f"--before={deadline.isoformat()}", "HEAD", cwd=clone, check=False).strip()
    if not commit:
        commit = git("rev-list", "-1", "HEAD", cwd=clone, check=False).strip()
        if not commit:
            handin.problems.append(f"the repository {url} has no commit: nothing handed in")
            return handin
        handin.problems.append("nothing was committed before the deadline: the latest commit was collected, late")
    else:
        after = int(git("rev-list", "--count", f"{commit.decode()}..HEAD", cwd=clone) or 0)
        if after:
            handin.problems.append(f"{after} later commit{'s' if after > 1 else ''} not collected: the last commit "
                                   "at or before the deadline counts")
    time = datetime.fromisoformat(git("show", "-s", "--format=%cI", commit.decode(), cwd=clone).decode().strip())
    for line in git("ls-tree", "-r", "-l", "-z", commit.decode(), cwd=clone).split(b"\0"):
        if not line:
            continue
        meta, raw = line.split(b"\t", 1)
        mode, kind, blob, size = meta.decode().split()
        name = raw.decode("utf-8", "surrogateescape")
        parts = name.split("/")
        if not parts[-1].lower().endswith(".ipynb") or any(p.startswith(".") for p in parts):
            continue
        if len(parts) > 2 or (len(parts) == 2 and parts[0] != "notebooks"):
            handin.problems.append(f"{printable(name)} is not at the top or in notebooks/: not collected")
        elif mode == "120000" or kind != "blob":
            handin.problems.append(f"{printable(name)} is a symbolic link: not collected")
        elif int(size) > MAX_FILE_BYTES:
            handin.problems.append(too_big(name))
        else:
            handin.add(printable(parts[-1]), git("cat-file", "blob", blob, cwd=clone), time, expected, len(parts) - 1)
    handin.times = [time]
    return handin
