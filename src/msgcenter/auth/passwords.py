"""Password hashing with Argon2id.

Parameters follow OWASP's recommendation for Argon2id (19 MiB, 2 iterations,
1 lane): about 60 ms per check on a small machine, where argon2-cffi's default
(64 MiB, 3 iterations, 4 lanes) takes half a second. Hashes describe their own
parameters, so existing ones keep verifying if these change.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


def hash_password(password: str) -> str:
    """An Argon2id hash of ``password`` (salted, self-describing)."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
