"""Remove a virtual environment made by another Python than this one, so `make setup` rebuilds it instead of reusing
it (a .venv left by a failed try with Python 3.10 must not survive a retry with 3.11)."""
import shutil
import sys
from pathlib import Path


def venv_version(venv: Path) -> str | None:
    """The Python version recorded in the environment's pyvenv.cfg ('3.11.7'), or None when there is none."""
    config = venv / "pyvenv.cfg"
    if not config.is_file():
        return None
    for line in config.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("version", "version_info"):
            return value.strip()
    return None


def main(argv=None) -> int:
    venv = Path((argv or sys.argv[1:])[0])
    found = venv_version(venv)
    here = "{}.{}".format(*sys.version_info[:2])
    if venv.exists() and (found is None or ".".join(found.split(".")[:2]) != here):
        print(f"{venv} was made by Python {found or 'unknown'}, not this Python {here}: removing it to build it again")
        shutil.rmtree(venv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
