"""Execution-instance secrets at rest: Fernet under control.credentials_key (SPEC §4)."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from msgcenter.control.credentials import CredentialCipher
from msgcenter.errors import ConfigurationError
from msgcenter.settings import Settings

KEY = Fernet.generate_key().decode()


def test_a_secret_round_trips_and_is_never_stored_in_clear():
    cipher = CredentialCipher(SecretStr(KEY))
    first, second = cipher.encrypt("s3cret-pw"), cipher.encrypt("s3cret-pw")
    assert first != second  # a fresh IV each time: equal passwords do not look equal
    assert "s3cret-pw" not in first
    assert cipher.decrypt(first, what="the password") == "s3cret-pw"


@pytest.mark.parametrize(
    ("key", "title", "hint"),
    [
        ("", "control.credentials_key is not set", "msgcenter control new-key"),
        ("not-a-key", "control.credentials_key is not a valid key", "44 characters"),
        ("A" * 44 + "==", "control.credentials_key is not a valid key", "urlsafe base64"),
    ],
)
def test_a_missing_or_malformed_key_is_a_clear_configuration_error(key, title, hint):
    with pytest.raises(ConfigurationError) as raised:
        CredentialCipher(SecretStr(key))
    assert raised.value.message == title
    assert hint in raised.value.detail


def test_a_secret_under_another_key_or_tampered_with_is_refused_by_name():
    stored = CredentialCipher(SecretStr(KEY)).encrypt("s3cret-pw")
    other = CredentialCipher(SecretStr(Fernet.generate_key().decode()))
    with pytest.raises(ConfigurationError) as raised:
        other.decrypt(stored, what="the password of execution instance 'exec1'")
    assert raised.value.message == "cannot decrypt the password of execution instance 'exec1'"
    assert "another control.credentials_key" in raised.value.detail
    tampered = stored[:-6] + ("A" if stored[-6] != "A" else "B") + stored[-5:]
    with pytest.raises(ConfigurationError):
        CredentialCipher(SecretStr(KEY)).decrypt(tampered, what="the password")


def test_the_key_comes_from_the_environment_and_stays_out_of_reprs(monkeypatch):
    monkeypatch.setenv("MSGCENTER_CONTROL__CREDENTIALS_KEY", KEY)
    settings = Settings()
    assert KEY not in repr(settings)
    cipher = CredentialCipher(settings.control.credentials_key)
    assert cipher.decrypt(cipher.encrypt("x"), what="x") == "x"
