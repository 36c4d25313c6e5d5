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
    assert body[0]["required"] == ["type", "ctx"]
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
