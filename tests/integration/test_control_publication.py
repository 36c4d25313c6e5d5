"""Publication from a control instance to execution instances (SPEC §4): publish, the state per
instance, unpublish, the log, catch-up of an instance that was down, and instances that answer
garbage or nothing.

A real control instance and two real execution instances (each with its own database) run on
loopback, on SQLite and on PostgreSQL; the executions send through a real SMTP server.
"""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from msgcenter.publications import PublicationSpec
from msgcenter.store.database import Database
from msgcenter.store.tables import archived_event, event, template_version
from tests.conftest import add_operator, wait_for
from tests.control import (
    EXEC_LOGIN,
    EXEC_PASSWORD,
    another_database,
    call,
    control_cli,
    control_server,
    exec_server,
    garbage_server,
    order_template,
    register,
    silent_server,
)
from tests.processing import all_final, statuses

EXEC_AUTH = (EXEC_LOGIN, EXEC_PASSWORD)
#: an operator of exec2 pushing into folder brand_b
BRAND_B = ("brand_b", "brand-b-password")
CTX = {"client": {"firstname": "Ann"}, "order": {"id": "1001"}}


def push(url: str, email: str, auth: tuple[str, str] = EXEC_AUTH) -> int:
    answer = httpx.post(
        f"{url}/api/v1/events/rt",
        json={"type": "order_confirmation", "email": email, "ctx": CTX},
        auth=auth,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def active_publications(url: str) -> list[dict]:
    answer = httpx.get(f"{url}/api/v1/admin/publications", auth=EXEC_AUTH)
    assert answer.status_code == 200, answer.text
    return answer.json()


def state(control, template: str = "order_mail") -> dict:
    answer = call(control, "GET", f"/templates/{template}/publication")
    assert answer.status_code == 200, answer.text
    return answer.json()


def per_instance(publication: dict) -> dict[str, tuple[str, int]]:
    return {i["instance"]: (i["state"], i["version"]) for i in publication["instances"]}


def assert_archives_match(control, executions: dict[str, tuple[Database, str | None]]) -> None:  # type: ignore[no-untyped-def]
    """Archive every execution now; the control instance then holds each one's events of the
    registration's folder, with their statuses, under that execution's instance id."""
    for name, (exec_db, folder) in executions.items():
        initialized = call(control, "POST", f"/instances/{name}/initialize")
        assert initialized.status_code == 200, initialized.text
        run = call(control, "POST", f"/archives/{name}/run", params={"wait": 60}).json()
        assert run["outcome"] == "complete", run
        with exec_db.read() as conn:
            own = dict(
                conn.execute(
                    select(event.c.id, event.c.status).where(
                        event.c.folder.is_(None) if folder is None else event.c.folder == folder
                    )
                ).all()
            )
        with control.db.read() as conn:
            archived = dict(
                conn.execute(
                    select(archived_event.c.event_id, archived_event.c.status).where(
                        archived_event.c.instance_id == initialized.json()["instance_id"]
                    )
                ).all()
            )
        assert archived == own, name


def test_publish_to_two_executions_send_then_unpublish(db, tmp_path, smtp_server):
    order_template(db)
    with (
        another_database(db, tmp_path, "exec1") as db1,
        another_database(db, tmp_path, "exec2") as db2,
    ):
        for exec_db in (db1, db2):
            add_operator(exec_db, EXEC_LOGIN, EXEC_PASSWORD)
        (threaded1, exec1), (threaded2, exec2) = (
            exec_server(db1, smtp_server.port),
            exec_server(db2, smtp_server.port),
        )
        with threaded1, threaded2, control_server(db) as control:
            register(control, "exec1", exec1.url)
            register(control, "exec2", exec2.url, folder="brand_b")

            published = call(control, "POST", "/templates/order_mail/publish")
            assert published.status_code == 200, published.text
            assert published.json()["published"] and published.json()["version"] == 1
            assert per_instance(published.json()) == {
                "exec1": ("published", 1),
                "exec2": ("published", 1),
            }
            for instance in published.json()["instances"]:
                assert instance["failure_reason"] is None and instance["last_attempt"] is not None
            for url, folder in ((exec1.url, None), (exec2.url, "brand_b")):
                flavours = active_publications(url)
                assert sorted(p["queue"] for p in flavours) == ["batch", "rt"]
                assert {(p["template"], p["version"], p["folder"]) for p in flavours} == {
                    ("order_mail", 1, folder)
                }
                assert flavours[0]["content"]["blocks"] == {
                    "footer": "<p>Shop Ltd for {{ event.email }}</p>"
                }

            # events pushed to each execution are sent with the published template
            sent = [push(exec1.url, "ann@example.com")]
            wait_for(lambda: all_final(db1, sent), message="the event on exec1 to be final")
            assert statuses(db1, sent) == {sent[0]: "sent"}
            (received,) = smtp_server.handler.to("ann@example.com")
            assert received.message["Subject"] == "Order 1001 confirmed"
            assert "Shop Ltd for ann@example.com" in received.data.decode()
            # exec2 holds the template in folder brand_b: that brand's events are routed to it
            add_operator(db2, *BRAND_B, "mc_push", folder="brand_b")
            more = [push(exec2.url, f"dan{i}@example.com", BRAND_B) for i in range(3)]
            wait_for(lambda: all_final(db2, more), message="the events on exec2 to be final")
            assert set(statuses(db2, more).values()) == {"sent"}
            assert_archives_match(control, {"exec1": (db1, None), "exec2": (db2, "brand_b")})

            republished = call(control, "POST", "/templates/order_mail/publish").json()
            assert per_instance(republished) == {
                "exec1": ("published", 2),
                "exec2": ("published", 2),
            }
            assert {p["version"] for p in active_publications(exec2.url)} == {2}

            unpublished = call(control, "POST", "/templates/order_mail/unpublish")
            assert unpublished.status_code == 200, unpublished.text
            assert not unpublished.json()["published"]
            assert per_instance(unpublished.json()) == {
                "exec1": ("unpublished", 0),
                "exec2": ("unpublished", 0),
            }
            assert active_publications(exec1.url) == active_publications(exec2.url) == []
            again = call(control, "POST", "/templates/order_mail/unpublish")
            assert again.status_code == 409 and "is not published" in again.json()["title"]

            ignored = {
                exec1.url: push(exec1.url, "bob@example.com"),
                exec2.url: push(exec2.url, "bob@example.com", BRAND_B),
            }
            wait_for(
                lambda: (
                    all_final(db1, [ignored[exec1.url]]) and all_final(db2, [ignored[exec2.url]])
                )
            )
            assert statuses(db1, [ignored[exec1.url]]) == {
                ignored[exec1.url]: "not_taken_into_account"
            }
            assert statuses(db2, [ignored[exec2.url]]) == {
                ignored[exec2.url]: "not_taken_into_account"
            }
            assert smtp_server.handler.to("bob@example.com") == []
            assert_archives_match(control, {"exec1": (db1, None), "exec2": (db2, "brand_b")})
            log = state(control)["log"]

    assert [(e["action"], e["version"], e["operator"]) for e in log] == [
        ("unpublish", 2, "ctl"),
        ("publish", 2, "ctl"),
        ("publish", 1, "ctl"),
    ]
    with db.read() as conn:
        frozen = conn.execute(
            select(template_version.c.version, template_version.c.spec).order_by(
                template_version.c.version
            )
        ).all()
    assert [v for v, _ in frozen] == [1, 2]
    spec = PublicationSpec.model_validate_json(frozen[0].spec)
    assert spec.template == "order_mail" and spec.content.blocks == {
        "footer": "<p>Shop Ltd for {{ event.email }}</p>"
    }


def test_a_syntax_error_is_refused_with_its_line_before_anything_is_stored_or_sent(db, tmp_path):
    order_template(db, html="<p>\nHello\n{{ ctx.order.id }\n</p>")
    with another_database(db, tmp_path, "exec1") as db1:
        add_operator(db1, EXEC_LOGIN, EXEC_PASSWORD)
        threaded, exec1 = exec_server(db1)
        with threaded, control_server(db) as control:
            register(control, "exec1", exec1.url)
            refused = call(control, "POST", "/templates/order_mail/publish")
            after = state(control)
            flavours = active_publications(exec1.url)
            missing = call(control, "POST", "/templates/no_such/publish")
    assert refused.status_code == 400, refused.text
    assert refused.json()["type"] == "urn:msgcenter:problem:template-syntax"
    assert "html, line 3" in refused.json()["detail"]
    assert not after["published"] and after["version"] == 0 and after["log"] == []
    assert per_instance(after) == {"exec1": ("unpublished", 0)}
    assert flavours == []
    assert missing.status_code == 404


def test_an_instance_down_during_publication_catches_up_when_it_returns(db, tmp_path, smtp_server):
    order_template(db)
    with (
        another_database(db, tmp_path, "exec1") as db1,
        another_database(db, tmp_path, "exec2") as db2,
    ):
        for exec_db in (db1, db2):
            add_operator(exec_db, EXEC_LOGIN, EXEC_PASSWORD)
        threaded1, exec1 = exec_server(db1, smtp_server.port)
        down, exec2 = exec_server(db2, smtp_server.port)
        with threaded1, control_server(db, publication_retry_seconds=0.3) as control:
            register(control, "exec1", exec1.url)
            register(control, "exec2", exec2.url)  # registered, but its server is not running

            published = call(control, "POST", "/templates/order_mail/publish").json()
            assert per_instance(published) == {"exec1": ("published", 1), "exec2": ("pending", 0)}
            (pending,) = [i for i in published["instances"] if i["instance"] == "exec2"]
            assert (
                pending["failure_reason"]
                == f"connection refused by 127.0.0.1:{down.port} (nothing listening there?)"
            )
            # still pending a few catch-up rounds later, its last attempt moving on
            first_attempt = pending["last_attempt"]
            wait_for(
                lambda: (
                    per_instance(state(control))["exec2"] == ("pending", 0)
                    and state(control)["instances"][1]["last_attempt"] != first_attempt
                )
            )

            back, _ = exec_server(db2, smtp_server.port, port=down.port)
            with back:
                wait_for(
                    lambda: per_instance(state(control))["exec2"] == ("published", 1),
                    message="exec2 to catch up",
                )
                assert state(control)["instances"][1]["failure_reason"] is None
                sent = push(exec2.url, "late@example.com")
                wait_for(lambda: all_final(db2, [sent]))
                assert statuses(db2, [sent]) == {sent: "sent"}

                # a disabled instance is left alone; enabled again, it gets what it missed at once
                assert call(control, "POST", "/instances/exec1/disable").json()["enabled"] is False
                assert per_instance(
                    call(control, "POST", "/templates/order_mail/publish").json()
                ) == {"exec1": ("published", 1), "exec2": ("published", 2)}
                assert {p["version"] for p in active_publications(exec1.url)} == {1}
                assert call(control, "POST", "/instances/exec1/enable").json()["enabled"] is True
                assert per_instance(state(control))["exec1"] == ("published", 2)
                assert {p["version"] for p in active_publications(exec1.url)} == {2}


def test_instances_answering_garbage_or_nothing_stay_pending_with_the_reason(db, tmp_path):
    order_template(db)
    with another_database(db, tmp_path, "exec1") as db1:
        add_operator(db1, EXEC_LOGIN, EXEC_PASSWORD)
        threaded, exec1 = exec_server(db1)
        with (
            threaded,
            garbage_server() as garbage,
            silent_server() as silent,
            # long enough for a loaded machine's first authenticated answer (a password hash
            # to verify), short enough for the silent server's case to time out quickly
            control_server(db, instance_timeout_seconds=3) as control,
        ):
            register(control, "exec1", exec1.url)
            register(control, "garbage", garbage)
            register(control, "silent", silent)
            # the execution instance's first answer (cold caches) is not what is tested here
            warm = httpx.get(f"{exec1.url}/api/v1/admin/instance", auth=EXEC_AUTH)
            assert warm.status_code == 200, warm.text
            published = call(control, "POST", "/templates/order_mail/publish").json()
            unpublished = call(control, "POST", "/templates/order_mail/unpublish").json()
    reasons = {i["instance"]: i["failure_reason"] for i in published["instances"]}
    assert per_instance(published) == {
        "exec1": ("published", 1),
        "garbage": ("pending", 0),
        "silent": ("pending", 0),
    }
    assert reasons["exec1"] is None
    assert reasons["garbage"] == (
        "not an msgcenter execution instance: PUT /api/v1/admin/publications answered HTTP 200 with text/html"
    )
    assert reasons["silent"].startswith(
        "timed out after 3 s waiting for the answer (PUT http://127.0.0.1:"
    )
    assert per_instance(unpublished) == {
        "exec1": ("unpublished", 0),
        "garbage": ("pending", 0),
        "silent": ("pending", 0),
    }
    assert {i["instance"]: i["failure_reason"] for i in unpublished["instances"]}["garbage"] == (
        "not an msgcenter execution instance: DELETE /api/v1/admin/publications/order_mail answered HTTP 200 with text/html, not JSON"
    )


@pytest.mark.slow  # runs the msgcenter command as a process
def test_cli_publishes_shows_the_state_and_unpublishes(db, tmp_path):
    order_template(db)
    with another_database(db, tmp_path, "exec1") as db1:
        add_operator(db1, EXEC_LOGIN, EXEC_PASSWORD)
        threaded, exec1 = exec_server(db1)
        with threaded:
            with control_server(db) as control:
                register(control, "exec1", exec1.url)
            published = control_cli(db.url, tmp_path, "publish", "order_mail")
            assert published.returncode == 0, published.stderr
            assert {p["version"] for p in active_publications(exec1.url)} == {1}
            unpublished = control_cli(db.url, tmp_path, "unpublish", "order_mail")
            assert unpublished.returncode == 0, unpublished.stderr
            assert active_publications(exec1.url) == []
            shown = control_cli(db.url, tmp_path, "publication", "order_mail")
            missing = control_cli(db.url, tmp_path, "publish", "no_such")
    assert "template order_mail: version 1" in published.stdout and "published" in published.stdout
    assert "template order_mail: unpublished" in shown.stdout
    log_lines = [line for line in shown.stdout.splitlines() if "cli:" in line]
    assert len(log_lines) == 2 and "unpublish" in log_lines[0] and "publish" in log_lines[1]
    assert missing.returncode == 1 and "no template 'no_such'" in missing.stderr
