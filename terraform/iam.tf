# Service accounts: one runtime account per function (least privilege), plus the scheduler's invoker, the Eventarc
# trigger's invoker, the API gateway's invoker and the build account. No function runs as the default compute account.

resource "google_service_account" "function" {
  for_each = local.functions

  account_id   = "${var.name_prefix}-fn-${replace(each.key, "_", "-")}"
  display_name = "Runtime of the ${local.function_names[each.key]} function"

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "scheduler" {
  account_id   = "${var.name_prefix}-renew-scheduler"
  display_name = "Cloud Scheduler: invokes the renew function (OIDC)"

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "trigger" {
  account_id   = "${var.name_prefix}-push-trigger"
  display_name = "Eventarc Firestore trigger: invokes the push_event function"

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "gateway" {
  account_id   = "${var.name_prefix}-api-gateway"
  display_name = "API Gateway: the only invoker of the user-facing functions"

  depends_on = [google_project_service.apis]
}

resource "google_service_account" "build" {
  account_id   = "${var.name_prefix}-fn-build"
  display_name = "Cloud Build of the functions"

  depends_on = [google_project_service.apis]
}

# --- Runtime accounts -------------------------------------------------------------------------------------------
# roles/datastore.user is the narrowest predefined role that reads and writes Firestore documents; Firestore has no
# per-collection IAM, so it is granted on the project. Nothing else project-wide except writing logs.
resource "google_project_iam_member" "function_firestore" {
  for_each = local.functions

  project = var.project_id
  role    = "roles/datastore.user"
  member  = "serviceAccount:${google_service_account.function[each.key].email}"
}

resource "google_project_iam_member" "function_logs" {
  for_each = local.functions

  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.function[each.key].email}"
}

# Each function reads only the secrets it lists, each granted on that one secret.
resource "google_secret_manager_secret_iam_member" "function_secret" {
  for_each = local.secret_access

  project   = var.project_id
  secret_id = google_secret_manager_secret.secret[each.value.secret].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.function[each.value.function].email}"
}

# --- Invokers ---------------------------------------------------------------------------------------------------
# The project's only public binding: Google's push notifications carry no Google identity. The webhook trusts
# nothing in them but a known channel id and its channel token (compared in constant time against a stored digest).
resource "google_cloud_run_v2_service_iam_member" "webhook_public" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn["webhook"].service_config[0].service
  role     = "roles/run.invoker"
  member   = "allUsers"
}

# User-facing functions: the API gateway's account is the only invoker.
resource "google_cloud_run_v2_service_iam_member" "gateway_invoker" {
  for_each = { for k, f in local.functions : k => f if f.access == "gateway" }

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn[each.key].service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.gateway.email}"
}

# renew: only the scheduler's account (its OIDC token's audience is the renew URL).
resource "google_cloud_run_v2_service_iam_member" "scheduler_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn["renew"].service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}

# push_event: only the Eventarc trigger's account.
resource "google_cloud_run_v2_service_iam_member" "trigger_invoker" {
  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn["push_event"].service_config[0].service
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.trigger.email}"
}

# Eventarc requires its trigger account to hold eventReceiver on the project (there is no narrower scope).
resource "google_project_iam_member" "trigger_event_receiver" {
  project = var.project_id
  role    = "roles/eventarc.eventReceiver"
  member  = "serviceAccount:${google_service_account.trigger.email}"
}

# --- Build account ----------------------------------------------------------------------------------------------
resource "google_project_iam_member" "build_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.build.email}"
}

resource "google_artifact_registry_repository_iam_member" "build_push" {
  project    = var.project_id
  location   = google_artifact_registry_repository.functions.location
  repository = google_artifact_registry_repository.functions.name
  role       = "roles/artifactregistry.writer"
  member     = "serviceAccount:${google_service_account.build.email}"
}

# Google's page on the build service account of Cloud Run functions lists Logs Writer, Artifact Registry Writer and
# Storage Object Admin ("for retrieving the function source from the Cloud Storage bucket, and to store build
# images"): https://cloud.google.com/run/docs/configuring/services/build-service-account#required-roles. Granted as
# documented: the buckets the build writes to are Google-managed and their names are not documented, so a narrower
# condition could fail the build on a fresh project.
resource "google_project_iam_member" "build_sources" {
  project = var.project_id
  role    = "roles/storage.objectAdmin"
  member  = "serviceAccount:${google_service_account.build.email}"
}

# IAM grants propagate in minutes; the provider's own function examples wait before the first build.
resource "time_sleep" "build_iam" {
  create_duration = "60s"

  depends_on = [
    google_project_iam_member.build_logs,
    google_project_iam_member.build_sources,
    google_artifact_registry_repository_iam_member.build_push,
  ]
}

# --- Eventarc service agent ---------------------------------------------------------------------------------------
# On a fresh project the agent is created lazily, and a trigger created right after enabling the API fails with
# "Permission denied while using the Eventarc Service Agent" (hashicorp/terraform-provider-google#25294). Create
# the identity explicitly, make sure it holds its role, and wait for both to propagate.
resource "google_project_service_identity" "eventarc" {
  provider = google-beta

  project = var.project_id
  service = "eventarc.googleapis.com"

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "eventarc_agent" {
  project = var.project_id
  role    = "roles/eventarc.serviceAgent"
  member  = "serviceAccount:${google_project_service_identity.eventarc.email}"
}

resource "time_sleep" "eventarc_agent" {
  create_duration = "60s"

  depends_on = [google_project_iam_member.eventarc_agent]
}
