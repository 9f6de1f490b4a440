# The renewal cron. Schedule, time zone, deadline and retries come from shared/scheduler_job.json, the single source
# the ops command and the local scheduler read too.
resource "google_cloud_scheduler_job" "renew" {
  name             = "${var.name_prefix}-${local.scheduler_job.name}"
  description      = local.scheduler_job.description
  region           = var.region
  schedule         = local.scheduler_job.schedule
  time_zone        = local.scheduler_job.time_zone
  attempt_deadline = "${local.scheduler_job.attempt_deadline_seconds}s"

  retry_config {
    retry_count          = local.scheduler_job.retry.retry_count
    min_backoff_duration = "${local.scheduler_job.retry.min_backoff_seconds}s"
    max_backoff_duration = "${local.scheduler_job.retry.max_backoff_seconds}s"
    max_doublings        = local.scheduler_job.retry.max_doublings
  }

  http_target {
    http_method = "POST"
    uri         = local.renew_url
    body        = base64encode("{}")
    headers = {
      "Content-Type" = "application/json"
    }

    # The renew function is private: Cloud Run admits only this account with this audience (the function's run.app
    # URL), and the function checks the same audience (SCHEDULER_OIDC_AUDIENCE) and account again.
    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = local.renew_url
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.scheduler_invoker]
}
