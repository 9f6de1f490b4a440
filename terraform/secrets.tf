# Secret Manager containers for the secret env vars. Terraform never holds the values (no secret_data, nothing in
# state): operators add versions with `gcloud secrets versions add` (README, Deploy). Functions read version "latest".
resource "google_secret_manager_secret" "secret" {
  for_each = local.secrets

  secret_id = each.value

  labels = {
    env_var = lower(each.key)
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}
