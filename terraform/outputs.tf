output "webhook_url" {
  description = "Where Google Calendar push notifications are sent (WEBHOOK_URL)."
  value       = local.webhook_url
}

output "api_base_url" {
  description = "Base URL of the user-facing API (API Gateway); the CRM frontend calls <base>/oauth/start etc."
  value       = local.api_base_url
}

output "oauth_redirect_uri" {
  description = "Register this as an authorized redirect URI of the OAuth client."
  value       = local.common_env.OAUTH_REDIRECT_URI
}

output "user_facing_urls" {
  description = "Gateway route of each user-facing function."
  value       = { for k, f in local.gateway_functions : k => "${local.api_base_url}${f.path}" }
}

output "function_urls" {
  description = "Each function's deterministic run.app URL (only the webhook is publicly invokable)."
  value       = local.function_urls
}

output "function_run_urls" {
  description = "Each function's Cloud Run (run.app) URL."
  value       = { for k, f in google_cloudfunctions2_function.fn : k => f.url }
}

output "scheduler_job_name" {
  description = "The renewal cron job (gcloud scheduler jobs run <name> --location <region>)."
  value       = google_cloud_scheduler_job.renew.name
}

output "secret_ids" {
  description = "Secret Manager secrets to fill with `gcloud secrets versions add` (env var -> secret id)."
  value       = { for k, s in google_secret_manager_secret.secret : k => s.secret_id }
}

output "source_object" {
  description = "The deployed source archive (named by its SHA-256)."
  value       = "gs://${google_storage_bucket.source.name}/${google_storage_bucket_object.source.name}"
}
