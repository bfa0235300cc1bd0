"""A class as the LMSs hand it over: a roster, a course file, Canvas and Moodle zips, GitHub repositories."""
import json
import os
import subprocess
import zipfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROSTER = """id,name,email,github,canvas_id
s001,Ada Lovelace,ada@uni.example,adalove,1001
s002,Alan Turing,alan@uni.example,aturing,1002
s003,José Núñez,jose@uni.example,jnunez,1003
s004,Grace Hopper,grace@uni.example,,1004
"""
COURSE = """deadline = "2026-03-13T23:59:00+01:00"
roster = "roster.csv"
[late]
grace_minutes = 15
penalty_per_day = 0.1
cap = 0.5
[github]
org = "dgm"
assignment = "hw1"
"""


def notebook(stem: str) -> bytes:
    """A solution notebook's bytes: each fixture file is a real notebook, told apart by which one it is."""
    return (ROOT / "notebooks" / f"{stem}.ipynb").read_bytes()


def course_file(tmp_path: Path) -> Path:
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    (tmp_path / "course.toml").write_text(COURSE)
    return tmp_path / "course.toml"


def make_zip(path: Path, entries: list) -> Path:
    """A zip of (name, bytes, (y, m, d, H, M, S)) entries, or ZipInfo objects with their bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data, *when in entries:
            info = name if isinstance(name, zipfile.ZipInfo) else zipfile.ZipInfo(name, when[0] if when else
                                                                                   (2026, 3, 13, 12, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return path


def rename_raw(path: Path, old: bytes, new: bytes) -> None:
    """Give an entry a name in raw bytes (say Latin-1), as an old zip tool writes it: zipfile always writes UTF-8."""
    assert len(old) == len(new)
    data = path.read_bytes()
    assert data.count(old) == 2          # the local header and the central directory
    path.write_bytes(data.replace(old, new))


def canvas_zip(tmp_path: Path) -> Path:
    return make_zip(tmp_path / "submissions.zip", [
        ("lovelaceada_1001_5001_01_ancestral_sampling.ipynb", notebook("01_ancestral_sampling"),
         (2026, 3, 13, 20, 0, 0)),
        ("lovelaceada_1001_5001_03_kl_divergence-1.ipynb", notebook("03_kl_divergence"), (2026, 3, 13, 21, 0, 0)),
        ("turingalan_late_1002_5002_01_ancestral_sampling.ipynb", notebook("01_ancestral_sampling"),
         (2026, 3, 15, 2, 58, 0)),
        ("turingalan_late_1002_5002_notes.pdf", b"%PDF-1.4", (2026, 3, 15, 2, 59, 0)),
        ("nunezjose_1003_5003_07_backprop.ipynb", notebook("06_gan_mnist"), (2026, 3, 13, 10, 0, 0)),
        ("nunezjose_1003_5003_07_backprop-1.ipynb", notebook("07_backprop"), (2026, 3, 13, 11, 0, 0)),
        ("strangerbob_1999_5999_01_ancestral_sampling.ipynb", notebook("01_ancestral_sampling")),
    ])


def collected(out: Path) -> dict:
    """.collected.json, its time of collection and its course file checked and taken out (the rest is compared
    whole)."""
    data = json.loads((out / ".collected.json").read_text())
    assert datetime.fromisoformat(data.pop("collected")).utcoffset().total_seconds() == 3600
    assert Path(data.pop("course")).is_file()                    # the course file it was collected with
    return data


def layout(out: Path) -> dict:
    """Every file under `out` but .collected.json, as relative path -> bytes; every folder, as path -> None."""
    found = {}
    for path in sorted(out.rglob("*")):
        if path.name != ".collected.json":
            found[str(path.relative_to(out))] = None if path.is_dir() else path.read_bytes()
    return found


def git(*args, cwd: Path, when: str | None = None) -> None:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    if when:
        env.update(GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when)
    subprocess.run(["git", "-c", "user.name=Student", "-c", "user.email=s@uni.example", "-c", "init.defaultBranch=main",
                    *args], cwd=cwd, env=env, check=True, capture_output=True)


def student_repo(remotes: Path, name: str, commits: list) -> Path:
    """A bare repository remotes/dgm/hw1-<name>.git whose commits (date, {path: bytes or ('link', target)}) are
    made at the given committer dates."""
    work = remotes / "work" / name
    work.mkdir(parents=True)
    git("init", "-q", cwd=work)
    for when, files in commits:
        for rel, data in files.items():
            path = Path(os.fsdecode(work)) / os.fsdecode(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, tuple):
                os.symlink(data[1], path)
            else:
                path.write_bytes(data)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", "work", cwd=work, when=when)
    bare = remotes / "dgm" / f"hw1-{name}.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=remotes)
    return bare
