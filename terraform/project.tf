# The project number is part of every run.app URL (locals.tf function_urls).
data "google_project" "this" {
  project_id = var.project_id
}
