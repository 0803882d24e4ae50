"""State files and logs: atomic JSON with a schema version and a backup, append-only JSONL.

Rules (ARCHITECTURE.md, State and recovery):
- A JSON file is written to a temporary file in the same folder, flushed and fsynced, then
  ``os.replace``d over the old one, whose previous content is kept as ``NAME.bak``.
- Every file carries ``schema_version``. A file from a newer GridDesk is refused, not rewritten.
- A corrupt or unreadable file is never overwritten and nothing is lost: its bytes are kept as
  ``NAME.corrupt-YYYYMMDD-HHMMSS``, the error names the file, and the backup is used when it is
  good (the caller is told which).
- Journals and logs are JSON lines, appended and fsynced one record at a time; a last line torn
  by a crash is reported and skipped, never fatal.
- Secrets never reach a file: fields that look like keys are masked before writing.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
SECRET_FIELD = re.compile(r"(api_?key|secret|password|passphrase|private_?key|token)", re.IGNORECASE)
MASK = "***"


class StoreError(Exception):
    """A state file cannot be read or written; the message names the file."""

    def __init__(self, path: Path, message: str):
        super().__init__(f"{path}: {message}")
        self.path = Path(path)


class CorruptFileError(StoreError):
    """The file (and its backup) could not be read; ``kept`` is where its bytes were saved."""

    def __init__(self, path: Path, message: str, kept: Path | None):
        super().__init__(path, message + (f"; its content was kept as {kept.name}" if kept else ""))
        self.kept = kept


@dataclass
class Loaded:
    """What ``read_json`` found: the data, and whether it came from the backup."""

    data: dict
    from_backup: bool = False
    problem: str = ""  # why the main file was not used, when it was not


def redact(value: Any) -> Any:
    """A copy with every field whose name looks like a secret masked (nested dicts and lists)."""
    if isinstance(value, dict):
        return {k: MASK if SECRET_FIELD.search(str(k)) and v not in (None, "") else redact(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: str | os.PathLike, data: dict, *, schema_version: int = SCHEMA_VERSION,
                      backup: bool = True, durable: bool = True) -> None:
    """Write ``data`` (a dict; ``schema_version`` is set) so that a crash at any moment leaves
    either the old file or the new one, never a mix. The old content becomes ``NAME.bak``.
    ``durable``: forced to disk before it replaces the old one (a power cut loses nothing);
    without it a killed process still loses nothing, and a write costs a fraction."""
    path = Path(path)
    if not isinstance(data, dict):
        raise StoreError(path, "state must be a JSON object")
    payload = {"schema_version": schema_version, **{k: v for k, v in data.items() if k != "schema_version"}}
    text = json.dumps(redact(payload), indent=2, sort_keys=False, default=_json_default)
    private_folder(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.write("\n")
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        if backup and path.exists():
            _keep_backup(path)
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _keep_backup(path: Path) -> None:
    """``NAME.bak`` becomes the current content: a second name for the file (no copy; the
    write that follows replaces ``NAME`` with a new file), or a copy where links are not had."""
    bak = path.with_name(path.name + ".bak")
    link = path.with_name(f".{path.name}.bak.tmp")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link)
    try:
        os.link(path, link)
        os.replace(link, bak)
    except OSError:
        shutil.copy2(path, bak)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _parse(path: Path, max_schema: int) -> dict:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise StoreError(path, f"cannot be read ({exc.strerror or exc})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(path, f"is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise StoreError(path, "is not a JSON object")
    version = data.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise StoreError(path, "has no valid schema_version")
    if version > max_schema:
        raise StoreError(path, f"was written by a newer GridDesk (schema {version}, this one reads up to {max_schema})")
    return data


def read_json(path: str | os.PathLike, *, max_schema: int = SCHEMA_VERSION, default: dict | None = None,
              keep: bool = True) -> Loaded:
    """Read a state file. Missing: ``default`` (or an error when None). Corrupt: its bytes are
    kept aside (``keep`` False, for a command that only reads: nothing is written), and the
    backup is used if it is good; otherwise CorruptFileError."""
    path = Path(path)
    if not path.exists():
        if default is not None:
            return Loaded(dict(default))
        raise StoreError(path, "does not exist")
    try:
        return Loaded(_parse(path, max_schema))
    except StoreError as exc:
        if "newer GridDesk" in str(exc):
            raise  # not corrupt: leave it alone for the newer version
        problem = str(exc)
    kept = _keep_aside(path) if keep else None
    bak = path.with_name(path.name + ".bak")
    if bak.exists():
        try:
            return Loaded(_parse(bak, max_schema), from_backup=True,
                          problem=f"{problem}; " + (f"kept as {kept.name}, " if kept else "") + f"using {bak.name}")
        except StoreError as bexc:
            problem += f"; the backup {bak.name} is no good either ({bexc})"
    raise CorruptFileError(path, problem.split(": ", 1)[-1], kept)


def _keep_aside(path: Path) -> Path | None:
    """Copy a bad file's bytes to NAME.corrupt-TIMESTAMP (never overwriting an earlier one);
    bytes kept aside already (the same file read again, by each command) are kept once."""
    try:
        raw = path.read_bytes()
        for earlier in sorted(path.parent.glob(f"{glob.escape(path.name)}.corrupt-*")):
            if earlier.stat().st_size == len(raw) and earlier.read_bytes() == raw:
                return earlier
    except OSError:
        pass
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    try:
        shutil.copy2(path, target)
    except OSError:
        return None
    return target


def private_folder(folder: Path) -> None:
    """Make ``folder`` and any missing parents readable by the user only (a data folder holds
    fills, balances and positions)."""
    missing = []
    for d in (folder, *folder.parents):
        if d.exists():
            break
        missing.append(d)
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=0o700)
            os.chmod(d, 0o700)


class JsonLines:
    """An append-only JSON-lines file: one record a line, flushed to the OS as it is written
    (a killed process loses nothing); with ``fsync`` also forced to disk at once, else when
    ``sync()`` is called (the trading journal syncs just before the state that follows it)."""

    def __init__(self, path: str | os.PathLike, *, fsync: bool = True):
        self.path = Path(path)
        private_folder(self.path.parent)
        self.fsync = fsync
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._fh = os.fdopen(fd, "a", encoding="utf-8")  # kept open for appends
        if self._fh.tell() > 0 and not self._ends_with_newline():
            self._fh.write("\n")  # a torn last line stays as it is; the next record starts clean

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def append(self, record: dict) -> None:
        line = json.dumps(redact(record), default=_json_default, separators=(",", ":"))
        self._fh.write(line + "\n")
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())

    def sync(self) -> None:
        """Force what was appended to disk (safe to call from a worker thread)."""
        if not self._fh.closed:
            os.fsync(self._fh.fileno())

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self) -> JsonLines:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_jsonl(path: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """The records of a JSON-lines file and a list of problems (line number and why) for the
    lines that could not be read, such as a last line torn by a crash."""
    path = Path(path)
    records: list[dict] = []
    problems: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{path.name}: line {n}: unreadable record ({exc.msg})")
                continue
            if isinstance(rec, dict):
                records.append(rec)
            else:
                problems.append(f"{path.name}: line {n}: not a JSON object")
    return records, problems


class EventLog(JsonLines):
    """Structured log of one run: ``logs/trading_YYYYMMDD_HHMMSS.jsonl``, one event a line
    with its UTC time in ms (order placed, filled, cancelled, grid generated, risk decision,
    error, ...)."""

    def __init__(self, log_dir: str | os.PathLike, *, started: float | None = None, fsync: bool = False):
        stamp = time.strftime("%Y%m%d_%H%M%S", time.gmtime(started if started is not None else time.time()))
        path = Path(log_dir) / f"trading_{stamp}.jsonl"
        n = 1
        while path.exists() and started is None:
            path = Path(log_dir) / f"trading_{stamp}_{n}.jsonl"
            n += 1
        super().__init__(path, fsync=fsync)
        self.listeners: list = []  # each called with (event, fields) after the line is written

    def log(self, event: str, **fields: Any) -> None:
        self.append({"ts": int(time.time() * 1000), "event": event, **fields})
        for listen in self.listeners:
            listen(event, fields)


def export_logs(log_dir: str | os.PathLike, out: str | os.PathLike) -> tuple[int, list[str]]:
    """All ``trading_*.jsonl`` logs of a folder, oldest first, as one JSON file (atomic).
    Returns (events written, problems found)."""
    log_dir = Path(log_dir)
    events: list[dict] = []
    problems: list[str] = []
    for path in sorted(log_dir.glob("trading_*.jsonl")):
        recs, probs = read_jsonl(path)
        events.extend({**r, "file": path.name} for r in recs)
        problems.extend(probs)
    events.sort(key=lambda r: (r.get("ts", 0), r["file"]))
    write_json_atomic(out, {"events": events, "problems": problems}, backup=False)
    return len(events), problems


class FolderBusy(StoreError):
    """Another process trades this data folder."""


class FolderLock:
    """One process trades a data folder at a time (ARCHITECTURE.md, State and recovery): an OS
    lock (``fcntl.flock``, let go by the kernel when the process dies, however it dies) on
    ``<folder>/griddesk.lock``, which also names the process holding it. ``griddesk run`` and the
    app hold it while they run; a read-only command (``griddesk status``) never takes it."""

    NAME = "griddesk.lock"

    def __init__(self, folder: str | os.PathLike, what: str):
        self.path = Path(folder) / self.NAME
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        import fcntl

        private_folder(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise FolderBusy(self.path.parent, f"is being traded by {holder}: one process per data folder "
                                               "(stop it first, or use another --data-dir)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({self.what})\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # (the content is left: it names the last holder, and no lock is held)
            self._fd = None
