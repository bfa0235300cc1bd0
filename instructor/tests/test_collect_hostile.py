"""`make collect` on hostile downloads: paths leaving the zip, links, bombs, names that are not UTF-8, and an
existing folder that must not be lost."""
import zipfile

import pytest

from instructor import collect, course, sources
from instructor.tests.collect_fixtures import canvas_zip, collected, course_file, layout, make_zip, notebook, rename_raw

NB = notebook("01_ancestral_sampling")


def tree(path) -> set:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def run(tmp_path, kind: str, download, **options) -> dict:
    return collect.collect(kind, download, course.load(course_file(tmp_path)), tmp_path / "out", **options)


def test_entries_that_leave_the_download_or_are_links_are_named_and_never_written(tmp_path, capsys):
    link = zipfile.ZipInfo("lovelaceada_1001_5001_02_latent_variable_models.ipynb", (2026, 3, 13, 12, 0, 0))
    link.external_attr = 0o120777 << 16
    download = make_zip(tmp_path / "evil.zip", [
        ("../../escaped.ipynb", NB), ("/tmp/absolute.ipynb", NB), ("lovelaceada_1001_5001_..\\..\\win.ipynb", NB),
        ("C:/windows.ipynb", NB), (link, b"/etc/passwd"),
        ("lovelaceada_1001_5001_01_ancestral_sampling.ipynb", NB)])
    policy = course.load(course_file(tmp_path))
    before = tree(tmp_path)
    collect.collect("canvas", download, policy, tmp_path / "out")
    assert tree(tmp_path) - before == {"out"} | {f"out/{p}" for p in tree(tmp_path / "out")}
    assert not any(p.is_symlink() for p in (tmp_path / "out").rglob("*"))
    assert layout(tmp_path / "out")["s001/01_ancestral_sampling.ipynb"] == NB
    assert collected(tmp_path / "out")["students"]["s001"]["files"] == ["01_ancestral_sampling.ipynb"]
    said = capsys.readouterr().out
    for name in ("../../escaped.ipynb", "/tmp/absolute.ipynb", "lovelaceada_1001_5001_..\\..\\win.ipynb",
                 "C:/windows.ipynb"):
        assert f"note: {name}: a path leaving the download, not collected" in said
    assert "note: lovelaceada_1001_5001_02_latent_variable_models.ipynb: a symbolic link, not collected" in said


def test_a_zip_bomb_stops_the_run_with_nothing_written(tmp_path, monkeypatch):
    zeros = b"{" + b" " * (21 * 2**20) + b"}"                 # 21 MB that deflate to about 20 kB
    download = make_zip(tmp_path / "bomb.zip", [("lovelaceada_1001_5001_01_ancestral_sampling.ipynb", zeros),
                                                ("turingalan_1002_5002_01_ancestral_sampling.ipynb", NB)])
    assert download.stat().st_size < 2**20
    result = run(tmp_path, "canvas", download)
    assert result["students"]["s001"]["problems"] == [
        "01_ancestral_sampling.ipynb is over 20 MB: not collected; clear its outputs and hand it in again",
        "nothing handed in"]
    assert result["students"]["s002"]["files"] == ["01_ancestral_sampling.ipynb"]
    monkeypatch.setattr(sources, "MAX_TOTAL_BYTES", 2 * 2**20)
    with pytest.raises(SystemExit, match="unpacks to more than"):
        collect.collect("canvas", download, course.load(tmp_path / "course.toml"), tmp_path / "again")
    assert not (tmp_path / "again").exists() and not list(tmp_path.glob(".again*"))


def test_a_zip_of_too_many_entries_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "MAX_ENTRIES", 5)
    download = make_zip(tmp_path / "many.zip", [(f"x_{n}_1_f.ipynb", NB) for n in range(6)])
    with pytest.raises(SystemExit, match="holds 6 entries, more than 5"):
        run(tmp_path, "canvas", download)
    assert not (tmp_path / "out").exists()


def test_names_that_are_not_utf8_are_kept_and_named(tmp_path, capsys):
    download = make_zip(tmp_path / "moodle.zip", [
        ("Jose Nunez_2003_assignsubmission_file_/cafX.ipynb", NB),
        ("NXXez Jose_2004_assignsubmission_file_/01_ancestral_sampling.ipynb", NB)])
    rename_raw(download, b"cafX.ipynb", b"caf\xe9.ipynb")            # Latin-1, no UTF-8 flag: an old zip tool
    rename_raw(download, b"NXXez Jose", b"N\xfa\xf1ez Jose")
    result = run(tmp_path, "moodle", download)
    assert result["students"]["s003"]["files"] == ["caf_.ipynb"]
    assert layout(tmp_path / "out")["s003/caf_.ipynb"] == NB
    assert "not on the roster: N\u00b7\u00b1ez Jose (Moodle participant 2004)" in capsys.readouterr().out
    assert layout(tmp_path / "out")[".unmatched/001_N__ez_Jose/01_ancestral_sampling.ipynb"] == NB


def test_an_existing_folder_is_never_lost(tmp_path):
    policy = course.load(course_file(tmp_path))
    download = canvas_zip(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "grades.csv").write_text("precious")
    with pytest.raises(SystemExit, match="holds files that make collect did not write"):
        collect.collect("canvas", download, policy, out, force=True)
    assert tree(out) == {"grades.csv"} and (out / "grades.csv").read_text() == "precious"

    (out / "grades.csv").unlink()
    collect.collect("canvas", download, policy, out)                         # an empty folder is filled
    (out / "s001" / "notes.txt").write_text("kept")
    with pytest.raises(SystemExit, match="--force"):
        collect.collect("canvas", download, policy, out)
    assert (out / "s001" / "notes.txt").read_text() == "kept"
    collect.collect("canvas", download, policy, out, force=True)             # asked: replaced whole
    assert not (out / "s001" / "notes.txt").exists() and (out / "s001" / "01_ancestral_sampling.ipynb").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []

    (tmp_path / "link").symlink_to(out)
    with pytest.raises(SystemExit, match="is not a folder"):
        collect.collect("canvas", download, policy, tmp_path / "link", force=True)
    assert (out / ".collected.json").is_file()


def test_a_roster_that_cannot_key_folders_is_refused_with_its_line(tmp_path):
    path = course_file(tmp_path)
    for text, words in (("name,email\nAda,a@x\n", "has no column `id`"), ("id,name\n../s1,Ada\n", "line 2"),
                        ("id,name\ns1,Ada\ns1,Alan\n", "line 3: the id 's1' appears twice")):
        (tmp_path / "roster.csv").write_text(text)
        with pytest.raises(SystemExit, match=words):
            collect.collect("canvas", canvas_zip(tmp_path), course.load(path), tmp_path / "out")
        assert not (tmp_path / "out").exists()
