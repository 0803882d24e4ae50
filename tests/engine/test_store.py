"""State files and logs: atomic writes, backups, corrupt files kept, JSON lines, secrets masked."""

import json
import os

import pytest

from engine.store import (
    CorruptFileError,
    EventLog,
    JsonLines,
    StoreError,
    export_logs,
    read_json,
    read_jsonl,
    write_json_atomic,
)


def test_write_then_read_with_schema_version_and_backup(tmp_path):
    p = tmp_path / "state" / "bot_state.json"
    write_json_atomic(p, {"systems": {"a": 1}})
    assert read_json(p).data == {"schema_version": 1, "systems": {"a": 1}}
    write_json_atomic(p, {"systems": {"a": 2}})
    assert read_json(p).data["systems"] == {"a": 2}
    assert json.loads((tmp_path / "state" / "bot_state.json.bak").read_text())["systems"] == {"a": 1}
    assert not [f for f in os.listdir(p.parent) if f.endswith(".tmp")]


def test_a_crash_before_the_replace_leaves_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "open_orders.json"
    write_json_atomic(p, {"orders": [1, 2]})

    def crash(src, dst):
        raise KeyboardInterrupt  # the process dies between writing the temporary file and the rename

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        write_json_atomic(p, {"orders": [3]})
    monkeypatch.undo()
    assert read_json(p).data["orders"] == [1, 2]
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # no litter


def test_a_corrupt_file_is_kept_reported_and_the_backup_used(tmp_path):
    p = tmp_path / "cryptos.json"
    write_json_atomic(p, {"systems": ["good"]})
    write_json_atomic(p, {"systems": ["newer"]})
    p.write_text('{"schema_version": 1, "systems": ["tor')  # torn by a crash or an editor
    got = read_json(p)
    assert got.from_backup and got.data["systems"] == ["good"]
    assert "cryptos.json" in got.problem and "not valid JSON" in got.problem
    kept = [f for f in os.listdir(tmp_path) if f.startswith("cryptos.json.corrupt-")]
    assert len(kept) == 1 and (tmp_path / kept[0]).read_text().endswith('["tor')
    assert p.read_text().endswith('["tor')  # reading never rewrites it


def test_corrupt_without_a_good_backup_names_the_file(tmp_path):
    p = tmp_path / "grid_config.json"
    p.write_bytes(b"\xff\xfe not json")
    with pytest.raises(CorruptFileError) as err:
        read_json(p)
    assert "grid_config.json" in str(err.value) and err.value.kept.exists()
    assert err.value.kept.read_bytes() == b"\xff\xfe not json"


def test_a_corrupt_file_read_again_and_again_is_kept_once(tmp_path):
    """(Each read, by status and every start, made another copy of the same bytes.) A file
    corrupt in another way later is kept again."""
    p = tmp_path / "bot_state.json"
    p.write_text('{"schema_version": 1, "kill_all": tr')
    for _ in range(3):
        with pytest.raises(CorruptFileError) as err:
            read_json(p)
    copies = sorted(f for f in os.listdir(tmp_path) if ".corrupt-" in f)
    assert len(copies) == 1 and err.value.kept.name == copies[0]
    p.write_text('{"schema_version": 1, "kill_all": fa')
    with pytest.raises(CorruptFileError):
        read_json(p)
    assert len([f for f in os.listdir(tmp_path) if ".corrupt-" in f]) == 2


def test_newer_schema_and_missing_version_are_refused(tmp_path):
    p = tmp_path / "bot_state.json"
    p.write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(StoreError, match="newer GridDesk"):
        read_json(p)
    assert not [f for f in os.listdir(tmp_path) if ".corrupt-" in f]  # not corrupt: left alone
    q = tmp_path / "x.json"
    q.write_text("{}")
    with pytest.raises(CorruptFileError, match="no valid schema_version"):
        read_json(q)
    assert read_json(tmp_path / "missing.json", default={"systems": []}).data == {"systems": []}


def test_secrets_never_reach_a_file(tmp_path):
    p = tmp_path / "cryptos.json"
    write_json_atomic(p, {"systems": [{"name": "a", "api_key": "AKIA-REAL-KEY", "exchange": {"secret": "s3cr3t"}}]})
    text = p.read_text()
    assert "AKIA-REAL-KEY" not in text and "s3cr3t" not in text and '"api_key": "***"' in text
    log = EventLog(tmp_path / "logs")
    log.log("error", message="auth failed", apiKey="AKIA-REAL-KEY")
    log.close()
    assert "AKIA-REAL-KEY" not in log.path.read_text()


def test_journal_appends_and_survives_a_torn_last_line(tmp_path):
    p = tmp_path / "journal.jsonl"
    with JsonLines(p) as j:
        j.append({"fill": 1})
        j.append({"fill": 2})
    with open(p, "a") as fh:
        fh.write('{"fill": 3, "pri')  # the process died mid-write
    with JsonLines(p) as j:  # the next run appends after it on a fresh line
        j.append({"fill": 4})
    recs, problems = read_jsonl(p)
    assert [r["fill"] for r in recs] == [1, 2, 4]
    assert len(problems) == 1 and "line 3" in problems[0]


def test_event_logs_export_to_one_file(tmp_path):
    logs = tmp_path / "logs"
    a = EventLog(logs, started=1_700_000_000)
    a.log("order_placed", cid="gd1-3-1", price=100.0)
    a.close()
    b = EventLog(logs, started=1_700_000_100)
    b.log("order_filled", cid="gd1-3-1")
    b.close()
    assert a.path.name == "trading_20231114_221320.jsonl"
    n, problems = export_logs(logs, tmp_path / "export.json")
    data = json.loads((tmp_path / "export.json").read_text())
    assert n == 2 and not problems
    assert [e["event"] for e in data["events"]] == ["order_placed", "order_filled"]


def test_the_backup_keeps_the_old_content_when_the_new_replaces_it(tmp_path):
    """(The backup is a second name for the old file, not a copy: the new content goes to a new
    file, so the backup's does not change under it.)"""
    p = tmp_path / "state.json"
    for n in range(3):
        write_json_atomic(p, {"n": n}, durable=n != 1)
        assert read_json(p).data["n"] == n
        if n:
            assert read_json(tmp_path / "state.json.bak").data["n"] == n - 1
    assert sorted(os.listdir(tmp_path)) == ["state.json", "state.json.bak"]


def test_the_data_folder_and_everything_in_it_is_the_users_alone(tmp_path):
    """(The journal and logs were 0644 in 0755 folders while state files were 0600.)"""
    data = tmp_path / "data"
    log = JsonLines(data / "logs" / "events.jsonl")
    log.append({"event": "x"})
    log.close()
    write_json_atomic(data / "state" / "systems" / "a.json", {"x": 1})
    for d in (data, data / "logs", data / "state", data / "state" / "systems"):
        assert d.stat().st_mode & 0o777 == 0o700, d
    for f in (data / "logs" / "events.jsonl", data / "state" / "systems" / "a.json"):
        assert f.stat().st_mode & 0o777 == 0o600, f
    again = JsonLines(data / "logs" / "events.jsonl")  # appends after what is there
    again.append({"event": "y"})
    again.close()
    assert [r["event"] for r in read_jsonl(data / "logs" / "events.jsonl")[0]] == ["x", "y"]
