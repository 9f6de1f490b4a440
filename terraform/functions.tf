# One gen2 function per entry point of main.py, all built from the same source object.
resource "google_cloudfunctions2_function" "fn" {
  for_each = local.functions

  name        = local.function_names[each.key]
  location    = var.region
  description = each.value.description

  build_config {
    runtime           = "python312"
    entry_point       = each.value.entry_point
    service_account   = google_service_account.build.id
    docker_repository = google_artifact_registry_repository.functions.id

    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    available_memory                 = local.sizing[each.key].memory
    timeout_seconds                  = local.sizing[each.key].timeout
    min_instance_count               = local.sizing[each.key].min_instances
    max_instance_count               = local.sizing[each.key].max_instances
    available_cpu                    = local.sizing[each.key].cpu
    max_instance_request_concurrency = local.sizing[each.key].concurrency
    service_account_email            = google_service_account.function[each.key].email
    all_traffic_on_latest_revision   = true
    # The webhook (Google's push service) and the user-facing functions (API Gateway) are reached from the internet
    # and guarded by IAM. renew and push_event are internal-only: Cloud Scheduler and Eventarc in the same project
    # calling the default run.app URL count as internal traffic
    # (https://cloud.google.com/run/docs/securing/ingress#settings), so nothing else can even reach them.
    ingress_settings      = contains(["private", "event"], each.value.access) ? "ALLOW_INTERNAL_ONLY" : "ALLOW_ALL"
    environment_variables = local.common_env

    dynamic "secret_environment_variables" {
      for_each = toset(each.value.secrets)
      content {
        key        = secret_environment_variables.value
        project_id = var.project_id
        secret     = google_secret_manager_secret.secret[secret_environment_variables.value].secret_id
        version    = "latest"
      }
    }
  }

  # push_event: CRM event documents written in Firestore, delivered by Eventarc as its own service account.
  dynamic "event_trigger" {
    for_each = each.value.access == "event" ? [each.key] : []
    content {
      trigger_region        = local.firestore_location
      event_type            = "google.cloud.firestore.document.v1.written"
      retry_policy          = "RETRY_POLICY_RETRY"
      service_account_email = google_service_account.trigger.email

      event_filters {
        attribute = "database"
        value     = google_firestore_database.main.name
      }

      event_filters {
        attribute = "document"
        value     = "events/{eventId}"
        operator  = "match-path-pattern"
      }
    }
  }

  # A function cannot start before it may read its secrets, before the build account's grants have propagated
  # (time_sleep.build_iam) and, for the Firestore trigger, before the Eventarc service agent exists and holds its
  # role (time_sleep.eventarc_agent).
  depends_on = [
    google_project_service.apis,
    google_secret_manager_secret_iam_member.function_secret,
    time_sleep.build_iam,
    time_sleep.eventarc_agent,
    google_project_iam_member.trigger_event_receiver,
  ]
}
