"""Tokens at rest: Fernet (``cryptography``) under ``TASKWARDEN_SECRET_KEY``.

``MultiFernet`` decrypts with the current key or any of ``TASKWARDEN_OLD_SECRET_KEYS`` and encrypts with the
current one, so a key is rotated by adding the new key, moving the old one to the old keys, and running
``flask --app app portals rotate-key`` to re-encrypt every stored token.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from config.settings import Settings


class Box:
    """Encrypts and decrypts short secrets (tokens); nothing else in Taskwarden touches the keys."""

    def __init__(self, current: str, old: list[str] | None = None) -> None:
        self._fernet = MultiFernet([Fernet(current.strip().encode()),
                                    *(Fernet(key.strip().encode()) for key in old or [] if key.strip())])

    def seal(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode()).decode()

    def open(self, sealed: str) -> str:
        """The plain value. Raises ``InvalidToken`` when no key of ours sealed it."""
        return self._fernet.decrypt(sealed.encode()).decode()

    def reseal(self, sealed: str) -> str:
        """The same value sealed under the current key (key rotation)."""
        return self._fernet.rotate(sealed.encode()).decode()


def box_from_settings(settings: Settings) -> Box:
    if settings.taskwarden_secret_key is None:
        raise ValueError("TASKWARDEN_SECRET_KEY is not set")
    old = settings.taskwarden_old_secret_keys.get_secret_value().split(",") if settings.taskwarden_old_secret_keys \
        else []
    return Box(settings.taskwarden_secret_key.get_secret_value(), old)


__all__ = ["Box", "InvalidToken", "box_from_settings"]
