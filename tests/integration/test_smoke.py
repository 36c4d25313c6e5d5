"""A first end-to-end check that the fixtures work on both stores."""

import httpx

from tests.conftest import add_operator


def test_push_and_read_back(exec_server):
    add_operator(exec_server.db, "mc", "secret")
    response = httpx.post(
        f"{exec_server.url}/api/v1/events/rt",
        json={"type": "order_confirmation", "email": "ann@example.com", "ctx": {"a": 1}},
        auth=("mc", "secret"),
    )
    assert response.status_code == 201, response.text
    event_id = response.json()["id"]
    read = httpx.get(f"{exec_server.url}/api/v1/events/{event_id}", auth=("mc", "secret"))
    assert read.json()["ctx"] == {"a": 1}
    assert read.json()["status"] == "pending"


def test_the_root_address_is_the_console_login_page(exec_server):
    answer = httpx.get(f"{exec_server.url}/", follow_redirects=True)
    assert answer.status_code == 200 and answer.url.path == "/console/login"
    assert '<form method="post" action="/console/login"' in answer.text
    assert 'href="/docs"' in answer.text


def test_the_api_documentation_needs_no_internet(exec_server):
    """Swagger UI comes from files vendored in the package: a machine offline shows it."""
    import re

    page = httpx.get(f"{exec_server.url}/docs")
    assert page.status_code == 200
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/console/static/vendor/swagger-ui/") for a in assets)
    for asset in assets:
        assert httpx.get(f"{exec_server.url}{asset}").status_code == 200, asset
    assert "cdn" not in page.text.lower()
