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

# The build reads the uploaded archive and the copy Cloud Functions stages in its gcf-v2-sources bucket; the
# condition limits the read to those two buckets.
resource "google_project_iam_member" "build_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = "serviceAccount:${google_service_account.build.email}"

  condition {
    title       = "function-sources-only"
    description = "Only the function source buckets"
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.source.name}\") || resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-\")"
  }
}
