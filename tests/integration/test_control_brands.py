"""Several brands on one execution instance (SPEC §3.9, §4): two control instances, each with its
own database and its own folder, publish the same event type to one shared execution instance
through operators mc1 and mc2 restricted to their folders. Each brand's events are routed to its
own template, each control instance archives only its own brand, and one brand unpublishing
leaves the other untouched. Real servers on loopback, on SQLite and PostgreSQL, real SMTP.
"""

from __future__ import annotations

import httpx
from sqlalchemy import select

from msgcenter.store.tables import archived_event
from tests.conftest import add_operator, wait_for
from tests.control import (
    another_database,
    call,
    control_server,
    exec_server,
    order_template,
    register,
)
from tests.processing import all_final, statuses

BRANDS = {"brand1": ("mc1", "pw1"), "brand2": ("mc2", "pw2")}
CTX = {"client": {"firstname": "Ann"}, "order": {"id": "1001"}}


def push(url: str, brand: str, email: str) -> int:
    answer = httpx.post(
        f"{url}/api/v1/events/rt",
        json={"type": "order_confirmation", "email": email, "ctx": CTX},
        auth=BRANDS[brand],
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def test_two_control_instances_share_one_execution_instance_each_in_its_own_folder(
    db, tmp_path, smtp_server
):
    for brand, (login, password) in BRANDS.items():
        add_operator(db, login, password, folder=brand)
    with (
        another_database(db, tmp_path, "control1") as control1_db,
        another_database(db, tmp_path, "control2") as control2_db,
    ):
        databases = {"brand1": control1_db, "brand2": control2_db}
        for brand, control_db in databases.items():
            # the same template name and event type on both control instances
            order_template(
                control_db, html=f"<p>{brand} says hello {{{{ ctx.client.firstname }}}}</p>"
            )
        threaded, execution = exec_server(db, smtp_server.port)
        with (
            threaded,
            control_server(control1_db) as control1,
            control_server(control2_db) as control2,
        ):
            controls = {"brand1": control1, "brand2": control2}
            for brand, control in controls.items():
                login, password = BRANDS[brand]
                register(
                    control, "shared", execution.url, login=login, password=password, folder=brand
                )
                initialized = call(control, "POST", "/instances/shared/initialize")
                assert initialized.status_code == 200, initialized.text
                published = call(control, "POST", "/templates/order_mail/publish").json()
                assert [(i["instance"], i["state"]) for i in published["instances"]] == [
                    ("shared", "published")
                ]

            # each brand's operator sees only its own flavours of the one template name
            for brand, auth in BRANDS.items():
                flavours = httpx.get(f"{execution.url}/api/v1/admin/publications", auth=auth).json()
                assert {(p["template"], p["folder"], p["queue"]) for p in flavours} == {
                    ("order_mail", brand, "rt"),
                    ("order_mail", brand, "batch"),
                }

            # events of the same type, pushed by each brand, go out with that brand's template
            ids = {
                brand: [push(execution.url, brand, f"{brand}-{i}@example.com") for i in range(3)]
                for brand in BRANDS
            }
            every = ids["brand1"] + ids["brand2"]
            wait_for(lambda: all_final(db, every), message="every event to be final")
            assert set(statuses(db, every).values()) == {"sent"}
            for brand in BRANDS:
                for i in range(3):
                    (received,) = smtp_server.handler.to(f"{brand}-{i}@example.com")
                    body = received.message.get_body(("html",)).get_content()
                    assert f"{brand} says hello Ann" in body

            # each control instance archives its own brand's events, and only those
            for brand, control in controls.items():
                run = call(control, "POST", "/archives/shared/run", params={"wait": 60}).json()
                assert run["outcome"] == "complete", run
                with databases[brand].read() as conn:
                    archived = conn.execute(
                        select(
                            archived_event.c.event_id,
                            archived_event.c.folder,
                            archived_event.c.template,
                        )
                    ).all()
                assert sorted(e for e, _, _ in archived) == sorted(ids[brand])
                assert {(f, t) for _, f, t in archived} == {(brand, "order_mail")}

            # brand1 unpublishes: its events are no longer taken into account; brand2's still sent
            unpublished = call(control1, "POST", "/templates/order_mail/unpublish")
            assert unpublished.status_code == 200, unpublished.text
            assert (
                httpx.get(
                    f"{execution.url}/api/v1/admin/publications", auth=BRANDS["brand1"]
                ).json()
                == []
            )
            assert (
                len(
                    httpx.get(
                        f"{execution.url}/api/v1/admin/publications", auth=BRANDS["brand2"]
                    ).json()
                )
                == 2
            )
            late = {
                brand: push(execution.url, brand, f"late-{brand}@example.com") for brand in BRANDS
            }
            wait_for(
                lambda: all_final(db, list(late.values())), message="the late events to be final"
            )
            assert statuses(db, list(late.values())) == {
                late["brand1"]: "not_taken_into_account",
                late["brand2"]: "sent",
            }
