"""Encryption of refresh tokens at rest (AES-256-GCM, key id recorded for rotation) and secret digests.

Why: a Firestore export or a stray log must never reveal a usable Google credential (invariant 7). Keys come from
Secret Manager through the TOKEN_ENCRYPTION_KEYS env var as a JSON object {key_id: urlsafe-base64 32-byte key};
new ciphertexts use the active key id, old ones stay readable while their key is still listed.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import os
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import SyncError

_FORMAT = "v1"


class KeyConfigError(SyncError):
    code = "key_config"


class DecryptError(SyncError):
    code = "decrypt_failed"


def generate_key() -> str:
    """A new urlsafe-base64 AES-256 key, for operators and tests."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


class TokenCipher:
    """Encrypts and decrypts secrets bound to an owner (AAD), with rotating keys."""

    def __init__(self, keys: dict[str, bytes], active_key_id: str) -> None:
        if active_key_id not in keys:
            raise KeyConfigError("the active token encryption key id is not among the configured keys")
        self._keys = keys
        self.active_key_id = active_key_id

    @classmethod
    def from_config(cls, keys_json: str, active_key_id: str = "") -> TokenCipher:
        if not keys_json:
            raise KeyConfigError("TOKEN_ENCRYPTION_KEYS is not set")
        try:
            raw = json.loads(keys_json)
            keys = {str(kid): base64.urlsafe_b64decode(value) for kid, value in raw.items()}
        except (ValueError, AttributeError, TypeError) as exc:
            raise KeyConfigError("TOKEN_ENCRYPTION_KEYS must be a JSON object of base64 keys") from exc
        if not keys or any(len(k) != 32 for k in keys.values()):
            raise KeyConfigError("every token encryption key must be 32 bytes")
        return cls(keys, active_key_id or sorted(keys)[-1])

    def encrypt(self, plaintext: str, *, owner: str) -> tuple[str, str]:
        """Returns (ciphertext, key_id). The owner (user id) is authenticated data: a ciphertext cannot be moved."""
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self._keys[self.active_key_id]).encrypt(nonce, plaintext.encode(), owner.encode())
        blob = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{_FORMAT}:{self.active_key_id}:{blob}", self.active_key_id

    def decrypt(self, ciphertext: str, *, owner: str) -> str:
        try:
            version, key_id, blob = ciphertext.split(":", 2)
        except ValueError as exc:
            raise DecryptError("malformed ciphertext") from exc
        if version != _FORMAT or key_id not in self._keys:
            raise DecryptError("ciphertext uses an unknown format or key id", key_id=key_id)
        raw = base64.urlsafe_b64decode(blob)
        try:
            return AESGCM(self._keys[key_id]).decrypt(raw[:12], raw[12:], owner.encode()).decode()
        except Exception as exc:  # cryptography raises InvalidTag; never echo the ciphertext
            raise DecryptError("ciphertext does not decrypt with its key for this owner") from exc

    def needs_rotation(self, ciphertext: str) -> bool:
        return not ciphertext.startswith(f"{_FORMAT}:{self.active_key_id}:")

    def derive_key(self, purpose: str) -> bytes:
        """A per-purpose subkey of the active key (e.g. for signing OAuth `state`), so one secret serves both."""
        return hmac.new(self._keys[self.active_key_id], purpose.encode(), hashlib.sha256).digest()


@functools.cache
def cipher_from_settings(keys_json: str, active_key_id: str) -> TokenCipher:
    return TokenCipher.from_config(keys_json, active_key_id)


def secret_digest(secret: str) -> str:
    """SHA-256 hex digest of a random secret (channel tokens): stored instead of the secret itself."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(candidate: str | None, stored_digest: str) -> bool:
    """Constant-time check of a presented secret against its stored digest."""
    if candidate is None:
        candidate = ""
    return hmac.compare_digest(secret_digest(candidate), stored_digest)
