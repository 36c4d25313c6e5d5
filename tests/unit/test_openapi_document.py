"""The committed OpenAPI document is the one the server serves."""

import json
from pathlib import Path

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
