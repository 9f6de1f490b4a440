# One entry per entry point in main.py (a policy test parses main.py and keeps the two in step).
#
# access:
#   public  - the webhook: Google's push notifications carry no Google identity, so its Cloud Run service has the
#             project's only allUsers invoker binding; it authenticates each call by channel id + channel token.
#   gateway - user-facing functions (settings_ui: the settings component's static files, see gateway.tf). Browsers cannot mint Google-signed tokens for Cloud Run IAM, and allUsers is
#             reserved for the webhook, so these sit behind API Gateway (gateway.tf): the gateway validates the
#             Firebase / Identity Platform ID token at the edge, calls the function as its own service account (the
#             only invoker), and the function verifies the user's ID token again (shared/account/identity.py). Firebase Hosting
#             rewrites were rejected: they require the Cloud Run service to be publicly invokable.
#   private - renew: invoked only by the scheduler's service account with an OIDC token (scheduler.tf).
#   event   - push_event: Eventarc Firestore trigger, invoked only by the trigger's service account.
#
# secrets: the SECRET_ENV_VARS each function reads; its runtime account gets secretAccessor on exactly those secrets.
locals {
  functions = {
    webhook = {
      entry_point = "webhook", access = "public", path = "", description = "Google Calendar push notifications"
      memory      = "512Mi", timeout = 120, min_instances = 0, max_instances = 20
      secrets     = ["OAUTH_CLIENT_SECRET", "TOKEN_ENCRYPTION_KEYS"]
    }
    oauth_start = {
      entry_point = "oauth_start", access = "gateway", path = "/oauth/start", description = "Begin connecting a Google account"
      memory      = "256Mi", timeout = 30, min_instances = 0, max_instances = 5
      secrets     = ["TOKEN_ENCRYPTION_KEYS"]
    }
    oauth_callback = {
      entry_point = "oauth_callback", access = "gateway", path = "/oauth/callback", description = "Finish connecting a Google account"
      memory      = "256Mi", timeout = 60, min_instances = 0, max_instances = 5
      secrets     = ["OAUTH_CLIENT_SECRET", "TOKEN_ENCRYPTION_KEYS"]
    }
    oauth_disconnect = {
      entry_point = "oauth_disconnect", access = "gateway", path = "/oauth/disconnect", description = "Revoke and disconnect"
      memory      = "256Mi", timeout = 120, min_instances = 0, max_instances = 5
      secrets     = ["OAUTH_CLIENT_SECRET", "TOKEN_ENCRYPTION_KEYS"]
    }
    sync_enable = {
      entry_point = "sync_enable", access = "gateway", path = "/sync/enable", description = "Enable sync for calendars"
      memory      = "512Mi", timeout = 300, min_instances = 0, max_instances = 5
      secrets     = ["OAUTH_CLIENT_SECRET", "TOKEN_ENCRYPTION_KEYS"]
    }
    sync_disable = {
      entry_point = "sync_disable", access = "gateway", path = "/sync/disable", description = "Disable sync for calendars"
      memory      = "256Mi", timeout = 120, min_instances = 0, max_instances = 5
      secrets     = ["OAUTH_CLIENT_SECRET", "TOKEN_ENCRYPTION_KEYS"]
    }
    sync_status = {
      entry_point = "sync_status", access = "gateway", path = "/sync/status", description = "Sync status for a settings page"
      memory      = "256Mi", timeout = 60, min_instances = 0, max_instances = 5
      secrets     = ["OAUTH_CLIENT_SECRET", "TOKEN_ENCRYPTION_KEYS"]
    }
    sync_conflicts = {
      entry_point = "sync_conflicts", access = "gateway", path = "/sync/conflicts", description = "The conflict center's list"
      memory      = "256Mi", timeout = 60, min_instances = 0, max_instances = 5
      secrets     = []
    }
    sync_resolve = {
      entry_point = "sync_resolve", access = "gateway", path = "/sync/resolve", description = "Keep one version of a conflict"
      memory      = "256Mi", timeout = 60, min_instances = 0, max_instances = 5
      secrets     = []
    }
    settings_ui = {
      entry_point = "settings_ui", access = "gateway", path = "/settings", description = "The settings component's files"
      memory      = "256Mi", timeout = 30, min_instances = 0, max_instances = 5
      secrets     = []
    }
    renew = {
      entry_point = "renew", access = "private", path = "", description = "Scheduled channel renewal and reconciliation"
      memory      = "512Mi", timeout = 300, min_instances = 0, max_instances = 1
      secrets     = ["OAUTH_CLIENT_SECRET", "TOKEN_ENCRYPTION_KEYS"]
    }
    push_event = {
      entry_point = "push_event", access = "event", path = "", description = "CRM event written: push it to Google Calendar"
      memory      = "512Mi", timeout = 120, min_instances = 0, max_instances = 20
      secrets     = ["OAUTH_CLIENT_SECRET", "TOKEN_ENCRYPTION_KEYS"]
    }
  }

  # Function and service names: lowercase with hyphens (Cloud Run service names allow no underscores).
  function_names = { for k, f in local.functions : k => "${var.name_prefix}-${replace(k, "_", "-")}" }

  # Each function's deterministic run.app URL, https://SERVICE-PROJECT_NUMBER.REGION.run.app
  # (https://cloud.google.com/run/docs/triggering/https-request#deterministic). Cloud Run IAM accepts a service's
  # run.app URLs as ID-token audiences (https://cloud.google.com/run/docs/authenticating/service-to-service), so the
  # scheduler's audience, the gateway's jwt_audience and the values the code checks (SCHEDULER_OIDC_AUDIENCE,
  # GATEWAY_JWT_AUDIENCES) are all this one URL. It depends on no function, so there is no dependency cycle.
  function_urls = {
    for k, name in local.function_names : k => "https://${name}-${data.google_project.this.number}.${var.region}.run.app"
  }
  gateway_backend_urls = [for k, f in local.functions : local.function_urls[k] if f.access == "gateway"]

  webhook_url  = var.webhook_domain != "" ? "https://${trimsuffix(var.webhook_domain, "/")}" : local.function_urls["webhook"]
  renew_url    = local.function_urls["renew"]
  api_base_url = var.api_base_url != "" ? trimsuffix(var.api_base_url, "/") : "https://${google_api_gateway_gateway.api.default_hostname}"

  auth_project_id    = var.auth_project_id != "" ? var.auth_project_id : var.project_id
  firestore_location = var.firestore_location != "" ? var.firestore_location : var.region

  # Concurrent requests per instance (default 1). The webhook serves up to 4 at once: the gunicorn threads
  # functions-framework starts on one vCPU (4 per CPU), so no request waits inside the instance; concurrency above 1
  # needs at least 1 vCPU. Its max_instances x one instance's measured rate (bench_instance) covers the peak
  # notification rate of the users one project carries: README "Capacity".
  # The renew function gets 1 vCPU for its RENEWAL_CONCURRENCY worker threads (a run pages through what is due until
  # its deadline): sized for one million users, README "Capacity".
  request_concurrency = {
    webhook = { cpu = "1", concurrency = 4 }
    renew   = { cpu = "1", concurrency = 1 }
  }

  # Sizing: per-function defaults above, overridden by var.function_sizing.
  sizing = {
    for k, f in local.functions : k => {
      memory        = coalesce(try(var.function_sizing[k].memory, null), f.memory)
      timeout       = coalesce(try(var.function_sizing[k].timeout, null), f.timeout)
      min_instances = coalesce(try(var.function_sizing[k].min_instances, null), f.min_instances)
      max_instances = coalesce(try(var.function_sizing[k].max_instances, null), f.max_instances)
      cpu           = try(coalesce(try(var.function_sizing[k].cpu, null), local.request_concurrency[k].cpu), null)
      concurrency   = try(coalesce(try(var.function_sizing[k].concurrency, null), local.request_concurrency[k].concurrency), 1)
    }
  }

  # Env vars of shared/config.py ENV_VARS that must never be set in production (a policy test enforces it):
  # GOOGLE_API_ENDPOINT points the Google client at the local stand-in.
  local_only_env_vars = ["GOOGLE_API_ENDPOINT"]

  # Tunables (shared/config.py defaults; a policy test keeps them equal), overridable through var.tuning.
  tuning_defaults = {
    CHANNEL_TTL_SECONDS             = "604800"
    RENEW_BEFORE_SECONDS            = "86400"
    STALE_SYNC_SECONDS              = "64800"
    PUSH_SWEEP_GRACE_SECONDS        = "120"
    SYNC_LEASE_SECONDS              = "120"
    SEND_UPDATES                    = "all"
    GOOGLE_MAX_RETRIES              = "5"
    GOOGLE_RETRY_BASE_SECONDS       = "0.5"
    RENEWAL_DEADLINE_SECONDS        = "240.0"
    RENEWAL_CONCURRENCY             = "16"
    FIRESTORE_CALL_DEADLINE_SECONDS = "20.0"
  }

  # Deployment-derived env vars.
  base_env = {
    GOOGLE_CLOUD_PROJECT           = var.project_id
    FIRESTORE_DATABASE             = google_firestore_database.main.name
    GOOGLE_OAUTH_AUTH_URI          = "https://accounts.google.com/o/oauth2/v2/auth"
    GOOGLE_OAUTH_TOKEN_URI         = "https://oauth2.googleapis.com/token"
    GOOGLE_OAUTH_REVOKE_URI        = "https://oauth2.googleapis.com/revoke"
    OAUTH_CLIENT_ID                = var.oauth_client_id
    OAUTH_REDIRECT_URI             = "${local.api_base_url}/oauth/callback"
    OAUTH_RETURN_URL               = var.oauth_return_url
    TOKEN_ENCRYPTION_ACTIVE_KEY_ID = var.token_encryption_active_key_id
    WEBHOOK_URL                    = local.webhook_url
    ID_TOKEN_ISSUER                = "https://securetoken.google.com/${local.auth_project_id}"
    ID_TOKEN_AUDIENCE              = local.auth_project_id
    ID_TOKEN_CERTS_URL             = "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com"
    SCHEDULER_OIDC_AUDIENCE        = local.renew_url
    SCHEDULER_INVOKER_EMAIL        = google_service_account.scheduler.email
    GATEWAY_JWT_AUDIENCES          = join(",", local.gateway_backend_urls)
    GATEWAY_INVOKER_EMAIL          = google_service_account.gateway.email
  }

  # Plain env vars every function gets (every function builds the same Settings from the environment).
  common_env = merge(local.tuning_defaults, var.tuning, local.base_env)

  # Secret env var -> Secret Manager secret id. Terraform creates the containers, never the values.
  secrets = {
    OAUTH_CLIENT_SECRET   = "${var.name_prefix}-oauth-client-secret"
    TOKEN_ENCRYPTION_KEYS = "${var.name_prefix}-token-encryption-keys"
  }

  # (function, secret env var) pairs -> one secretAccessor binding each.
  secret_access = merge([
    for k, f in local.functions : { for s in f.secrets : "${k}/${s}" => { function = k, secret = s } }
  ]...)

  # Composite indexes of shared/indexes.py: COMPOSITE_INDEXES (query scope COLLECTION) and COLLECTION_GROUP_INDEXES
  # (COLLECTION_GROUP). A policy test compares both directions, query scope included.
  composite_indexes = {
    "events--owner_id-asc--google.calendar_id-asc" = {
      collection  = "events"
      query_scope = "COLLECTION"
      fields = [
        { field_path = "owner_id", order = "ASCENDING" },
        { field_path = "google.calendar_id", order = "ASCENDING" },
      ]
    }
    "events--owner_id-asc--google.calendar_id-asc--google.event_id-asc" = {
      collection  = "events"
      query_scope = "COLLECTION"
      fields = [
        { field_path = "owner_id", order = "ASCENDING" },
        { field_path = "google.calendar_id", order = "ASCENDING" },
        { field_path = "google.event_id", order = "ASCENDING" },
      ]
    }
    "events--sync.state-asc--sync.next_attempt_at-asc" = {
      collection  = "events"
      query_scope = "COLLECTION"
      fields = [
        { field_path = "sync.state", order = "ASCENDING" },
        { field_path = "sync.next_attempt_at", order = "ASCENDING" },
      ]
    }
    "events--owner_id-asc--sync.state-asc" = {
      collection  = "events"
      query_scope = "COLLECTION"
      fields = [
        { field_path = "owner_id", order = "ASCENDING" },
        { field_path = "sync.state", order = "ASCENDING" },
      ]
    }
    "events--owner_id-asc--series.series_crm_id-asc" = {
      collection  = "events"
      query_scope = "COLLECTION"
      fields = [
        { field_path = "owner_id", order = "ASCENDING" },
        { field_path = "series.series_crm_id", order = "ASCENDING" },
      ]
    }
    "events--owner_id-asc--sync.last_decision_at-des" = {
      collection  = "events"
      query_scope = "COLLECTION"
      fields = [
        { field_path = "owner_id", order = "ASCENDING" },
        { field_path = "sync.last_decision_at", order = "DESCENDING" },
      ]
    }
    "channels--state-asc--expiration-asc" = {
      collection  = "channels"
      query_scope = "COLLECTION"
      fields = [
        { field_path = "state", order = "ASCENDING" },
        { field_path = "expiration", order = "ASCENDING" },
      ]
    }
    "calendars--enabled-asc--renew_due_at-asc" = {
      collection  = "calendars"
      query_scope = "COLLECTION_GROUP"
      fields = [
        { field_path = "enabled", order = "ASCENDING" },
        { field_path = "renew_due_at", order = "ASCENDING" },
      ]
    }
    "calendars--enabled-asc--pull_due_at-asc" = {
      collection  = "calendars"
      query_scope = "COLLECTION_GROUP"
      fields = [
        { field_path = "enabled", order = "ASCENDING" },
        { field_path = "pull_due_at", order = "ASCENDING" },
      ]
    }
    "calendars--enabled-asc--last_error_at-des" = {
      collection  = "calendars"
      query_scope = "COLLECTION_GROUP"
      fields = [
        { field_path = "enabled", order = "ASCENDING" },
        { field_path = "last_error_at", order = "DESCENDING" },
      ]
    }
  }

  # TTL policies of shared/indexes.py TTL_FIELDS.
  ttl_fields = {
    "events--purge_at"           = { collection = "events", field = "purge_at" }
    "oauth_states--expires_at"   = { collection = "oauth_states", field = "expires_at" }
    "channel_leases--expires_at" = { collection = "channel_leases", field = "expires_at" }
    "sync_leases--expires_at"    = { collection = "sync_leases", field = "expires_at" }
    "sync_dirty--expires_at"     = { collection = "sync_dirty", field = "expires_at" }
  }

  # The renewal cron: shared/scheduler_job.json is the single source of truth (ops command and local scheduler read it too).
  scheduler_job = jsondecode(file("${path.module}/../shared/scheduler_job.json"))
}
