"""Encryption of secret values at rest (Fernet: AES-128-CBC with HMAC-SHA256)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

KEY_FILE = "secret.key"


class SecretBox:
    """Seals and opens secret values. Ciphertexts never contain the plaintext or the key."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def generate(cls) -> SecretBox:
        return cls(Fernet.generate_key())

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, ciphertext: str) -> str:
        return self._fernet.decrypt(ciphertext.encode()).decode()

    def is_sealed(self, ciphertext: str) -> bool:
        try:
            self._fernet.decrypt(ciphertext.encode())
        except (InvalidToken, ValueError):
            return False
        return True


def load_or_create_key(configured: str | None, data_dir: Path) -> bytes:
    """The configured key, else the data dir's key file, created with mode 0600 when absent."""
    if configured:
        key = configured.encode()
        try:
            Fernet(key)
        except ValueError:
            raise SystemExit(
                "CASCADE_SECRET_KEY must be 32 url-safe base64-encoded bytes (Fernet.generate_key())"
            ) from None
        return key
    path = data_dir / KEY_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(Fernet.generate_key())
    return path.read_bytes().strip()
