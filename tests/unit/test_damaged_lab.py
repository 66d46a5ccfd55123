"""Bad labs and a bad machine in one line: a damaged aisci.db, a folder without a lab, a
lab folder that cannot be made, a configuration file that is not UTF-8, a full disk.
Each is an AisciError naming the file (exit code 2), never a raw OSError / sqlite3 error."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest
from aisci.engine import demo
from aisci.engine.config import MAX_CONFIG_BYTES, ConfigError, load_config
from aisci.engine.errors import (
    DATABASE_ATTR,
    EXIT_USAGE,
    DamagedDatabase,
    DiskError,
    DiskFull,
    environment_error,
    exit_code,
    user_message,
)
from aisci.engine.lab.store import LabStore, NoLab, StoreError, make_lab_dir


def _damage(lab: Path, kind: str) -> Path:
    db = lab / "aisci.db"
    if kind == "truncated":
        with LabStore(lab) as store:
            for i in range(200):
                store.add_idea(f"idea_{i}", "grokking", {"Title": "x" * 400})
        os.truncate(db, db.stat().st_size // 2)
        return db
    lab.mkdir(parents=True)
    if kind == "text":
        db.write_text("hello\n")
    elif kind == "dir":
        db.mkdir()
    elif kind == "empty":
        db.write_bytes(b"")
    elif kind == "foreign":
        conn = sqlite3.connect(db)
        conn.execute("CREATE TABLE photos (id INTEGER)")
        conn.commit()
        conn.close()
    return db


def _read_all(store: LabStore) -> None:
    store.list_ideas()
    store.kv_get("pipeline.options")
    store.runs()


@pytest.mark.parametrize("kind", ["text", "dir", "empty", "truncated", "foreign"])
def test_a_damaged_database_is_one_line_naming_it_read_only(tmp_path, kind):
    lab = tmp_path / "lab"
    db = _damage(lab, kind)
    with pytest.raises(Exception) as info:  # the class is checked below
        with LabStore(lab, read_only=True) as store:
            _read_all(store)
    exc = info.value
    known = exc if isinstance(exc, DamagedDatabase) else environment_error(exc, lab=lab)
    assert isinstance(known, DamagedDatabase), repr(exc)
    assert user_message(known).startswith(f"{db} is not a usable lab database (")
    assert exit_code(known) == EXIT_USAGE


@pytest.mark.parametrize("kind", ["text", "dir", "foreign"])
def test_a_damaged_database_is_refused_for_writing_and_left_as_it_was(tmp_path, kind):
    lab = tmp_path / "lab"
    db = _damage(lab, kind)
    before = db.read_bytes() if db.is_file() else None
    with pytest.raises(DamagedDatabase, match="is not a usable lab database"):
        LabStore(lab)
    assert (db.read_bytes() if db.is_file() else None) == before


def test_an_empty_file_becomes_a_new_lab_when_opened_for_writing(tmp_path):
    _damage(tmp_path / "lab", "empty")
    with LabStore(tmp_path / "lab") as store:
        assert store.list_ideas() == []


def test_commands_on_an_existing_lab_create_nothing(tmp_path):
    lab = tmp_path / "typo" / "lab"
    for kwargs in ({"create": False}, {"read_only": True}):
        with pytest.raises(NoLab) as info:
            LabStore(lab, **kwargs)
        assert user_message(info.value).startswith(f"no lab at {lab} (no aisci.db)")
        assert exit_code(info.value) == EXIT_USAGE and isinstance(info.value, StoreError)
    assert not (tmp_path / "typo").exists()
    LabStore(lab).close()  # creating one is still the default
    with LabStore(lab, create=False) as store:
        assert store.list_ideas() == []


def test_a_lab_folder_that_cannot_be_made_is_one_line(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for lab, why in ((afile, "it exists and is not a directory"),
                     (afile / "lab", f"{afile} is a file, not a directory")):
        with pytest.raises(StoreError) as info:
            LabStore(lab)
        assert user_message(info.value) == (f"cannot create the lab folder {lab}: {why}; "
                                            "choose another folder with --lab")
        assert exit_code(info.value) == EXIT_USAGE

    def read_only(self, *a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(StoreError, match="Read-only file system; choose another folder"):
        make_lab_dir(tmp_path / "ro" / "lab")


def test_the_demo_lab_that_cannot_be_made_or_written_is_one_line(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(StoreError, match=f"cannot create the lab folder {afile}: it exists"):
        demo.prepare_demo_lab(afile)

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(DiskFull, match="aisci.toml: no space left on device"):
        demo.prepare_demo_lab(tmp_path / "demo")


def test_a_full_database_is_reported_as_a_full_disk_naming_the_file(tmp_path):
    """SQLite's own "database or disk is full" (a page limit stands in for the disk)."""
    with LabStore(tmp_path) as store:
        pages = store.query("PRAGMA page_count")[0][0]
        store.query(f"PRAGMA max_page_count = {pages + 1}")
        with pytest.raises(sqlite3.OperationalError) as info:
            for i in range(500):
                store.add_idea(f"idea_{i}", "grokking", {"Title": "x" * 2000})
        store.query("PRAGMA max_page_count = 1000000")
        store.add_idea("after", "grokking", {"Title": "ok"})  # nothing was left half-done
    known = environment_error(info.value)
    assert isinstance(known, DiskFull) and exit_code(known) == EXIT_USAGE
    assert user_message(known).startswith(
        f"{tmp_path / 'aisci.db'}: no space left on device (the lab's disk is full; free "
        "space, then run the command again")


def _chained() -> RuntimeError:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/lab/ideas/x/log.txt")
        except OSError as inner:
            raise RuntimeError("stage failed") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(("exc", "cls", "text"), [
    (OSError(errno.ENOSPC, "No space left on device", "/lab/run.log"), DiskFull,
     "/lab/run.log: no space left on device"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), DiskFull, "/lab: disk quota exceeded"),
    (_chained(), DiskFull, "/lab/ideas/x/log.txt: no space left on device"),
    (ExceptionGroup("tasks", [ValueError("x"), OSError(errno.ENOSPC, "full")]), DiskFull,
     "/lab: no space left on device"),
    (RuntimeError("git commit: fatal: No space left on device"), DiskFull,
     "/lab: no space left on device"),
    (sqlite3.OperationalError("database or disk is full"), DiskFull,
     "the lab database in /lab: no space left on device"),
    (sqlite3.DatabaseError("database disk image is malformed"), DamagedDatabase,
     "the lab database in /lab is not a usable lab database (database disk image is "
     "malformed)"),
    (ValueError("a bug"), type(None), ""),
    (OSError(errno.ENOENT, "No such file or directory"), type(None), ""),
    (sqlite3.OperationalError("database is locked"), type(None), ""),
])
def test_environment_errors_are_recognised(exc, cls, text):
    known = environment_error(exc, lab=Path("/lab"))
    assert type(known) is cls
    if known is not None:
        assert user_message(known).startswith(text) and exit_code(known) == EXIT_USAGE


def test_a_disk_io_error_is_a_full_disk_only_when_the_disk_is_full(tmp_path, monkeypatch):
    exc = sqlite3.OperationalError("disk I/O error")
    setattr(exc, DATABASE_ATTR, tmp_path / "aisci.db")
    known = environment_error(exc, then="start aisci-tui again")
    assert isinstance(known, DiskError) and "aisci.db: disk I/O error" in known.message

    class Full:
        f_bfree = f_bavail = 0
        f_frsize = 4096
        f_files = f_favail = 100
    monkeypatch.setattr(os, "statvfs", lambda _p: Full())
    known = environment_error(exc, then="start aisci-tui again")
    assert isinstance(known, DiskFull)
    assert known.message.endswith("free space, then start aisci-tui again)")


@pytest.fixture
def user_config(tmp_path, monkeypatch):
    path = tmp_path / "user.toml"
    monkeypatch.setenv("AISCI_USER_CONFIG", str(path))
    return path


@pytest.mark.parametrize("which", ["lab", "user"])
def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path, user_config, which):
    path = tmp_path / "aisci.toml" if which == "lab" else user_config
    path.write_bytes(b'[general]\ntemplate = "grokking" # caf\xe9\n')
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert user_message(info.value) == (
        f"config error: {path}: not UTF-8 text (byte 0xe9 at line 2, offset 37); save the "
        "file as UTF-8")
    assert exit_code(info.value) == EXIT_USAGE


def test_config_files_are_bounded_and_may_carry_a_bom(tmp_path, user_config):
    (tmp_path / "aisci.toml").write_bytes(b'\xef\xbb\xbf[general]\ntemplate = "nanogpt"\n')
    assert load_config(tmp_path).settings.general.template == "nanogpt"
    (tmp_path / "aisci.toml").write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than 1024 KB"):
        load_config(tmp_path)
