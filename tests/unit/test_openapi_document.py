"""The committed OpenAPI documents are the ones the servers serve."""

import json
from pathlib import Path

from msgcenter.control.app import create_control_app
from msgcenter.settings import Settings
from msgcenter.web.exec_app import create_exec_app

COMMITTED = Path(__file__).parents[2] / "docs" / "openapi-exec.json"


def test_committed_openapi_matches_the_app(tmp_path):
    app = create_exec_app(Settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}"))
    served = json.loads(json.dumps(app.openapi(), sort_keys=True))
    assert served == json.loads(COMMITTED.read_text()), (
        "docs/openapi-exec.json is stale: regenerate it with "
        "`msgcenter exec openapi > docs/openapi-exec.json`"
    )


def test_openapi_documents_the_intake_contract():
    document = json.loads(COMMITTED.read_text())
    push = document["paths"]["/api/v1/events/{queue}"]["post"]
    assert {"201", "401", "422"} <= set(push["responses"])
    body = push["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert body[0]["title"] == "EventIn"
    assert body[0]["required"] == ["type"]  # an event without ctx has an empty one
    assert body[1]["items"]["title"] == "EventIn"


CONTROL = Path(__file__).parents[2] / "docs" / "openapi-control.json"


def test_committed_control_openapi_matches_the_app(tmp_path):
    app = create_control_app(Settings(database_url=f"sqlite:///{tmp_path / 'unused.db'}"))
    served = json.loads(json.dumps(app.openapi(), sort_keys=True))
    assert served == json.loads(CONTROL.read_text()), (
        "docs/openapi-control.json is stale: regenerate it with "
        "`msgcenter control openapi > docs/openapi-control.json`"
    )


def test_control_openapi_takes_passwords_and_never_returns_them():
    schemas = json.loads(CONTROL.read_text())["components"]["schemas"]
    password = schemas["AccountIn"]["properties"]["password"]
    assert password["writeOnly"] is True and password["format"] == "password"
    shown = set(schemas["InstanceOut"]["properties"])
    assert not shown & {"password", "password_encrypted", "database_url"}
    assert "database_url_set" in shown


def test_both_documents_declare_basic_and_bearer_on_every_protected_operation():
    for path in (COMMITTED, CONTROL):
        document = json.loads(path.read_text())
        schemes = document["components"]["securitySchemes"]
        assert schemes["basic"] == {
            "type": "http",
            "scheme": "basic",
            "description": "an operator's login and password",
        }
        assert schemes["bearer"]["type"] == "http" and schemes["bearer"]["scheme"] == "bearer"
        for url, operations in document["paths"].items():
            for method, operation in operations.items():
                public = not url.startswith("/api/") or (url, method) == (
                    "/api/v1/sessions",
                    "post",
                )
                if public:
                    assert "security" not in operation, (url, method)
                elif (url, method) == ("/api/v1/sessions/current", "delete"):
                    assert operation["security"] == [{"bearer": []}]
                else:
                    assert operation["security"] == [{"basic": []}, {"bearer": []}], (url, method)
