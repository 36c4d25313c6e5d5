"""Settings: defaults, then a TOML file, then MSGCENTER_* variables; the sample file is complete."""

import ipaddress
import os
import re
import subprocess
import sys
import tomllib
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from msgcenter.errors import ConfigurationError
from msgcenter.settings import Settings, load_settings

SAMPLE = Path(__file__).resolve().parents[2] / "msgcenter.sample.toml"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    """No MSGCENTER_* variable and no msgcenter.toml in the working directory."""
    import os

    for name in list(os.environ):
        if name.startswith("MSGCENTER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write_config(tmp_path, text, name="settings.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults():
    settings = Settings()
    assert settings.database_url == "sqlite:///msgcenter.db"
    assert settings.instance_name == "exec"
    assert (settings.server.host, settings.server.port, settings.server.workers) == (
        "127.0.0.1",
        8080,
        1,
    )
    assert settings.intake.max_event_bytes == 64 * 1024
    assert settings.intake.max_request_bytes == 10 * 1024 * 1024
    assert settings.intake.max_events_per_request == 10_000
    assert settings.security.failed_login_limit == 5
    assert settings.security.session_ttl_seconds == 86_400
    assert [z.name for z in settings.security.zones] == ["loopback"]
    assert settings.security.zones[0].networks == [
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    ]
    assert settings.security.default_zone.allow_empty_password is False
    assert settings.security.default_zone.allow_login_password_token is False
    assert (settings.logging.format, settings.logging.level) == ("console", "info")


def test_toml_file_named_by_msgcenter_config(monkeypatch, tmp_path):
    path = write_config(
        tmp_path,
        'instance_name = "exec-2"\n'
        "[intake]\nmax_event_bytes = 2048\n"
        "[security]\nfailed_login_limit = 9\n"
        '[[security.zones]]\nname = "lan"\nnetworks = ["10.0.0.0/8"]\nallow_http = false\n',
    )
    monkeypatch.setenv("MSGCENTER_CONFIG", str(path))
    settings = Settings()
    assert settings.instance_name == "exec-2"
    assert settings.intake.max_event_bytes == 2048
    assert settings.intake.max_request_bytes == 10 * 1024 * 1024  # untouched default
    assert settings.security.failed_login_limit == 9
    assert [(z.name, z.allow_http) for z in settings.security.zones] == [("lan", False)]


def test_msgcenter_toml_in_the_working_directory_is_read(tmp_path):
    write_config(tmp_path, 'instance_name = "from-cwd"\n', name="msgcenter.toml")
    assert Settings().instance_name == "from-cwd"


def test_missing_config_file_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("MSGCENTER_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        Settings()


def test_nested_environment_variable(monkeypatch):
    monkeypatch.setenv("MSGCENTER_INTAKE__MAX_EVENT_BYTES", "131072")
    monkeypatch.setenv("MSGCENTER_SECURITY__CREDENTIAL_CACHE_SECONDS", "0")
    settings = Settings()
    assert settings.intake.max_event_bytes == 131_072
    assert settings.security.credential_cache_seconds == 0


def test_zones_from_the_environment_as_json(monkeypatch):
    monkeypatch.setenv("MSGCENTER_SECURITY__ZONES", '[{"name": "lan", "networks": ["10.0.0.0/8"]}]')
    zones = Settings().security.zones
    assert [(z.name, z.networks) for z in zones] == [("lan", [ipaddress.ip_network("10.0.0.0/8")])]


def test_environment_beats_the_file(monkeypatch, tmp_path):
    path = write_config(tmp_path, "[intake]\nmax_event_bytes = 2048\nmax_events_per_request = 7\n")
    monkeypatch.setenv("MSGCENTER_CONFIG", str(path))
    monkeypatch.setenv("MSGCENTER_INTAKE__MAX_EVENT_BYTES", "4096")
    settings = Settings()
    assert settings.intake.max_event_bytes == 4096
    assert settings.intake.max_events_per_request == 7


def test_load_settings_overrides_beat_the_environment(monkeypatch, tmp_path):
    path = write_config(tmp_path, 'instance_name = "file"\n')
    # load_settings sets MSGCENTER_CONFIG: set it first so that monkeypatch restores its absence
    # (a delenv of an absent variable records nothing, and the file would leak into later tests)
    monkeypatch.setenv("MSGCENTER_CONFIG", "")
    monkeypatch.delenv("MSGCENTER_CONFIG")
    monkeypatch.setenv("MSGCENTER_DATABASE_URL", "sqlite:///env.db")
    settings = load_settings(path, database_url="sqlite:///cli.db", instance_name=None)
    assert settings.database_url == "sqlite:///cli.db"
    assert settings.instance_name == "file"  # a None override does not mask the file


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////var/lib/msgcenter/exec.db", "sqlite:////var/lib/msgcenter/exec.db"),
        ("postgresql://mc:pw@db:5432/mc", "postgresql+psycopg://mc:pw@db:5432/mc"),
        ("postgres://mc@db/mc", "postgresql+psycopg://mc@db/mc"),
        ("postgresql+psycopg://mc@db/mc", "postgresql+psycopg://mc@db/mc"),
    ],
)
def test_database_url_from_the_environment(monkeypatch, url, expected):
    monkeypatch.setenv("MSGCENTER_DATABASE_URL", url)
    assert Settings().database_url == expected


def test_unsupported_database_is_refused():
    with pytest.raises(ValidationError, match="database_url must be a sqlite:// or postgresql"):
        Settings(database_url="mysql://root@localhost/mc")


def test_unknown_top_level_key_in_the_file_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("MSGCENTER_CONFIG", str(write_config(tmp_path, "databse_url = 'x'\n")))
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [
        (("databse_url",), "extra_forbidden")
    ]
    assert "Extra inputs are not permitted" in str(caught.value)


def test_unknown_key_in_a_section_is_refused(monkeypatch, tmp_path):
    path = write_config(tmp_path, "[intake]\nmax_evnt_bytes = 2048\n")
    monkeypatch.setenv("MSGCENTER_CONFIG", str(path))
    with pytest.raises(ValidationError, match="max_evnt_bytes"):
        Settings()


def test_out_of_range_value_names_the_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("MSGCENTER_CONFIG", str(write_config(tmp_path, "[server]\nport = 70000\n")))
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert [e["loc"] for e in caught.value.errors()] == [("server", "port")]


@pytest.mark.parametrize(
    "base_url",
    [
        "t.example.com",
        "ftp://t.example.com",
        "https://t.example.com?x=1",
        "https://a b.example",
        "http://t.example.com",  # clicks and unsubscribe requests in clear text
        "http://10.0.0.5:8080",
    ],
)
def test_a_tracking_base_url_that_is_no_web_base_is_refused_by_name(base_url):
    with pytest.raises(ValidationError) as caught:
        Settings(tracking={"base_url": base_url})
    assert [e["loc"] for e in caught.value.errors()] == [("tracking", "base_url")]


def test_a_plain_http_tracking_base_url_is_allowed_on_loopback_only():
    for url in ("http://127.0.0.1:8080", "http://localhost:8080/mc", "http://[::1]:8080"):
        assert Settings(tracking={"base_url": url}).tracking.base_url == url


def test_tracking_links_point_at_the_base_url_or_else_at_this_server():
    assert Settings(tracking={"base_url": "https://t.example.com/mc"}).tracking_base_url() == (
        "https://t.example.com/mc"
    )
    assert Settings(server={"host": "10.0.0.5", "port": 9000}).tracking_base_url() == (
        "http://10.0.0.5:9000"
    )


def test_load_settings_names_every_bad_setting_and_never_its_value(monkeypatch):
    monkeypatch.setenv("MSGCENTER_CONTROL__CREDENTIAL_KEY", "a-secret-in-a-misnamed-variable")
    monkeypatch.setenv("MSGCENTER_SERVER__PORT", "99999")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert caught.value.message == "invalid settings"
    assert "server.port: Input should be less than or equal to 65535" in caught.value.detail
    assert "control.credential_key: unknown setting" in caught.value.detail
    assert "a-secret" not in caught.value.detail and "99999" not in caught.value.detail


@pytest.mark.parametrize(
    ("problem", "named"),
    [
        ({"file": "[server\nport = 1\n"}, "settings.toml: Expected ']'"),
        ({"MSGCENTER_CONFIG": "nope.toml"}, "nope.toml, which is not a file"),
        ({"MSGCENTER_SECURITY__ZONES": "[not json"}, 'error parsing value for field "security"'),
    ],
)
def test_load_settings_refuses_unreadable_sources_by_name(monkeypatch, tmp_path, problem, named):
    if "file" in problem:
        monkeypatch.setenv("MSGCENTER_CONFIG", str(write_config(tmp_path, problem["file"])))
    for name, value in problem.items():
        if name != "file":
            monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert named in caught.value.detail


@pytest.mark.slow  # runs the msgcenter command as a process
def test_a_command_with_bad_settings_prints_one_line_and_exits_1(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "msgcenter", "exec", "serve"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "MSGCENTER_SERVER__PORT": "99999", "COLUMNS": "200"},
        timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.strip() == (
        "error: invalid settings: server.port: Input should be less than or equal to 65535"
    )


# -- the sample file ---------------------------------------------------------------------


def _section_model(annotation):
    """The settings model of a section (or of a list's items), or None for a plain value."""
    candidates = [annotation, *typing.get_args(annotation)]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def missing_settings(model, data, prefix="", commented=frozenset()):
    """Dotted names of the fields of ``model`` that ``data`` (parsed TOML) leaves out.

    TOML has no null: a setting whose default is None may instead be shown as a
    commented example line (its dotted name in ``commented``).
    """
    missing = []
    for name, field in model.model_fields.items():
        where = prefix + name
        if name not in data:
            if not (field.default is None and where in commented):
                missing.append(where)
            continue
        section = _section_model(field.annotation)
        if section is not None:
            value = data[name]
            for i, item in enumerate(value if isinstance(value, list) else [value]):
                label = f"{where}[{i}]" if isinstance(value, list) else where
                missing += missing_settings(section, item, label + ".", commented)
    return missing


def commented_examples(text):
    """Dotted names of the ``# key = value`` example lines of a sample TOML file, by section."""
    names, section = set(), ""
    for line in text.splitlines():
        if line.startswith("[") and not line.startswith("[["):
            section = line.strip("[]") + "."
        elif (found := re.match(r"# ([a-z_]+) = ", line)) is not None:
            names.add(section + found.group(1))
    return frozenset(names)


def test_missing_settings_helper_finds_gaps():
    data = {"intake": {"max_event_bytes": 1}, "security": {"zones": [{"name": "x"}]}}
    missing = missing_settings(Settings, data)
    assert "database_url" in missing
    assert "intake.max_request_bytes" in missing
    assert "security.zones[0].networks" in missing
    assert "intake.max_event_bytes" not in missing


@pytest.mark.skipif(not SAMPLE.is_file(), reason="msgcenter.sample.toml not written yet")
def test_sample_file_has_every_setting_with_its_default(monkeypatch):
    text = SAMPLE.read_text()
    data = tomllib.loads(text)
    assert missing_settings(Settings, data, commented=commented_examples(text)) == []
    monkeypatch.setenv("MSGCENTER_CONFIG", str(SAMPLE))
    assert Settings() == Settings.model_validate({})
