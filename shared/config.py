"""Settings read once from the environment (Cloud Functions env vars and Secret Manager secret env vars).

Why one place: every env var the code reads is listed here, so Terraform's policy test can check each one is provided.
Locally the same variables point at the Firestore emulator and the Google stand-in; production leaves the Google
endpoints unset and the client libraries use Google's real ones.
"""

import functools
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Every environment variable the deployed code reads. Terraform's policy test keeps this in step with main.tf.
ENV_VARS: dict[str, str] = {
    "GOOGLE_CLOUD_PROJECT": "project_id",
    "FIRESTORE_DATABASE": "firestore_database",
    "GOOGLE_API_ENDPOINT": "google_api_endpoint",
    "GOOGLE_OAUTH_AUTH_URI": "oauth_auth_uri",
    "GOOGLE_OAUTH_TOKEN_URI": "oauth_token_uri",
    "GOOGLE_OAUTH_REVOKE_URI": "oauth_revoke_uri",
    "OAUTH_CLIENT_ID": "oauth_client_id",
    "OAUTH_CLIENT_SECRET": "oauth_client_secret",
    "OAUTH_REDIRECT_URI": "oauth_redirect_uri",
    "TOKEN_ENCRYPTION_KEYS": "token_encryption_keys",
    "TOKEN_ENCRYPTION_ACTIVE_KEY_ID": "token_encryption_active_key_id",
    "WEBHOOK_URL": "webhook_url",
    "CHANNEL_TTL_SECONDS": "channel_ttl_seconds",
    "RENEW_BEFORE_SECONDS": "renew_before_seconds",
    "STALE_SYNC_SECONDS": "stale_sync_seconds",
    "PUSH_SWEEP_GRACE_SECONDS": "push_sweep_grace_seconds",
    "SYNC_LEASE_SECONDS": "sync_lease_seconds",
    "SEND_UPDATES": "send_updates",
    "ID_TOKEN_ISSUER": "id_token_issuer",
    "ID_TOKEN_AUDIENCE": "id_token_audience",
    "ID_TOKEN_CERTS_URL": "id_token_certs_url",
    "GOOGLE_MAX_RETRIES": "google_max_retries",
    "GOOGLE_RETRY_BASE_SECONDS": "google_retry_base_seconds",
    "RENEWAL_DEADLINE_SECONDS": "renewal_deadline_seconds",
    "RENEWAL_CONCURRENCY": "renewal_concurrency",
    "FIRESTORE_CALL_DEADLINE_SECONDS": "firestore_call_deadline_seconds",
    "OAUTH_RETURN_URL": "oauth_return_url",
    "SCHEDULER_OIDC_AUDIENCE": "scheduler_oidc_audience",
    "SCHEDULER_INVOKER_EMAIL": "scheduler_invoker_email",
    "GATEWAY_JWT_AUDIENCES": "gateway_jwt_audiences",
    "GATEWAY_INVOKER_EMAIL": "gateway_invoker_email",
}
# The env vars that carry secrets (Secret Manager secret env vars in production).
SECRET_ENV_VARS = frozenset({"OAUTH_CLIENT_SECRET", "TOKEN_ENCRYPTION_KEYS"})

# `openid` makes the token endpoint return an ID token whose `sub` is the Google account's stable id (one Google
# account, one CRM user); it is a non-sensitive scope that the consent screen cannot leave unchecked.
GOOGLE_SCOPES: tuple[str, ...] = (
    "openid",
    "https://www.googleapis.com/auth/calendar.events",
    "https://www.googleapis.com/auth/calendar.calendarlist.readonly",
)


class Settings(BaseModel):
    """Typed settings; defaults are production defaults."""

    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    project_id: str = "crm-gcal-sync-local"
    firestore_database: str = "(default)"
    google_api_endpoint: str | None = None
    oauth_auth_uri: str = "https://accounts.google.com/o/oauth2/v2/auth"
    oauth_token_uri: str = "https://oauth2.googleapis.com/token"
    oauth_revoke_uri: str = "https://oauth2.googleapis.com/revoke"
    oauth_client_id: str = ""
    oauth_client_secret: str = Field(default="", repr=False)
    oauth_redirect_uri: str = ""
    token_encryption_keys: str = Field(default="", repr=False)
    token_encryption_active_key_id: str = ""
    webhook_url: str = ""
    channel_ttl_seconds: int = Field(default=604_800, ge=60)
    renew_before_seconds: int = Field(default=86_400, ge=60)
    stale_sync_seconds: int = Field(default=64_800, ge=60)
    # CRM edits older than this whose push never happened (a lost trigger) are pushed by the cron's sweep.
    push_sweep_grace_seconds: int = Field(default=120, ge=0)
    sync_lease_seconds: int = Field(default=120, ge=5)
    send_updates: Literal["all", "externalOnly", "none"] = "all"
    id_token_issuer: str = ""
    id_token_audience: str = ""
    id_token_certs_url: str = "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"
    google_max_retries: int = Field(default=5, ge=0, le=10)
    google_retry_base_seconds: float = Field(default=0.5, ge=0)
    renewal_deadline_seconds: float = Field(default=240.0, gt=0)
    renewal_concurrency: int = Field(default=16, ge=1, le=64)  # sized for 1M users: README "Capacity"
    # One Firestore call (with the client's retries) gives up after this long: StoreUnavailable, a 503 / a retry.
    firestore_call_deadline_seconds: float = Field(default=20.0, gt=0, le=300)
    # Where the OAuth callback sends the browser afterwards (the CRM settings page); empty = a JSON answer.
    oauth_return_url: str = ""
    # The private renew function checks the claims of the token Cloud Run IAM admitted (its signature is removed
    # there): this audience (the run.app URL Cloud Scheduler is given) and the invoker's email. Empty = no check.
    scheduler_oidc_audience: str = ""
    scheduler_invoker_email: str = ""
    # The user-facing functions check the claims of the API gateway's own token (in `Authorization`, signature removed
    # by Cloud Run): one of these audiences (comma-separated: the backends' jwt_audience) and the gateway's account.
    # Empty = no check (a function called directly, as in unit tests).
    gateway_jwt_audiences: str = ""
    gateway_invoker_email: str = ""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        """Build settings from the given mapping (default: os.environ); unset or empty vars keep defaults."""
        env = os.environ if environ is None else environ
        values = {field: env[name] for name, field in ENV_VARS.items() if env.get(name)}
        if "project_id" not in values and env.get("GCLOUD_PROJECT"):
            values["project_id"] = env["GCLOUD_PROJECT"]
        return cls(**values)


@functools.cache
def get_settings() -> "Settings":
    """The process-wide settings, read lazily on first use (never at import)."""
    return Settings.from_env()


def reset_settings() -> None:
    """Forget cached settings (tests and the local runner change the environment)."""
    get_settings.cache_clear()
