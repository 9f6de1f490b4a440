# One source archive of the repository root for every function: main.py, requirements.txt, functions/ and shared/
# only (an allow-list: tests, infra, terraform and local state never ship). The object is named by the archive's
# hash, so any code change uploads a new object and redeploys every function, and re-applying an older commit
# rebuilds exactly that commit's archive (rollback).
locals {
  repo_root = abspath("${path.module}/..")

  source_files = sort([
    for f in setunion(
      fileset(local.repo_root, "{main.py,requirements.txt}"),
      fileset(local.repo_root, "functions/**"),
      fileset(local.repo_root, "shared/**"),
    ) : f if !strcontains(f, "__pycache__") && !endswith(f, ".pyc")
  ])
}

data "archive_file" "source" {
  type        = "zip"
  output_path = "${path.module}/.function-source.zip"

  dynamic "source" {
    for_each = local.source_files
    content {
      filename = source.value
      content  = file("${local.repo_root}/${source.value}")
    }
  }
}

resource "google_storage_bucket" "source" {
  #checkov:skip=CKV_GCP_62: holds only build inputs (the function source archive), no user data; reads and writes are already in Cloud Audit Logs, a second log bucket adds nothing
  name                        = "${var.project_id}-${var.name_prefix}-fn-source"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = true

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket_object" "source" {
  name   = "source/${data.archive_file.source.output_sha256}.zip"
  bucket = google_storage_bucket.source.name
  source = data.archive_file.source.output_path
}

# Builds run as a dedicated account, never the default compute account: it reads the sources and pushes images to
# its own repository.
resource "google_artifact_registry_repository" "functions" {
  #checkov:skip=CKV_GCP_84: images are rebuilt from the source archive and hold no user data or secrets; Google-managed encryption at rest, no CMEK key ring to operate
  repository_id = "${var.name_prefix}-functions"
  location      = var.region
  format        = "DOCKER"
  description   = "Images built from the function source"

  cleanup_policies {
    id     = "delete-old"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "2592000s"
    }
  }

  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 10
    }
  }

  depends_on = [google_project_service.apis]
}
