"""Terraform policy, checked offline: python-hcl2 parses terraform/*.tf, the code supplies the facts.

Each policy is its own test; `test_checkers_catch_violations` feeds deliberately bad snippets to every checker so a
checker that silently passes everything would fail here.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from shared import config as app_config
from shared import indexes as app_indexes
from tests.terraform import policy
from tests.terraform.tfconfig import Config, load_dir, parse_text

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cfg() -> Config:
    return load_dir()


@pytest.fixture(scope="module")
def job() -> dict:
    return json.loads((REPO / "shared" / "scheduler_job.json").read_text(encoding="utf-8"))


def setting_defaults() -> dict[str, object]:
    fields = app_config.Settings.model_fields
    return {env: fields[name].default for env, name in app_config.ENV_VARS.items() if name in fields}


def written_field_names() -> set[str]:
    """Names the code can write to Firestore: string constants, attribute / keyword / annotated names in shared/."""
    names: set[str] = set()
    for path in [*(REPO / "shared").rglob("*.py"), *(REPO / "functions").rglob("*.py")]:
        if path.name == "indexes.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.keyword) and node.arg:
                names.add(node.arg)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names.add(node.target.id)
    return names


def test_every_entry_point_in_main_py_is_deployed_and_vice_versa(cfg: Config) -> None:
    assert policy.check_entry_points(cfg, policy.main_entry_points()) == []


def test_exactly_one_public_binding_and_it_is_the_webhooks(cfg: Config) -> None:
    assert policy.check_public_bindings(cfg) == []


def test_every_function_has_a_dedicated_service_account(cfg: Config) -> None:
    assert policy.check_service_accounts(cfg) == []


def test_runtime_accounts_have_least_privilege(cfg: Config) -> None:
    assert policy.check_runtime_roles(cfg) == []


def test_each_private_function_has_only_its_designated_invoker(cfg: Config) -> None:
    assert policy.check_invokers(cfg) == []


def test_scheduler_calls_renew_with_oidc_and_the_codes_schedule(cfg: Config, job: dict) -> None:
    assert policy.check_scheduler(cfg, job) == []


def test_functions_are_built_from_an_archive_object_named_by_its_hash(cfg: Config) -> None:
    assert policy.check_source_archive(cfg) == []


def test_archive_allow_list_covers_the_code_and_nothing_else() -> None:
    patterns = policy.archive_patterns(load_dir())
    shipped = {
        p.relative_to(REPO).as_posix()
        for pattern in patterns
        for p in (REPO.glob(pattern[:-2] + "**/*") if pattern.endswith("/**") else REPO.glob(pattern))
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert "main.py" in shipped
    assert "requirements.txt" in shipped
    assert not [f for f in shipped if f.split("/")[0] in ("tests", "infra", "terraform")]
    modules = {f"{a.name}" for node in ast.walk(ast.parse((REPO / "main.py").read_text(encoding="utf-8")))
               if isinstance(node, ast.ImportFrom) and node.module for a in [ast.alias(name=node.module)]}
    for module in sorted(m for m in modules if m.split(".")[0] in ("functions", "shared")):
        path = module.replace(".", "/")
        if (REPO / f"{path}.py").exists():
            assert f"{path}.py" in shipped, f"{module} is imported by main.py but not shipped"


def test_terraform_holds_no_secret_values(cfg: Config) -> None:
    assert policy.check_no_secret_values(cfg) == []


def test_every_env_var_and_secret_the_code_reads_is_provided(cfg: Config) -> None:
    assert policy.check_env_vars(cfg, app_config.ENV_VARS, app_config.SECRET_ENV_VARS, setting_defaults()) == []


def test_local_only_env_vars_are_documented_and_never_deployed(cfg: Config) -> None:
    local_only = cfg.locals.get("local_only_env_vars")
    assert "GOOGLE_API_ENDPOINT" in (local_only or [])
    assert all(name in app_config.ENV_VARS for name in local_only)
    env = {**cfg.locals["tuning_defaults"], **cfg.locals["base_env"]}
    assert not [name for name in local_only if name in env]


def test_every_composite_query_index_is_declared_both_ways(cfg: Config) -> None:
    code = policy.code_indexes(app_indexes.COMPOSITE_INDEXES, getattr(app_indexes, "COLLECTION_GROUP_INDEXES", ()))
    assert policy.check_indexes(cfg, code) == []


def test_ttl_fields_match_the_fields_the_code_writes(cfg: Config) -> None:
    assert policy.check_ttl(cfg, app_indexes.TTL_FIELDS, written_field_names()) == []


def test_firestore_native_and_the_push_trigger(cfg: Config) -> None:
    assert policy.check_firestore_and_trigger(cfg) == []


def test_required_apis_are_enabled(cfg: Config) -> None:
    assert policy.check_apis(cfg) == []


def test_outputs_and_webhook_url(cfg: Config) -> None:
    assert policy.check_outputs(cfg) == []


def test_user_facing_functions_sit_behind_the_gateway(cfg: Config) -> None:
    assert policy.check_gateway(cfg) == []


def test_function_sizing_and_renewal_deadlines_nest(cfg: Config, job: dict) -> None:
    deadline = float(app_config.Settings().renewal_deadline_seconds)
    assert policy.check_sizing(cfg, job, deadline) == []


def test_a_fresh_project_applies(cfg: Config) -> None:
    """Resource Manager API on, Eventarc service agent created and settled before the trigger (provider issue
    25294), the build account's documented roles settled before the build."""
    assert policy.check_fresh_project(cfg) == []


def test_audiences_are_run_app_urls_and_the_code_checks_the_same(cfg: Config) -> None:
    assert policy.check_run_app_audiences(cfg, app_config.ENV_VARS) == []


def test_terraform_and_code_see_the_same_audiences() -> None:
    """Evaluated, not pattern-matched: the values Cloud Run IAM will require are the values the code checks."""
    from infra.terraform_eval import TerraformModule

    module = TerraformModule(
        variables={"project_id": "crm-policy", "oauth_client_id": "client"},
        known={"data.google_project.this": {"number": "123456789012"},
               "google_api_gateway_gateway.api": {"default_hostname": "gw.example"}},
    )
    assert policy.check_evaluated_audiences(module) == []


def test_project_unique_names_carry_the_prefix(cfg: Config) -> None:
    assert policy.check_names_prefixed(cfg) == []


def test_renew_and_push_event_are_internal_only(cfg: Config) -> None:
    assert policy.check_ingress(cfg) == []


def test_providers_are_pinned_exactly() -> None:
    assert policy.check_provider_pins((REPO / "terraform" / "versions.tf").read_text(encoding="utf-8")) == []


def test_firestore_rules_are_deployed(cfg: Config) -> None:
    assert policy.check_firestore_rules(cfg) == []


def test_every_checkov_skip_is_justified_inline(cfg: Config) -> None:
    for fname, check, reason in policy.checkov_skips(cfg):
        assert len(reason) >= 30, f"{fname}: checkov skip {check} needs an inline justification"


# --- the checkers catch real violations ---------------------------------------------------------------------------
BAD = """
locals {
  functions = {
    webhook = { entry_point = "webhook", access = "public", path = "", secrets = ["OAUTH_CLIENT_SECRET"] }
    ghost   = { entry_point = "ghost", access = "gateway", path = "/x", secrets = ["NOPE"] }
  }
  secrets = { OAUTH_CLIENT_SECRET = "s" }
  tuning_defaults = { RENEWAL_CONCURRENCY = "99" }
  base_env = { GOOGLE_API_ENDPOINT = "http://localhost", OAUTH_CLIENT_SECRET = "plain" }
  common_env = local.base_env
  composite_indexes = {
    extra = { collection = "events", fields = [{ field_path = "title", order = "ASCENDING" }] }
  }
  ttl_fields = { wrong = { collection = "events", field = "expire_at_never_written" } }
  scheduler_job = { schedule = "* * * * *" }
  services = ["run.googleapis.com"]
  source_files = sort(fileset(local.repo_root, "**"))
  function_urls = { for k, name in local.function_names : k => "https://r-p.cloudfunctions.net/${name}" }
}
resource "google_cloudfunctions2_function" "fn" {
  for_each = local.functions
  name     = each.key
  build_config {
    runtime     = "python311"
    entry_point = "webhook"
    source {
      storage_source {
        bucket = "b"
        object = "source.zip"
      }
    }
  }
  service_config {
    service_account_email = "123-compute@developer.gserviceaccount.com"
    environment_variables = { A = "b" }
  }
}
resource "google_cloud_run_v2_service_iam_member" "a" {
  name   = google_cloudfunctions2_function.fn["renew"].service_config[0].service
  role   = "roles/run.invoker"
  member = "allUsers"
}
resource "google_cloudfunctions2_function_iam_member" "b" {
  cloud_function = "x"
  role           = "roles/cloudfunctions.invoker"
  member         = "allAuthenticatedUsers"
}
resource "google_project_iam_member" "c" {
  project = "p"
  role    = "roles/secretmanager.secretAccessor"
  member  = "serviceAccount:${google_service_account.function["webhook"].email}"
}
resource "google_project_iam_member" "d" {
  project = "p"
  role    = "roles/editor"
  member  = "serviceAccount:x@p.iam.gserviceaccount.com"
}
resource "google_secret_manager_secret_version" "v" {
  secret      = "s"
  secret_data = "hunter2"
}
resource "google_storage_bucket_object" "source" {
  name   = "source.zip"
  bucket = "b"
  source = "x.zip"
}
data "archive_file" "source" {
  type        = "zip"
  source_dir  = ".."
  output_path = "x.zip"
}
resource "google_cloud_scheduler_job" "renew" {
  name     = "j"
  schedule = "*/5 * * * *"
  http_target {
    uri = "https://example.com/renew"
    oauth_token {
      service_account_email = "x@p.iam.gserviceaccount.com"
    }
  }
}
resource "google_firestore_index" "composite" {
  collection = "events"
  fields {
    field_path = "title"
    order      = "ASCENDING"
  }
}
resource "google_firestore_database" "main" {
  name = "(default)"
  type = "DATASTORE_MODE"
}
"""


BAD_VERSIONS = """
terraform {
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.10, < 8.0"
    }
  }
}
"""


def test_checkers_catch_violations() -> None:
    bad = parse_text(BAD)
    entry_points = policy.main_entry_points()
    checks = {
        "entry points": policy.check_entry_points(bad, entry_points),
        "public bindings": policy.check_public_bindings(bad),
        "service accounts": policy.check_service_accounts(bad),
        "runtime roles": policy.check_runtime_roles(bad),
        "invokers": policy.check_invokers(bad),
        "scheduler": policy.check_scheduler(bad, {"schedule": "7 * * * *"}),
        "source archive": policy.check_source_archive(bad),
        "secret values": policy.check_no_secret_values(bad),
        "env vars": policy.check_env_vars(bad, app_config.ENV_VARS, app_config.SECRET_ENV_VARS, setting_defaults()),
        "indexes": policy.check_indexes(bad, policy.code_indexes(app_indexes.COMPOSITE_INDEXES)),
        "ttl": policy.check_ttl(bad, app_indexes.TTL_FIELDS, written_field_names()),
        "firestore/trigger": policy.check_firestore_and_trigger(bad),
        "apis": policy.check_apis(bad),
        "outputs": policy.check_outputs(bad),
        "gateway": policy.check_gateway(bad),
        "sizing": policy.check_sizing(bad, {"attempt_deadline_seconds": 320}, 240.0),
        "fresh project": policy.check_fresh_project(bad),
        "run.app audiences": policy.check_run_app_audiences(bad, []),
        "names prefixed": policy.check_names_prefixed(bad),
        "ingress": policy.check_ingress(bad),
        "provider pins": policy.check_provider_pins(BAD_VERSIONS),
        "firestore rules": policy.check_firestore_rules(bad),
    }
    assert [name for name, errors in checks.items() if not errors] == []
    text = "\n".join(e for errors in checks.values() for e in errors)
    for expected in (
        "has no function in terraform",          # main.py entry points missing
        "expected exactly one public binding",   # allUsers on renew + allAuthenticatedUsers
        "refers to a default service account",
        "secretAccessor must be granted per secret",
        "grants roles/editor",
        "must authenticate with exactly one oidc_token",
        "must contain the archive's hash",
        "has secret_data",
        "GOOGLE_API_ENDPOINT must not be a plain env var",
        "OAUTH_CLIENT_SECRET must not be a plain env var",
        "differs from the code's default",
        "is not used by the code",
        "used by the code is not declared",
        "is never written by the code",
        "FIRESTORE_NATIVE",
        "cloudresourcemanager.googleapis.com must be enabled",
        "lacks roles/storage.objectAdmin",
        "uses a cloudfunctions.net URL",
        "must carry var.name_prefix",
        "must be pinned to an exact version",
        "ingress must be internal-only",
        "exactly one google_firebaserules_ruleset",
    ):
        assert expected in text, f"no checker reported {expected!r}:\n{text}"


def test_normaliser_reads_both_hcl2_shapes() -> None:
    snippet = 'locals {\n  m = { a = "x", b = ["y"] }\n}\nresource "t" "n" {\n  s = "v-${var.k}"\n  blk { c = 1 }\n}\n'
    parsed = parse_text(snippet)
    assert parsed.locals["m"] == {"a": "x", "b": ["y"]}
    assert parsed.resource("t", "n") == {"s": "v-${var.k}", "blk": [{"c": 1}]}


def test_settings_ui_files_ship_in_the_source_archive(cfg: Config) -> None:
    """Every file settings_ui serves exists under functions/web, which the archive's allow-list (functions/**) ships;
    the page's URL agrees between the function, the gateway route and the local stack."""
    from functions import settings_ui
    from infra.devstack import SETTINGS_PAGE

    assert "functions/**" in policy.archive_patterns(cfg)
    # The page's URL is the gateway route's, and the local stack serves it at the same path.
    assert settings_ui.PAGE_URL == policy.functions_map(cfg)["settings_ui"]["path"] + "/index.html" == SETTINGS_PAGE
    for name in settings_ui.ASSETS:
        assert (settings_ui.WEB_DIR / name).is_file(), name
        assert settings_ui.WEB_DIR.relative_to(REPO).parts[0] == "functions"
