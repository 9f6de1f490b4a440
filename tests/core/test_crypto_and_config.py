"""Token encryption at rest, secret digests, and settings from the environment."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from shared.config import ENV_VARS, SECRET_ENV_VARS, Settings
from shared.crypto import DecryptError, KeyConfigError, TokenCipher, generate_key, secret_digest, secret_matches


def _cipher(active: str = "k1", **keys: str) -> TokenCipher:
    return TokenCipher.from_config(json.dumps(keys or {"k1": generate_key()}), active)


def test_encrypt_round_trip_hides_plaintext_and_binds_owner() -> None:
    cipher = _cipher()
    ciphertext, key_id = cipher.encrypt("1//refresh-token-value", owner="user-a")
    assert key_id == "k1"
    assert "refresh-token-value" not in ciphertext
    assert cipher.decrypt(ciphertext, owner="user-a") == "1//refresh-token-value"
    with pytest.raises(DecryptError):
        cipher.decrypt(ciphertext, owner="user-b")  # a ciphertext copied to another user is useless


def test_two_encryptions_differ_and_tampering_is_detected() -> None:
    cipher = _cipher()
    first, _ = cipher.encrypt("secret", owner="u")
    second, _ = cipher.encrypt("secret", owner="u")
    assert first != second
    tampered = first[:-4] + ("AAAA" if not first.endswith("AAAA") else "BBBB")
    with pytest.raises(DecryptError):
        cipher.decrypt(tampered, owner="u")


def test_key_rotation_keeps_old_ciphertexts_readable() -> None:
    old_key, new_key = generate_key(), generate_key()
    old = TokenCipher.from_config(json.dumps({"k1": old_key}), "k1")
    ciphertext, _ = old.encrypt("tok", owner="u")
    rotated = TokenCipher.from_config(json.dumps({"k1": old_key, "k2": new_key}), "k2")
    assert rotated.decrypt(ciphertext, owner="u") == "tok"
    assert rotated.needs_rotation(ciphertext)
    fresh, key_id = rotated.encrypt("tok", owner="u")
    assert key_id == "k2" and not rotated.needs_rotation(fresh)
    retired = TokenCipher.from_config(json.dumps({"k2": new_key}), "k2")
    with pytest.raises(DecryptError):
        retired.decrypt(ciphertext, owner="u")


@pytest.mark.parametrize("keys", ["", "not json", json.dumps({"k1": "c2hvcnQ="}), json.dumps([1, 2])])
def test_bad_key_configuration_is_refused(keys: str) -> None:
    with pytest.raises(KeyConfigError):
        TokenCipher.from_config(keys, "k1")


def test_secret_digest_matches_only_the_secret() -> None:
    digest = secret_digest("channel-token")
    assert digest != "channel-token"
    assert secret_matches("channel-token", digest)
    assert not secret_matches("channel-tokeN", digest)
    assert not secret_matches(None, digest)


def test_settings_from_env_reads_every_declared_variable() -> None:
    env = {
        "GOOGLE_CLOUD_PROJECT": "p1",
        "CHANNEL_TTL_SECONDS": "3600",
        "SEND_UPDATES": "none",
        "WEBHOOK_URL": "https://hook.example/webhook",
    }
    settings = Settings.from_env(env)
    assert settings.project_id == "p1"
    assert settings.channel_ttl_seconds == 3600
    assert settings.send_updates == "none"
    assert set(SECRET_ENV_VARS) <= set(ENV_VARS)
    assert set(ENV_VARS.values()) <= set(Settings.model_fields)


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValidationError):
        Settings.from_env({"SEND_UPDATES": "everyone"})
    with pytest.raises(ValidationError):
        Settings.from_env({"CHANNEL_TTL_SECONDS": "5"})


def test_settings_repr_hides_secrets() -> None:
    settings = Settings(oauth_client_secret="s3cr3t-value", token_encryption_keys='{"k": "x"}')
    assert "s3cr3t-value" not in repr(settings)


@pytest.mark.parametrize("doc_id", ["", "x/y", "../integrations/u", ".", "..", "__reserved__", "é" * 751])
def test_ids_that_cannot_name_a_document_are_refused(doc_id: str) -> None:
    from shared.store import InvalidDocumentId, checked_document_id, is_valid_document_id

    assert not is_valid_document_id(doc_id)
    with pytest.raises(InvalidDocumentId):
        checked_document_id(doc_id)


@pytest.mark.parametrize("doc_id", ["abc", "9f0c7a7e-1d2b-4c1e-9a43-0b6f1c2d3e4f", "a.b", "__x", "g" + "0" * 40])
def test_ordinary_ids_are_accepted(doc_id: str) -> None:
    from shared.store import is_valid_document_id

    assert is_valid_document_id(doc_id)
