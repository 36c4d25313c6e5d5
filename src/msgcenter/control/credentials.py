"""Encryption at rest of execution-instance passwords and database URLs (SPEC §4).

Fernet (AES-128-CBC with an HMAC-SHA256 tag) under ``control.credentials_key``:
a leaked control database does not leak the credentials of the execution
instances, and a tampered value fails to decrypt instead of being used.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from msgcenter.errors import ConfigurationError
from msgcenter.settings import Settings

KEY_HELP = (
    "generate one with `msgcenter control new-key` and set it as [control] credentials_key "
    "(or MSGCENTER_CONTROL__CREDENTIALS_KEY)"
)


class CredentialCipher:
    """Encrypts and decrypts the secrets of execution-instance accounts."""

    def __init__(self, key: SecretStr) -> None:
        raw = key.get_secret_value()
        if not raw:
            raise ConfigurationError(
                "control.credentials_key is not set",
                detail=f"execution-instance credentials are stored encrypted: {KEY_HELP}",
            )
        try:
            self._fernet = Fernet(raw)
        except (ValueError, TypeError):
            raise ConfigurationError(
                "control.credentials_key is not a valid key",
                detail=f"it must be 32 bytes in urlsafe base64 (44 characters): {KEY_HELP}",
            ) from None

    def encrypt(self, secret: str) -> str:
        """``secret`` encrypted, as text to store."""
        return self._fernet.encrypt(secret.encode()).decode("ascii")

    def decrypt(self, token: str, *, what: str) -> str:
        """The secret behind ``token``; ``what`` names it in the error (``the password of 'exec1'``)."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except InvalidToken:
            raise ConfigurationError(
                f"cannot decrypt {what}",
                detail=(
                    f"cannot decrypt {what}: it was encrypted under another "
                    "control.credentials_key (restore that key, or enter the secret again)"
                ),
            ) from None


def cipher(settings: Settings) -> CredentialCipher:
    """The cipher of ``control.credentials_key`` (:class:`ConfigurationError` if unusable)."""
    return CredentialCipher(settings.control.credentials_key)
