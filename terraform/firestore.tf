resource "google_firestore_database" "main" {
  name                              = "(default)"
  location_id                       = local.firestore_location
  type                              = "FIRESTORE_NATIVE"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON"

  depends_on = [google_project_service.apis]
}

# Every composite query of shared/ (shared/indexes.py COMPOSITE_INDEXES).
resource "google_firestore_index" "composite" {
  for_each = local.composite_indexes

  database    = google_firestore_database.main.name
  collection  = each.value.collection
  query_scope = each.value.query_scope

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path = fields.value.field_path
      order      = fields.value.order
    }
  }
}

# TTL policies (shared/indexes.py TTL_FIELDS): Firestore deletes each document some time after the field's time
# (tombstones, expired leases, OAuth states, dirty markers). Single-field indexes are left as they are: the code
# may range-query these fields.
resource "google_firestore_field" "ttl" {
  for_each = local.ttl_fields

  database   = google_firestore_database.main.name
  collection = each.value.collection
  field      = each.value.field

  ttl_config {}
}

# Security rules for client SDK access (repository root firestore.rules): the sync-owned collections are closed, a
# user reads and writes only their own events and never the sync's fields. The Admin SDK (the functions, a CRM
# backend) is not subject to rules; README states the contract for it.
resource "google_firebaserules_ruleset" "firestore" {
  project = var.project_id

  source {
    files {
      name    = "firestore.rules"
      content = file("${path.module}/../firestore.rules")
    }
  }

  lifecycle {
    create_before_destroy = true
  }

  depends_on = [google_project_service.apis, google_firestore_database.main]
}

resource "google_firebaserules_release" "firestore" {
  project      = var.project_id
  name         = "cloud.firestore"
  ruleset_name = "projects/${var.project_id}/rulesets/${google_firebaserules_ruleset.firestore.name}"

  lifecycle {
    replace_triggered_by = [google_firebaserules_ruleset.firestore]
  }
}
