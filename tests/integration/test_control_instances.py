"""Execution instances registered on a control instance (SPEC §4): registration with encrypted
secrets, "Test connection" and its precise failures, "Initialize connection", and the CLI.

A real control instance and real execution instances run on loopback, each on its own
database, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import pytest
import structlog
from cryptography.fernet import Fernet
from sqlalchemy import select

from msgcenter.logs import configure as configure_logging
from msgcenter.settings import LoggingSettings
from msgcenter.store.database import Database
from msgcenter.store.tables import exec_instance, instance_info
from tests.conftest import add_operator
from tests.control import (
    EXEC_LOGIN,
    EXEC_PASSWORD,
    KEY,
    another_database,
    call,
    control_cli,
    control_server,
    exec_server,
    garbage_server,
    nothing_listening,
    register,
    silent_server,
    tls_server,
)


def stored(db: Database, name: str) -> dict:
    with db.read() as conn:
        return dict(
            conn.execute(select(exec_instance).where(exec_instance.c.name == name)).mappings().one()
        )


def connection_test(control, name: str) -> dict:
    answer = call(control, "POST", f"/instances/{name}/test")
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture
def server_log() -> Iterator[io.StringIO]:
    """Every log line, formatted as ``msgcenter control serve`` writes them (JSON, debug), for one test."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging(LoggingSettings(format="json", level="debug"))
    structlog.configure(cache_logger_on_first_use=False)  # nothing outlives the test
    written = io.StringIO()
    root.handlers[0].setStream(written)  # type: ignore[attr-defined]
    yield written
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


def test_secrets_are_encrypted_at_rest_and_never_shown_nor_logged(db, tmp_path, server_log):
    with another_database(db, tmp_path, "exec1") as exec_db:
        add_operator(exec_db, EXEC_LOGIN, EXEC_PASSWORD, "mc_admin")
        database_url = exec_db.url
        threaded, execution = exec_server(exec_db)
        with threaded, control_server(db) as control:
            answers = [
                register(
                    control,
                    "exec1",
                    execution.url,
                    archive_method="database",
                    database_url=database_url,
                )
            ]
            answers.append(call(control, "GET", "/instances").json())
            answers.append(call(control, "GET", "/instances/exec1").json())
            report = connection_test(control, "exec1")
            assert report["ok"], report
            assert [c["step"] for c in report["checks"]] == [
                "reach",
                "credentials",
                "rights",
                "database",
            ]
            changed = call(
                control,
                "PATCH",
                "/instances/exec1",
                json={"label": "Paris", "password": EXEC_PASSWORD + "!"},
            )
            assert changed.status_code == 200, changed.text
            answers.append(changed.json())
            wrong = connection_test(control, "exec1")
            assert wrong["failure"] == f"wrong login or password for operator '{EXEC_LOGIN}'"

    shown = repr(answers)
    assert answers[0]["database_url_set"] is True and answers[-1]["label"] == "Paris"
    assert EXEC_PASSWORD not in shown and database_url not in shown and "password" not in shown
    row = stored(db, "exec1")
    assert (
        EXEC_PASSWORD not in row["password_encrypted"]
        and database_url not in row["database_url_encrypted"]
    )
    cipher = Fernet(KEY)
    assert cipher.decrypt(row["password_encrypted"].encode()).decode() == EXEC_PASSWORD + "!"
    assert cipher.decrypt(row["database_url_encrypted"].encode()).decode() == database_url
    logged = server_log.getvalue()
    assert '"action": "instance.tested"' in logged and "httpcore" in logged  # all was captured
    assert EXEC_PASSWORD not in logged and database_url not in logged


def test_connection_reports_success_and_each_precise_failure(db, tmp_path):
    with another_database(db, tmp_path, "exec1") as exec_db:
        add_operator(exec_db, EXEC_LOGIN, EXEC_PASSWORD, "mc_admin,mc_push")
        add_operator(exec_db, "pusher", "pusher-password", "mc_push")
        add_operator(exec_db, "brand_a", "brand-password", "mc_admin", folder="brand_a")
        threaded, execution = exec_server(exec_db)
        missing_db = (
            f"sqlite:///{tmp_path / 'nowhere.db'}"
            if db.is_sqlite
            else exec_db.url.rsplit("/", 1)[0] + "/no_such_db"
        )
        with (
            threaded,
            garbage_server() as garbage,
            silent_server() as silent,
            tls_server() as tls,
            another_database(db, tmp_path, "empty", migrated=False) as empty_db,
            # long enough for a loaded machine's first authenticated answer (a password hash
            # to verify), short enough for the silent server's case to time out quickly
            control_server(db, instance_timeout_seconds=3) as control,
        ):
            register(control, "good", execution.url, folder="brand_b")
            register(control, "wrongpw", execution.url, password="not-the-password")
            register(control, "pusher", execution.url, login="pusher", password="pusher-password")
            register(
                control,
                "brand",
                execution.url,
                login="brand_a",
                password="brand-password",
                folder="brand_b",
            )
            register(control, "down", nothing_listening())
            register(control, "garbage", garbage)
            register(control, "silent", silent)
            register(control, "tls", tls)
            register(
                control,
                "dbmissing",
                execution.url,
                archive_method="database",
                database_url=missing_db,
            )
            register(
                control,
                "dbempty",
                execution.url,
                archive_method="database",
                database_url=empty_db.url,
            )

            # the execution instance's first answer (cold caches) is not what is tested here
            warm = httpx.get(
                f"{execution.url}/api/v1/admin/instance", auth=(EXEC_LOGIN, EXEC_PASSWORD)
            )
            assert warm.status_code == 200, warm.text
            good = connection_test(control, "good")
            assert good["ok"] and good["failure"] is None
            assert [(c["step"], c["ok"]) for c in good["checks"]] == [
                ("reach", True),
                ("credentials", True),
                ("rights", True),
                ("folder", True),
            ]
            failures = {
                name: connection_test(control, name)
                for name in (
                    "wrongpw",
                    "pusher",
                    "brand",
                    "down",
                    "garbage",
                    "silent",
                    "tls",
                    "dbmissing",
                    "dbempty",
                )
            }

    assert all(not report["ok"] for report in failures.values())
    failure = {name: report["failure"] for name, report in failures.items()}
    step = {
        name: next(c["step"] for c in report["checks"] if not c["ok"])
        for name, report in failures.items()
    }
    assert (
        failure["wrongpw"] == "wrong login or password for operator 'mc'"
        and step["wrongpw"] == "credentials"
    )
    assert (
        failure["pusher"] == "operator 'pusher' lacks mc_admin (its rights: mc_push)"
        and step["pusher"] == "rights"
    )
    assert failure["brand"] == (
        "operator 'brand_a' is restricted to folder 'brand_a' there, "
        "but this registration publishes into folder 'brand_b'"
    )
    assert (
        failure["down"].startswith("connection refused by 127.0.0.1:") and step["down"] == "reach"
    )
    assert failure["garbage"] == (
        "not an msgcenter execution instance: GET /api/v1/admin/instance answered HTTP 200 with text/html, not JSON"
    )
    assert failure["silent"].startswith(
        "timed out after 3 s waiting for the answer (GET http://127.0.0.1:"
    )
    assert (
        failure["tls"].startswith("TLS certificate of 127.0.0.1:")
        and "not trusted" in failure["tls"]
    )
    assert step["dbmissing"] == step["dbempty"] == "database"
    if db.is_sqlite:
        assert failure["dbmissing"].startswith("no database file at sqlite:///")
    else:
        assert failure["dbmissing"].startswith("cannot connect to postgresql+psycopg://")
        assert "no_such_db" in failure["dbmissing"]
    assert failure["dbempty"].endswith("has no msgcenter schema")
    # the web checks of the database-method registrations passed: only the database failed
    assert [c["ok"] for c in failures["dbempty"]["checks"]] == [True, True, True, False]


def test_initialize_assigns_one_id_kept_on_both_sides(db, tmp_path):
    with (
        another_database(db, tmp_path, "exec1") as exec_db,
        another_database(db, tmp_path, "control2") as control2_db,
    ):
        add_operator(exec_db, EXEC_LOGIN, EXEC_PASSWORD, "mc_admin")
        add_operator(exec_db, "pusher", "pusher-password", "mc_push")
        threaded, execution = exec_server(exec_db)
        with threaded, control_server(db) as control, control_server(control2_db) as control2:
            register(control, "exec1", execution.url)
            first = call(control, "POST", "/instances/exec1/initialize")
            assert first.status_code == 200, first.text
            assigned = first.json()["instance_id"]
            assert assigned.startswith("exec1-") and len(assigned) == len("exec1-") + 12
            again = call(control, "POST", "/instances/exec1/initialize")
            assert again.status_code == 200 and again.json()["instance_id"] == assigned
            assert exec_identity(execution.url)["instance_id"] == assigned

            # The execution instance refuses another id unless forced.
            other = httpx.put(
                f"{execution.url}/api/v1/admin/instance",
                json={"instance_id": "other"},
                auth=(EXEC_LOGIN, EXEC_PASSWORD),
            )
            assert other.status_code == 409
            assert f"already holds instance id '{assigned}', not 'other'" in other.json()["detail"]
            pusher = httpx.put(
                f"{execution.url}/api/v1/admin/instance",
                json={"instance_id": "other", "force": True},
                auth=("pusher", "pusher-password"),
            )
            assert pusher.status_code == 403
            forced = httpx.put(
                f"{execution.url}/api/v1/admin/instance",
                json={"instance_id": "other", "force": True},
                auth=(EXEC_LOGIN, EXEC_PASSWORD),
            )
            assert forced.status_code == 200 and forced.json()["instance_id"] == "other"

            # This control instance keeps its id: refused, then forced back.
            refused = call(control, "POST", "/instances/exec1/initialize")
            assert refused.status_code == 409, refused.text
            assert "already holds instance id 'other'" in refused.json()["detail"]
            back = call(control, "POST", "/instances/exec1/initialize", params={"force": "true"})
            assert back.status_code == 200 and back.json()["instance_id"] == assigned
            assert exec_identity(execution.url)["instance_id"] == assigned

            # The same execution instance registered twice here is refused...
            register(control, "again", execution.url)
            twice = call(control, "POST", "/instances/again/initialize")
            assert twice.status_code == 409
            assert (
                f"holds instance id '{assigned}', which belongs to registration 'exec1'"
                in twice.json()["detail"]
            )
            # ...but another control instance sharing it (through folders) adopts its id.
            register(control2, "shared", execution.url)
            adopted = call(control2, "POST", "/instances/shared/initialize")
            assert adopted.status_code == 200 and adopted.json()["instance_id"] == assigned
        with exec_db.read() as conn:
            assert conn.execute(select(instance_info.c.value)).scalars().all() == [assigned]
    assert (
        stored(db, "exec1")["instance_id"] == assigned
        and stored(db, "again")["instance_id"] is None
    )


def test_initialize_says_why_it_cannot(db, tmp_path):
    with another_database(db, tmp_path, "exec1") as exec_db:
        add_operator(exec_db, "pusher", "pusher-password", "mc_push")
        threaded, execution = exec_server(exec_db)
        with threaded, control_server(db) as control:
            register(control, "pusher", execution.url, login="pusher", password="pusher-password")
            register(control, "down", nothing_listening())
            lacking = call(control, "POST", "/instances/pusher/initialize").json()
            down = call(control, "POST", "/instances/down/initialize").json()
            unknown = call(control, "POST", "/instances/nosuch/initialize")
    assert lacking["type"] == "urn:msgcenter:problem:exec-instance"
    assert lacking["detail"] == "operator 'pusher' lacks mc_admin (its rights: mc_push)"
    assert down["detail"].startswith("connection refused by 127.0.0.1:")
    assert unknown.status_code == 404


def test_registration_refuses_bad_input(db):
    with control_server(db) as control:
        base = {
            "name": "exec1",
            "label": "x",
            "url": "http://127.0.0.1:1",
            "login": "mc",
            "password": "p",
        }
        cases = {
            "/url": {"url": "ftp://host"},
            "/name": {"name": "bad name"},
            "/folder": {"folder": "a b"},
            "/database_url": {"archive_method": "database", "database_url": "mysql://x"},
        }
        for field, change in cases.items():
            answer = call(control, "POST", "/instances", json=base | change)
            assert answer.status_code == 422 and answer.json()["field"] == field, answer.text
        credentials_in_url = call(
            control, "POST", "/instances", json=base | {"url": "http://mc:p@127.0.0.1:1"}
        )
        assert "not in the URL" in credentials_in_url.json()["detail"]
        no_database = call(
            control, "POST", "/instances", json=base | {"archive_method": "database"}
        )
        assert (
            no_database.status_code == 400
            and "needs a database URL" in no_database.json()["detail"]
        )
        assert call(control, "POST", "/instances", json=base).status_code == 201
        taken = call(control, "POST", "/instances", json=base)
        assert taken.status_code == 409 and "already exists" in taken.json()["title"]
        anonymous = httpx.get(f"{control.url}/api/v1/instances")
        assert anonymous.status_code == 401
    with control_server(db, credentials_key="") as keyless:
        no_key = call(keyless, "POST", "/instances", json=base | {"name": "exec2"})
        assert (
            no_key.status_code == 500
            and no_key.json()["title"] == "control.credentials_key is not set"
        )
        assert "msgcenter control new-key" in no_key.json()["detail"]


def exec_identity(url: str) -> dict:
    answer = httpx.get(f"{url}/api/v1/admin/instance", auth=(EXEC_LOGIN, EXEC_PASSWORD))
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.mark.slow  # runs the msgcenter command as a process
def test_cli_registers_lists_tests_and_initializes(db, tmp_path):
    with another_database(db, tmp_path, "exec1") as exec_db:
        add_operator(exec_db, EXEC_LOGIN, EXEC_PASSWORD, "mc_admin")
        threaded, execution = exec_server(exec_db)
        with threaded:
            bad = control_cli(
                db.url,
                tmp_path,
                "instance",
                "add",
                "bad",
                "--url",
                "ftp://x",
                "--login",
                "mc",
                "--password",
                "x",
            )
            assert (
                bad.returncode == 1
                and "invalid url" in bad.stderr
                and "Traceback" not in bad.stderr
            )
            added = control_cli(
                db.url,
                tmp_path,
                "instance",
                "add",
                "exec1",
                "--url",
                execution.url,
                "--login",
                EXEC_LOGIN,
                "--password",
                EXEC_PASSWORD,
            )
            assert added.returncode == 0, added.stderr
            wrong = control_cli(
                db.url,
                tmp_path,
                "instance",
                "add",
                "wrong",
                "--url",
                execution.url,
                "--login",
                EXEC_LOGIN,
                "--password",
                "nope",
            )
            assert wrong.returncode == 0, wrong.stderr
            tested = control_cli(db.url, tmp_path, "instance", "test", "exec1")
            assert tested.returncode == 0 and "holds mc_admin" in tested.stdout, (
                tested.stdout + tested.stderr
            )
            failed = control_cli(db.url, tmp_path, "instance", "test", "wrong")
            assert (
                failed.returncode == 1
                and "wrong login or password for operator 'mc'" in failed.stdout
            )
            initialized = control_cli(db.url, tmp_path, "instance", "init", "exec1")
            assert initialized.returncode == 0, initialized.stderr
            assigned = exec_identity(execution.url)["instance_id"]
            assert f"has instance id {assigned}" in initialized.stdout
            listed = control_cli(db.url, tmp_path, "instance", "list")
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[1]: line for line in listed.stdout.splitlines() if line.startswith("│")}
    assert assigned in lines["exec1"] and "yes" in lines["exec1"]
    assert "not initialized" in lines["wrong"]
    for output in (added, tested, initialized, listed):
        assert EXEC_PASSWORD not in output.stdout + output.stderr
