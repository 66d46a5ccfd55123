"""The lab store: one SQLite database (WAL) at ``<lab>/aisci.db``.

Holds ideas, per-idea stage states, run attempts, LLM calls with cost, the literature
cache and the event log. One process owns a lab at a time (an advisory lock file records
its pid); a second process gets :class:`LabInUse` naming that pid, or may open the store
read-only. Within the owning process the store is safe for asyncio tasks and threads:
every thread has its own connection and writes are serialised by a lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aisci.engine.errors import (
    DATABASE_ATTR,
    EXIT_LAB_IN_USE,
    NO_SPACE_ERRNOS,
    AisciError,
    DamagedDatabase,
    DiskFull,
    UsageError,
    disk_nearly_full,
)
from aisci.engine.lab.layout import DB_NAME, LOCK_NAME


class LabInUse(AisciError):
    """Another process holds the lab (its lock names the pid)."""

    exit_code = EXIT_LAB_IN_USE

    def __init__(self, lab: Path, pid: int | None) -> None:
        self.pid = pid
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"lab {lab} is in use by {who}; watch it with `aisci status --lab "
                         f"{lab}` (read-only) or stop that process")


class StoreError(UsageError):
    """The lab database cannot be used as asked (missing, read-only, newer schema)."""


class NoLab(StoreError):
    """The folder holds no lab (no aisci.db): a command that works on an existing lab's
    ideas or runs refuses instead of creating one there."""

    def __init__(self, lab: Path) -> None:
        self.lab = Path(lab)
        super().__init__(f"no lab at {lab} (no {DB_NAME}); check --lab, or start a lab "
                         "there with `aisci run` or `aisci-tui`")


class LabReadOnly(StoreError):
    """The lab cannot be written (a read-only mount, a colleague's folder): reading works,
    anything that changes the lab does not."""

    def __init__(self, lab: Path, why: str = "") -> None:
        self.lab = Path(lab)
        self.why = why
        super().__init__(f"lab {lab} is read-only{f' ({why})' if why else ''}; this command "
                         "changes the lab: run it on a writable copy")


_READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)


def _is_read_only_error(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in _READ_ONLY_ERRNOS
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "readonly" in text or "read-only" in text or "unable to open" in text
    return False


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def make_lab_dir(lab: Path) -> None:
    """Create the lab folder (and its parents) if needed; one line naming the lab and the
    OS reason when it cannot be (a read-only parent, a regular file in the way, a full
    disk)."""
    try:
        Path(lab).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in NO_SPACE_ERRNOS:
            raise DiskFull(lab, quota=exc.errno == errno.EDQUOT) from None
        if isinstance(exc, FileExistsError) or Path(lab).exists():
            why = "it exists and is not a directory"
        else:
            why = _why(exc)
            blocker = next((p for p in Path(lab).parents if p.exists()), None)
            if blocker is not None and not blocker.is_dir():
                why = f"{blocker} is a file, not a directory"
        raise StoreError(f"cannot create the lab folder {lab}: {why}; choose another "
                         "folder with --lab") from None


_BUSY_TEXTS = ("locked", "busy")


def _database_error(db: Path, exc: BaseException) -> AisciError | None:
    """The user's one line for a failure to open, read or set up the lab database ``db``
    (None: not the database's fault, e.g. locked by another process)."""
    if isinstance(exc, OSError):
        if exc.errno in NO_SPACE_ERRNOS:
            return DiskFull(exc.filename or db, quota=exc.errno == errno.EDQUOT)
        return StoreError(f"{exc.filename or db}: cannot be opened ({_why(exc)})")
    if not isinstance(exc, sqlite3.DatabaseError):
        return None
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and any(t in text for t in _BUSY_TEXTS):
        return None
    if "database or disk is full" in text or (
            "disk i/o error" in text and db.is_file() and disk_nearly_full(db)):
        return DiskFull(db)
    if db.is_dir():
        return DamagedDatabase(db, "it is a directory")
    return DamagedDatabase(db, str(exc))


# Each entry migrates the schema from version i to i+1. Never edit a released entry:
# append a new one.
MIGRATIONS: list[str] = [
    # v1
    """
    CREATE TABLE ideas (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        template TEXT NOT NULL,
        data TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'proposed',
        novelty TEXT,
        origin TEXT NOT NULL DEFAULT 'generated',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE idea_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        idea_id INTEGER NOT NULL REFERENCES ideas(id),
        ts REAL NOT NULL,
        action TEXT NOT NULL,
        source TEXT NOT NULL,
        detail TEXT
    );
    CREATE TABLE stages (
        idea_id INTEGER NOT NULL REFERENCES ideas(id),
        stage TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        started_at REAL,
        finished_at REAL,
        detail TEXT,
        PRIMARY KEY (idea_id, stage)
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        idea_id INTEGER REFERENCES ideas(id),
        run TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        exit_code INTEGER,
        reason TEXT,
        started_at REAL,
        finished_at REAL,
        duration_s REAL,
        metrics TEXT,
        pid INTEGER,
        pid_start_time REAL,
        isolation TEXT,
        limit_s REAL,
        commit_sha TEXT,
        log_path TEXT,
        plan TEXT
    );
    CREATE INDEX runs_idea ON runs(idea_id, run, attempt);
    CREATE TABLE llm_calls (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        call_id TEXT,
        stage TEXT NOT NULL,
        idea_id INTEGER,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER NOT NULL DEFAULT 0,
        latency_s REAL,
        cost_usd REAL,
        error TEXT,
        tries INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX llm_calls_idea ON llm_calls(idea_id);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,
        idea_id INTEGER,
        data TEXT NOT NULL
    );
    CREATE TABLE literature_cache (
        source TEXT NOT NULL,
        query TEXT NOT NULL,
        ts REAL NOT NULL,
        results TEXT NOT NULL,
        PRIMARY KEY (source, query)
    );
    CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
    # v2: human actions on a running process (kill/extend/pause/resume), JSON list
    """
    ALTER TABLE runs ADD COLUMN controls TEXT
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


@dataclass
class IdeaRow:
    id: int
    name: str
    template: str
    data: dict[str, Any]
    status: str
    novelty: dict[str, Any] | None
    origin: str
    created_at: float
    updated_at: float


@dataclass
class RunRow:
    id: int
    idea_id: int | None
    run: str
    attempt: int
    kind: str
    status: str
    exit_code: int | None
    reason: str | None
    started_at: float | None
    finished_at: float | None
    duration_s: float | None
    metrics: dict[str, Any] | None
    pid: int | None
    pid_start_time: float | None
    isolation: str | None
    limit_s: float | None
    commit_sha: str | None
    log_path: str | None
    plan: str | None
    controls: list[dict[str, Any]] | None = None


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class LabStore:
    """Access to ``aisci.db``. Use :meth:`open` (takes the lab lock) or ``read_only=True``."""

    def __init__(self, lab_dir: Path, *, read_only: bool = False, lock: bool = True,
                 create: bool = True) -> None:
        """``create=False``: the lab must exist already (:class:`NoLab` otherwise); a
        read-only store never creates anything."""
        self.lab_dir = Path(lab_dir)
        self.path = self.lab_dir / DB_NAME
        self.read_only = read_only
        self._local = threading.local()
        self._write_lock = threading.RLock()
        self._lock_fh: Any = None
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        if (read_only or not create) and not self.path.exists():
            raise NoLab(self.lab_dir)
        if read_only:
            self._conn()  # a damaged database is reported here, in one line
        else:
            make_lab_dir(self.lab_dir)
            try:
                if lock:
                    self._acquire_lock()
                self._migrate()
            except (OSError, sqlite3.DatabaseError) as exc:
                self.close()
                if _is_read_only_error(exc) and self.lab_dir.is_dir() \
                        and not self.writable(self.lab_dir):
                    raise LabReadOnly(self.lab_dir, _why(exc)) from None
                if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc):
                    raise LabReadOnly(self.lab_dir, _why(exc)) from None
                mapped = _database_error(self.path, exc)
                if mapped is None:
                    raise
                raise mapped from None
            except BaseException:  # a newer schema, another program's database
                self.close()
                raise

    @classmethod
    def open_read_only(cls, lab_dir: Path) -> LabStore:
        """The store for reading only (never locks, never writes; works on a read-only
        mount and while another process owns the lab)."""
        return cls(lab_dir, read_only=True)

    @staticmethod
    def writable(lab_dir: Path) -> bool:
        """Whether this process may change the lab folder (and its database)."""
        lab_dir = Path(lab_dir)
        if not os.access(lab_dir, os.W_OK):
            return False
        db = lab_dir / DB_NAME
        return not db.exists() or os.access(db, os.W_OK)

    @staticmethod
    def read_only_reason(lab_dir: Path) -> str | None:
        """Why the lab cannot be changed by this process, or None when it can."""
        lab_dir = Path(lab_dir)
        if not lab_dir.is_dir() or LabStore.writable(lab_dir):
            return None
        return f"lab {lab_dir} is read-only (no write permission or a read-only mount)"

    # -- locking -------------------------------------------------------------------------
    def _acquire_lock(self) -> None:
        path = self.lab_dir / LOCK_NAME
        fh = open(path, "a+")  # noqa: SIM115 - held for the store's lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            text = fh.read().strip()
            fh.close()
            raise LabInUse(self.lab_dir, int(text) if text.isdigit() else None) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock_fh = fh

    @staticmethod
    def lock_holder(lab_dir: Path) -> int | None:
        """The pid holding the lab lock, or None when the lab is free."""
        path = Path(lab_dir) / LOCK_NAME
        if not path.exists():
            return None
        try:
            fh = open(path)  # noqa: SIM115 - closed below; read-only: works on any mount
        except OSError:
            return None
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                text = fh.read().strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
            return None

    # -- connections ---------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.read_only:
                conn = self._connect_read_only()
            else:
                with self._naming_errors():
                    conn = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                           check_same_thread=False)
                    try:
                        self._refuse_foreign(conn)  # before WAL changes the file
                        conn.execute("PRAGMA journal_mode=WAL")
                        conn.execute("PRAGMA synchronous=NORMAL")
                        conn.execute("PRAGMA foreign_keys=ON")
                    except BaseException:
                        conn.close()
                        raise
            conn.execute("PRAGMA busy_timeout=30000")
            conn.row_factory = sqlite3.Row
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        """A read-only connection. A WAL database in a folder this process cannot write
        (its -shm cannot be made) is opened immutable: nothing can change it from here.
        A file that is not a lab database (damaged, empty, another program's, a newer
        schema) is refused in one line."""
        uri = f"file:{urllib.parse.quote(str(self.path))}?mode=ro"
        try:
            return self._open_checked(uri)
        except sqlite3.OperationalError:
            pass  # e.g. a WAL database whose -shm this process cannot create
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None
        try:
            return self._open_checked(uri + "&immutable=1")
        except sqlite3.DatabaseError as exc:
            raise self._unusable(exc) from None

    def _open_checked(self, uri: str) -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, timeout=30, check_same_thread=False)
        try:
            self._check_lab_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _unusable(self, exc: BaseException) -> AisciError:
        mapped = _database_error(self.path, exc)
        return mapped if mapped is not None else StoreError(
            f"{self.path}: cannot be read ({exc})")

    def _check_lab_schema(self, conn: sqlite3.Connection) -> None:
        """Refuse (for reading) a database that does not hold a lab this aisci reads."""
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise self._newer_schema(version)
        if version == 0:
            tables = [r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' LIMIT 4").fetchall()]
            what = ("empty: no lab tables" if not tables else
                    "a SQLite database of another program: tables " + ", ".join(tables))
            raise DamagedDatabase(self.path, what)

    def _refuse_foreign(self, conn: sqlite3.Connection) -> None:
        """Never add lab tables to (or switch to WAL) another program's database."""
        if int(conn.execute("PRAGMA user_version").fetchone()[0]) != 0:
            return
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' LIMIT 4").fetchall()]
        if tables and "ideas" not in tables:
            raise DamagedDatabase(self.path, "a SQLite database of another program: "
                                  "tables " + ", ".join(tables))

    def _newer_schema(self, version: int) -> StoreError:
        return StoreError(f"{self.path}: schema version {version} is newer than this aisci "
                          f"({SCHEMA_VERSION}); upgrade aisci")

    @contextlib.contextmanager
    def _naming_errors(self) -> Iterator[None]:
        """A SQLite error raised inside carries this store's database path, so whoever
        reports it (errors.environment_error) can name the file."""
        try:
            yield
        except sqlite3.Error as exc:
            with contextlib.suppress(AttributeError, TypeError):
                setattr(exc, DATABASE_ATTR, self.path)
            raise

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; serialised across this process's threads."""
        if self.read_only:
            raise LabReadOnly(self.lab_dir, "opened read-only")
        conn = self._conn()
        with self._write_lock, self._naming_errors():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # the first error is the news
                    conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._naming_errors():
            return self._conn().execute(sql, params).fetchall()

    def execute(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> int:
        """Run one write statement; returns lastrowid."""
        with self.transaction() as conn:
            cur = conn.execute(sql, params)
            return int(cur.lastrowid or 0)

    def close(self) -> None:
        with self._conns_lock:
            for c in self._conns:
                with contextlib.suppress(sqlite3.Error):
                    c.close()
            self._conns.clear()
        self._local = threading.local()
        if self._lock_fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fh.fileno(), fcntl.LOCK_UN)
            self._lock_fh.close()
            self._lock_fh = None

    def __enter__(self) -> LabStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        conn = self._conn()
        with self._write_lock:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise self._newer_schema(version)
            for i in range(version, SCHEMA_VERSION):
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in MIGRATIONS[i].split(";"):
                        if stmt.strip():
                            conn.execute(stmt)
                    conn.execute(f"PRAGMA user_version = {i + 1}")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")

    def schema_version(self) -> int:
        return int(self.query("PRAGMA user_version")[0][0])

    def integrity_check(self) -> str:
        return str(self.query("PRAGMA integrity_check")[0][0])

    # -- ideas ---------------------------------------------------------------------------
    def add_idea(self, name: str, template: str, data: dict[str, Any], *,
                 status: str = "proposed", origin: str = "generated",
                 source: str = "auto") -> int:
        now = time.time()
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO ideas(name, template, data, status, origin, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (name, template, json.dumps(data), status, origin, now, now))
            idea_id = int(cur.lastrowid or 0)
            conn.execute(
                "INSERT INTO idea_history(idea_id, ts, action, source, detail) VALUES (?,?,?,?,?)",
                (idea_id, now, "created", source, json.dumps({"status": status})))
        return idea_id

    def _idea(self, row: sqlite3.Row) -> IdeaRow:
        return IdeaRow(id=row["id"], name=row["name"], template=row["template"],
                       data=json.loads(row["data"]), status=row["status"],
                       novelty=_loads(row["novelty"]), origin=row["origin"],
                       created_at=row["created_at"], updated_at=row["updated_at"])

    def get_idea(self, idea_id: int) -> IdeaRow | None:
        rows = self.query("SELECT * FROM ideas WHERE id=?", (idea_id,))
        return self._idea(rows[0]) if rows else None

    def find_idea(self, key: str | int) -> IdeaRow | None:
        """By id, or by name."""
        if isinstance(key, int) or str(key).isdigit():
            return self.get_idea(int(key))
        rows = self.query("SELECT * FROM ideas WHERE name=?", (str(key),))
        return self._idea(rows[0]) if rows else None

    def list_ideas(self) -> list[IdeaRow]:
        return [self._idea(r) for r in self.query("SELECT * FROM ideas ORDER BY id")]

    def update_idea(self, idea_id: int, *, data: dict[str, Any] | None = None,
                    status: str | None = None, novelty: dict[str, Any] | None = None,
                    action: str | None = None, source: str = "auto",
                    detail: dict[str, Any] | None = None) -> None:
        sets = ["updated_at=?"]
        params: list[Any] = [time.time()]
        if data is not None:
            sets.append("data=?")
            params.append(json.dumps(data))
        if status is not None:
            sets.append("status=?")
            params.append(status)
        if novelty is not None:
            sets.append("novelty=?")
            params.append(json.dumps(novelty))
        with self.transaction() as conn:
            conn.execute(f"UPDATE ideas SET {', '.join(sets)} WHERE id=?", (*params, idea_id))
            if action:
                conn.execute(
                    "INSERT INTO idea_history(idea_id, ts, action, source, detail)"
                    " VALUES (?,?,?,?,?)",
                    (idea_id, time.time(), action, source, json.dumps(detail or {})))

    def idea_history(self, idea_id: int) -> list[dict[str, Any]]:
        return [
            {"ts": r["ts"], "action": r["action"], "source": r["source"],
             "detail": _loads(r["detail"])}
            for r in self.query("SELECT * FROM idea_history WHERE idea_id=? ORDER BY id",
                                (idea_id,))
        ]

    # -- stages --------------------------------------------------------------------------
    def set_stage(self, idea_id: int, stage: str, state: str,
                  detail: dict[str, Any] | None = None) -> None:
        now = time.time()
        with self.transaction() as conn:
            row = conn.execute("SELECT attempts FROM stages WHERE idea_id=? AND stage=?",
                               (idea_id, stage)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO stages(idea_id, stage, state, attempts, started_at, finished_at,"
                    " detail) VALUES (?,?,?,?,?,?,?)",
                    (idea_id, stage, state, 1 if state == "running" else 0,
                     now if state == "running" else None,
                     now if state in ("done", "failed", "skipped") else None,
                     json.dumps(detail or {})))
            else:
                attempts = row["attempts"] + (1 if state == "running" else 0)
                conn.execute(
                    "UPDATE stages SET state=?, attempts=?,"
                    " started_at=CASE WHEN ?='running' THEN ? ELSE started_at END,"
                    " finished_at=CASE WHEN ? IN ('done','failed','skipped') THEN ?"
                    "  ELSE finished_at END,"
                    " detail=COALESCE(?, detail) WHERE idea_id=? AND stage=?",
                    (state, attempts, state, now, state, now,
                     json.dumps(detail) if detail is not None else None, idea_id, stage))

    def stages(self, idea_id: int) -> dict[str, dict[str, Any]]:
        return {
            r["stage"]: {"state": r["state"], "attempts": r["attempts"],
                         "started_at": r["started_at"], "finished_at": r["finished_at"],
                         "detail": _loads(r["detail"]) or {}}
            for r in self.query("SELECT * FROM stages WHERE idea_id=?", (idea_id,))
        }

    # -- runs ----------------------------------------------------------------------------
    def add_run(self, idea_id: int | None, run: str, attempt: int, kind: str, *,
                status: str = "running", **fields: Any) -> int:
        cols = ["idea_id", "run", "attempt", "kind", "status"]
        vals: list[Any] = [idea_id, run, attempt, kind, status]
        for k, v in fields.items():
            cols.append(k)
            vals.append(json.dumps(v) if k == "metrics" and v is not None else v)
        return self.execute(
            f"INSERT INTO runs({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", tuple(vals))

    def update_run(self, row_id: int, **fields: Any) -> None:
        if not fields:
            return
        sets = [f"{k}=?" for k in fields]
        vals = [json.dumps(v) if k in ("metrics", "controls") and v is not None else v
                for k, v in fields.items()]
        self.execute(f"UPDATE runs SET {', '.join(sets)} WHERE id=?", (*vals, row_id))

    def _run(self, r: sqlite3.Row) -> RunRow:
        d = dict(r)
        d["metrics"] = _loads(d["metrics"])
        d["controls"] = _loads(d.get("controls"))
        return RunRow(**d)

    def runs(self, idea_id: int | None = None, kind: str | None = None) -> list[RunRow]:
        sql = "SELECT * FROM runs WHERE 1=1"
        params: list[Any] = []
        if idea_id is not None:
            sql += " AND idea_id=?"
            params.append(idea_id)
        if kind is not None:
            sql += " AND kind=?"
            params.append(kind)
        return [self._run(r) for r in self.query(sql + " ORDER BY id", tuple(params))]

    def running_runs(self) -> list[RunRow]:
        return [self._run(r) for r in self.query("SELECT * FROM runs WHERE status='running'")]

    # -- LLM calls and cost --------------------------------------------------------------
    def record_llm_call(self, *, stage: str, idea_id: int | None, provider: str, model: str,
                        input_tokens: int = 0, output_tokens: int = 0,
                        cache_read_tokens: int = 0, cache_write_tokens: int = 0,
                        latency_s: float | None = None, cost_usd: float | None = None,
                        error: str | None = None, call_id: str | None = None,
                        tries: int = 1) -> int:
        return self.execute(
            "INSERT INTO llm_calls(ts, call_id, stage, idea_id, provider, model, input_tokens,"
            " output_tokens, cache_read_tokens, cache_write_tokens, latency_s, cost_usd, error,"
            " tries) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (time.time(), call_id, stage, idea_id, provider, model, input_tokens, output_tokens,
             cache_read_tokens, cache_write_tokens, latency_s, cost_usd, error, tries))

    def spend(self, idea_id: int | None = None) -> float:
        if idea_id is None:
            row = self.query("SELECT COALESCE(SUM(cost_usd), 0) FROM llm_calls")[0]
        else:
            row = self.query("SELECT COALESCE(SUM(cost_usd), 0) FROM llm_calls WHERE idea_id=?",
                             (idea_id,))[0]
        return float(row[0])

    def spend_by(self, column: str) -> dict[Any, float]:
        if column not in ("stage", "idea_id", "model"):
            raise ValueError(column)
        return {r[0]: float(r[1]) for r in self.query(
            f"SELECT {column}, COALESCE(SUM(cost_usd), 0) FROM llm_calls GROUP BY {column}")}

    def unknown_cost_calls(self) -> int:
        return int(self.query(
            "SELECT COUNT(*) FROM llm_calls WHERE cost_usd IS NULL AND error IS NULL")[0][0])

    def llm_calls(self, idea_id: int | None = None) -> list[dict[str, Any]]:
        if idea_id is None:
            return [dict(r) for r in self.query("SELECT * FROM llm_calls ORDER BY id")]
        return [dict(r) for r in self.query(
            "SELECT * FROM llm_calls WHERE idea_id=? ORDER BY id", (idea_id,))]

    # -- events --------------------------------------------------------------------------
    def add_event(self, kind: str, data: dict[str, Any], idea_id: int | None = None) -> None:
        self.execute("INSERT INTO events(ts, kind, idea_id, data) VALUES (?,?,?,?)",
                     (time.time(), kind, idea_id, json.dumps(data, default=str)))

    def events(self, limit: int = 1000) -> list[dict[str, Any]]:
        return [
            {"ts": r["ts"], "kind": r["kind"], "idea_id": r["idea_id"], "data": json.loads(r["data"])}
            for r in self.query("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
        ][::-1]

    # -- literature cache and key/value --------------------------------------------------
    def cache_get(self, source: str, query: str, max_age_s: float) -> tuple[Any, float] | None:
        rows = self.query("SELECT ts, results FROM literature_cache WHERE source=? AND query=?",
                          (source, query))
        if not rows:
            return None
        age = time.time() - rows[0]["ts"]
        if age > max_age_s:
            return None
        return json.loads(rows[0]["results"]), age

    def cache_put(self, source: str, query: str, results: Any) -> None:
        self.execute(
            "INSERT OR REPLACE INTO literature_cache(source, query, ts, results) VALUES (?,?,?,?)",
            (source, query, time.time(), json.dumps(results)))

    def kv_get(self, key: str, default: Any = None) -> Any:
        rows = self.query("SELECT value FROM kv WHERE key=?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def kv_set(self, key: str, value: Any) -> None:
        self.execute("INSERT OR REPLACE INTO kv(key, value) VALUES (?,?)", (key, json.dumps(value)))
