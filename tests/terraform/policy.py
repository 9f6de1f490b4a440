"""Policy checkers over the parsed Terraform configuration: each returns a list of violations (empty = compliant).

The facts they compare against come from the code at test time (main.py's decorated functions, shared/config.py
ENV_VARS / SECRET_ENV_VARS and Settings defaults, shared/indexes.py, shared/scheduler_job.json), never from copies.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.terraform.tfconfig import Config, all_keys, all_values, blocks, dynamic_content, refers

REPO = Path(__file__).resolve().parents[2]
FN = "google_cloudfunctions2_function"
RUN_IAM = ("google_cloud_run_v2_service_iam_member", "google_cloud_run_service_iam_member")
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
DEFAULT_ACCOUNTS = ("-compute@developer.gserviceaccount.com", "@appspot.gserviceaccount.com")
SCHEDULER_JOB_FILE = r'jsondecode\(file\("\$\{path\.module\}/\.\./shared/scheduler_job\.json"\)\)'
COMMON_ENV = r"^\$\{merge\(local\.tuning_defaults,\s*var\.tuning,\s*local\.base_env\)\}$"
ARCHIVE_ROOTS = frozenset({"main.py", "requirements.txt", "functions", "shared"})
REQUIRED_APIS = frozenset({
    "cloudfunctions.googleapis.com", "run.googleapis.com", "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com", "eventarc.googleapis.com", "firestore.googleapis.com",
    "secretmanager.googleapis.com", "cloudscheduler.googleapis.com", "calendar-json.googleapis.com",
    "iam.googleapis.com", "pubsub.googleapis.com",
})
GATEWAY_APIS = frozenset({"apigateway.googleapis.com", "servicemanagement.googleapis.com",
                          "servicecontrol.googleapis.com"})


# --- facts from the code ------------------------------------------------------------------------------------------
def main_entry_points(source: str | None = None) -> dict[str, str]:
    """Functions decorated with functions_framework.http / .cloud_event in main.py -> 'http' | 'cloud_event'."""
    tree = ast.parse(source if source is not None else (REPO / "main.py").read_text(encoding="utf-8"))
    found: dict[str, str] = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for deco in node.decorator_list:
            target = deco.func if isinstance(deco, ast.Call) else deco
            name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
            if name in ("http", "cloud_event"):
                found[node.name] = name
    return found


# --- helpers ------------------------------------------------------------------------------------------------------
def functions_map(cfg: Config) -> dict[str, dict[str, Any]]:
    value = cfg.locals.get("functions")
    return value if isinstance(value, dict) else {}


def _function_key_of(name_expr: Any) -> str | None:
    """Which function a Cloud Run IAM `name` points at: google_cloudfunctions2_function.fn["key"]...."""
    match = re.search(r'google_cloudfunctions2_function\.fn\["([a-z_0-9]+)"\]', name_expr or "")
    return match.group(1) if match else None


def _members(body: Mapping[str, Any]) -> list[str]:
    members = body.get("members", [])
    members = [members] if isinstance(members, str) else list(members or [])
    if "member" in body:
        members.append(body["member"])
    return [m for m in members if isinstance(m, str)]


# --- checkers -----------------------------------------------------------------------------------------------------
def check_entry_points(cfg: Config, entry_points: Mapping[str, str]) -> list[str]:
    errors = []
    fns = functions_map(cfg)
    if not fns:
        return ["local.functions is missing or not a literal map"]
    declared = {k: f.get("entry_point") for k, f in fns.items()}
    for key, entry in declared.items():
        if entry not in entry_points:
            errors.append(f"function {key}: entry_point {entry!r} is not a decorated function in main.py")
        elif (entry_points[entry] == "cloud_event") != (fns[key].get("access") == "event"):
            errors.append(f"function {key}: {entry_points[entry]} entry point but access {fns[key].get('access')!r}")
    for entry in set(entry_points) - set(declared.values()):
        errors.append(f"main.py entry point {entry!r} has no function in terraform")
    resource = cfg.resources.get((FN, "fn"))
    if resource is None:
        return [*errors, f"{FN}.fn is missing"]
    if not refers(resource.get("for_each"), r"^\$\{local\.functions\}$"):
        errors.append(f"{FN}.fn must iterate local.functions")
    for build in blocks(resource, "build_config") or [{}]:
        if not refers(build.get("entry_point"), r"each\.value\.entry_point"):
            errors.append("build_config.entry_point must be each.value.entry_point")
        if build.get("runtime") != "python312":
            errors.append(f"runtime must be python312, not {build.get('runtime')!r}")
    for (rtype, name), _ in cfg.resources.items():
        if rtype in (FN, "google_cloudfunctions_function") and (rtype, name) != (FN, "fn"):
            errors.append(f"{rtype}.{name}: every function is declared through {FN}.fn")
    return errors


def check_public_bindings(cfg: Config) -> list[str]:
    """Exactly one allUsers / allAuthenticatedUsers binding anywhere, a run.invoker on the webhook's service."""
    errors = []
    public = []
    for (rtype, name), body in cfg.resources.items():
        for path, value in all_values(body):
            if isinstance(value, str) and any(m in value for m in PUBLIC_MEMBERS):
                public.append((rtype, name, path, body))
    if len(public) != 1:
        errors.append(f"expected exactly one public binding, found {[(t, n, p) for t, n, p, _ in public]}")
    for rtype, name, _, body in public:
        if rtype not in RUN_IAM or body.get("role") != "roles/run.invoker" or "for_each" in body:
            errors.append(f"{rtype}.{name}: the public binding must be one run.invoker member on a Cloud Run service")
        if _function_key_of(body.get("name") or body.get("service")) != "webhook":
            errors.append(f"{rtype}.{name}: the public binding must be on the webhook's service")
    fns = functions_map(cfg)
    public_fns = sorted(k for k, f in fns.items() if f.get("access") == "public")
    if public_fns != ["webhook"]:
        errors.append(f"only the webhook may have access = public, found {public_fns}")
    return errors


def check_service_accounts(cfg: Config) -> list[str]:
    errors = []
    fn = cfg.resources.get((FN, "fn"), {})
    sa = cfg.resources.get(("google_service_account", "function"))
    if sa is None:
        errors.append("google_service_account.function (one runtime account per function) is missing")
        sa = {}
    if not refers(sa.get("for_each"), r"^\$\{local\.functions\}$"):
        errors.append("google_service_account.function must iterate local.functions (one per function)")
    if not refers(sa.get("account_id"), r"each\.key"):
        errors.append("google_service_account.function account_id must be derived from each.key")
    for service in blocks(fn, "service_config") or [{}]:
        if not refers(service.get("service_account_email"), r"google_service_account\.function\[each\.key\]\.email"):
            errors.append("service_config.service_account_email must be the function's own account")
    for build in blocks(fn, "build_config") or [{}]:
        if not refers(build.get("service_account"), r"google_service_account\.[a-z_]+\.(id|name|email)"):
            errors.append("build_config.service_account must be a dedicated account, not the default compute one")
    for path, value in all_values({**{f"{t}.{n}": b for (t, n), b in cfg.resources.items()}, **cfg.locals}):
        if isinstance(value, str) and any(d in value for d in DEFAULT_ACCOUNTS):
            errors.append(f"{path}: refers to a default service account")
    return errors


def check_runtime_roles(cfg: Config) -> list[str]:
    """Runtime accounts: datastore.user + logging.logWriter on the project, secretAccessor only per secret."""
    errors = []
    allowed_project_roles = {"roles/datastore.user", "roles/logging.logWriter"}
    forbidden = {"roles/owner", "roles/editor", "roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator"}
    for (rtype, name), body in cfg.resources.items():
        role = body.get("role")
        if role in forbidden:
            errors.append(f"{rtype}.{name}: grants {role}")
        if rtype.startswith("google_project_iam"):
            if role == "roles/secretmanager.secretAccessor":
                errors.append(f"{rtype}.{name}: secretAccessor must be granted per secret, not on the project")
            if any(refers(m, r"google_service_account\.function\b") for m in _members(body)) \
                    and role not in allowed_project_roles:
                errors.append(f"{rtype}.{name}: runtime accounts get only {sorted(allowed_project_roles)} "
                              "on the project")
    for name, body in cfg.resources_of("google_secret_manager_secret_iam_member").items():
        if body.get("role") != "roles/secretmanager.secretAccessor":
            errors.append(f"secret binding {name}: role {body.get('role')!r}")
        if not refers(body.get("for_each"), r"^\$\{local\.secret_access\}$"):
            errors.append(f"secret binding {name}: must iterate local.secret_access (the secrets each function lists)")
        if not refers(body.get("member"), r"google_service_account\.function\[each\.value\.function\]"):
            errors.append(f"secret binding {name}: member must be the reading function's own account")
        if not refers(body.get("secret_id"), r"google_secret_manager_secret\.secret\[each\.value\.secret\]"):
            errors.append(f"secret binding {name}: must target the one secret the function reads")
    if not cfg.resources_of("google_secret_manager_secret_iam_member"):
        errors.append("no per-secret secretAccessor bindings")
    if not refers(cfg.locals.get("secret_access"), r"f\.secrets"):
        errors.append("local.secret_access must be built from each function's `secrets` list")
    return errors


def check_invokers(cfg: Config) -> list[str]:
    """Who may invoke which Cloud Run service: gateway -> user-facing, scheduler -> renew, trigger -> push_event."""
    errors = []
    fns = functions_map(cfg)
    invoked: dict[str, set[str]] = {k: set() for k in fns}
    for (rtype, name), body in cfg.resources.items():
        if rtype not in RUN_IAM:
            continue
        target = _function_key_of(body.get("name") or body.get("service"))
        member = body.get("member", "")
        if target is None and refers(body.get("name"), r"fn\[each\.key\]"):
            filt = re.search(r'f\.access\s*==\s*"([a-z]+)"', body.get("for_each") or "")
            targets = [k for k, f in fns.items() if filt and f.get("access") == filt.group(1)]
            if not targets:
                errors.append(f"{rtype}.{name}: for_each must filter local.functions by access")
        else:
            targets = [target] if target else []
        if not targets:
            errors.append(f"{rtype}.{name}: cannot tell which function it binds")
        for key in targets:
            invoked.setdefault(key, set()).add(member)
    expected = {
        "public": "allUsers",
        "gateway": "${google_service_account.gateway.email}",
        "private": "${google_service_account.scheduler.email}",
        "event": "${google_service_account.trigger.email}",
    }
    for key, f in fns.items():
        want = expected.get(f.get("access"))
        members = invoked.get(key, set())
        if want is None:
            errors.append(f"function {key}: unknown access {f.get('access')!r}")
            continue
        if [m.replace("serviceAccount:", "") for m in members] != [want]:
            errors.append(f"function {key} ({f.get('access')}): invokers {sorted(members)}, expected only {want}")
    if fns.get("renew", {}).get("access") != "private":
        errors.append("renew must be private")
    return errors


def check_scheduler(cfg: Config, job: Mapping[str, Any]) -> list[str]:
    errors = []
    jobs = cfg.resources_of("google_cloud_scheduler_job")
    if len(jobs) != 1:
        return [f"expected one scheduler job, found {sorted(jobs)}"]
    (body,) = jobs.values()
    if not refers(cfg.locals.get("scheduler_job"), SCHEDULER_JOB_FILE):
        errors.append("local.scheduler_job must be jsondecode(file(\"${path.module}/../shared/scheduler_job.json\"))")
    for attr, key in (("name", "name"), ("schedule", "schedule"), ("time_zone", "time_zone"),
                      ("attempt_deadline", "attempt_deadline_seconds")):
        if key not in job:
            errors.append(f"scheduler_job.json lacks {key}")
        if not refers(body.get(attr), rf"local\.scheduler_job\.{key}\b"):
            errors.append(f"scheduler job {attr} must come from local.scheduler_job.{key}")
    retry = blocks(body, "retry_config")
    if not retry:
        errors.append("scheduler job has no retry_config")
    for r in retry:
        for attr, key in (("retry_count", "retry_count"), ("min_backoff_duration", "min_backoff_seconds"),
                          ("max_backoff_duration", "max_backoff_seconds"), ("max_doublings", "max_doublings")):
            if key not in job.get("retry", {}):
                errors.append(f"scheduler_job.json retry lacks {key}")
            if not refers(r.get(attr), rf"local\.scheduler_job\.retry\.{key}\b"):
                errors.append(f"retry_config.{attr} must come from local.scheduler_job.retry.{key}")
    targets = blocks(body, "http_target")
    if len(targets) != 1:
        return [*errors, "scheduler job needs exactly one http_target"]
    target = targets[0]
    if not refers(target.get("uri"), r"local\.renew_url"):
        errors.append("http_target.uri must be the renew function's URL")
    oidc = blocks(target, "oidc_token")
    if len(oidc) != 1 or blocks(target, "oauth_token"):
        return [*errors, "http_target must authenticate with exactly one oidc_token"]
    if not oidc[0].get("audience"):
        errors.append("oidc_token has no audience")
    elif oidc[0]["audience"] != target.get("uri"):
        errors.append("oidc_token.audience must equal the target URI")
    if not refers(oidc[0].get("service_account_email"), r"google_service_account\.scheduler\.email"):
        errors.append("oidc_token must use the dedicated scheduler account")
    if not refers(cfg.locals.get("renew_url"), r'local\.function_urls\["renew"\]'):
        errors.append("local.renew_url must be the renew function's URL")
    if not refers(cfg.locals.get("base_env", {}).get("SCHEDULER_OIDC_AUDIENCE"), r"local\.renew_url"):
        errors.append("SCHEDULER_OIDC_AUDIENCE must be the audience the scheduler uses")
    return errors


def archive_patterns(cfg: Config) -> list[str]:
    patterns: list[str] = []
    for raw in re.findall(r'fileset\(\s*local\.repo_root\s*,\s*"([^"]+)"\s*\)', cfg.locals.get("source_files") or ""):
        brace = re.fullmatch(r"\{(.*)\}", raw)
        patterns.extend(brace.group(1).split(",") if brace else [raw])
    return patterns


def check_source_archive(cfg: Config) -> list[str]:
    errors = []
    archive = cfg.data.get(("archive_file", "source"))
    obj = cfg.resources.get(("google_storage_bucket_object", "source"))
    if archive is None or obj is None:
        return ["data.archive_file.source and google_storage_bucket_object.source are required"]
    if not refers(obj.get("name"), r"data\.archive_file\.source\.output_(md5|sha1|sha256|sha512|base64sha256)"):
        errors.append(f"source object name {obj.get('name')!r} must contain the archive's hash")
    if not refers(obj.get("source"), r"data\.archive_file\.source\.output_path"):
        errors.append("source object must upload the archive")
    if "source_dir" in archive:
        errors.append("archive_file must be built from the allow-list (source blocks), not a whole source_dir")
    contents = dynamic_content(archive, "source")
    if not contents or not refers(contents[0].get("for_each"), r"local\.source_files"):
        errors.append("archive_file sources must iterate local.source_files")
    patterns = archive_patterns(cfg)
    roots = {p.split("/")[0] for p in patterns}
    if roots != ARCHIVE_ROOTS:
        errors.append(f"archive allow-list roots {sorted(roots)} != {sorted(ARCHIVE_ROOTS)}")
    fn = cfg.resources.get((FN, "fn"), {})
    for build in blocks(fn, "build_config"):
        for src in blocks(build, "source"):
            for storage in blocks(src, "storage_source"):
                if not refers(storage.get("object"), r"google_storage_bucket_object\.source\.name"):
                    errors.append("functions must be built from the hash-named source object")
    return errors


def check_no_secret_values(cfg: Config) -> list[str]:
    errors = []
    for (rtype, name), body in cfg.resources.items():
        if rtype == "google_secret_manager_secret_version":
            errors.append(f"{rtype}.{name}: Terraform must not hold secret values")
        if "secret_data" in all_keys(body) or "secret_data_wo" in all_keys(body):
            errors.append(f"{rtype}.{name}: has secret_data")
    for fname, text in cfg.texts.items():
        if re.search(r"\bsecret_data\b\s*=", text):
            errors.append(f"{fname}: assigns secret_data")
    return errors


def check_env_vars(cfg: Config, env_vars: Iterable[str], secret_vars: Iterable[str],
                   defaults: Mapping[str, Any]) -> list[str]:
    """Every env var the code reads is provided (secrets as secret env vars); local-only ones never are."""
    errors = []
    env_vars, secret_vars = set(env_vars), set(secret_vars)
    # GOOGLE_API_ENDPOINT points the Google client at the local stand-in: never deployed, listed or not.
    local_only = set(cfg.locals.get("local_only_env_vars") or []) | {"GOOGLE_API_ENDPOINT"}
    if not local_only <= env_vars:
        errors.append(f"local_only_env_vars {sorted(local_only - env_vars)} are not ENV_VARS")
    tuning = cfg.locals.get("tuning_defaults") or {}
    base = cfg.locals.get("base_env") or {}
    if not refers(cfg.locals.get("common_env"), COMMON_ENV):
        errors.append("local.common_env must be merge(local.tuning_defaults, var.tuning, local.base_env)")
    plain = set(tuning) | set(base)
    for name in sorted(env_vars - secret_vars - local_only - plain):
        errors.append(f"env var {name} (shared/config.py ENV_VARS) is not provided")
    for name in sorted(plain - env_vars):
        errors.append(f"env var {name} is provided but the code does not read it")
    for name in sorted(plain & (secret_vars | local_only)):
        errors.append(f"env var {name} must not be a plain env var (secret or local-only)")
    for name, value in tuning.items():
        if name in defaults and not _same(value, defaults[name]):
            errors.append(f"tuning default {name}={value!r} differs from the code's default {defaults[name]!r}")
    secrets = cfg.locals.get("secrets") or {}
    if set(secrets) != secret_vars:
        errors.append(f"local.secrets {sorted(secrets)} != SECRET_ENV_VARS {sorted(secret_vars)}")
    fns = functions_map(cfg)
    read = set()
    for key, f in fns.items():
        listed = set(f.get("secrets") or [])
        read |= listed
        if not listed <= secret_vars:
            errors.append(f"function {key} lists unknown secrets {sorted(listed - secret_vars)}")
    if read != secret_vars:
        errors.append(f"secrets no function reads: {sorted(secret_vars - read)}")
    fn = cfg.resources.get((FN, "fn"), {})
    for service in blocks(fn, "service_config") or [{}]:
        if not refers(service.get("environment_variables"), r"^\$\{local\.common_env\}$"):
            errors.append("service_config.environment_variables must be local.common_env")
        wired = dynamic_content(service, "secret_environment_variables")
        if len(wired) != 1 or not refers(wired[0].get("for_each"), r"each\.value\.secrets") \
                or not refers(wired[0].get("key"), r"secret_environment_variables\.value") \
                or not refers(wired[0].get("secret"), r"google_secret_manager_secret\.secret\["):
            errors.append("secret_environment_variables must wire each of the function's secrets by env var name")
        if blocks(service, "secret_environment_variables") or blocks(service, "secret_volumes"):
            errors.append("secrets are wired only through the dynamic secret_environment_variables block")
    return errors


def _same(tf_value: Any, code_value: Any) -> bool:
    if isinstance(code_value, bool) or not isinstance(code_value, int | float):
        return str(tf_value) == str(code_value)
    try:
        return float(tf_value) == float(code_value)
    except (TypeError, ValueError):
        return False


IndexSpec = tuple[str, str, tuple[tuple[str, str], ...]]  # (query scope, collection, ((field, order), ...))


def declared_indexes(cfg: Config) -> set[IndexSpec]:
    out = set()
    for entry in (cfg.locals.get("composite_indexes") or {}).values():
        fields = tuple((f["field_path"], f["order"]) for f in entry.get("fields", []))
        out.add((entry.get("query_scope", "COLLECTION"), entry.get("collection"), fields))
    return out


def code_indexes(collection_indexes: Iterable, group_indexes: Iterable = ()) -> set[IndexSpec]:
    """shared/indexes.py COMPOSITE_INDEXES (scope COLLECTION) and COLLECTION_GROUP_INDEXES (COLLECTION_GROUP)."""
    out = set()
    for scope, entries in (("COLLECTION", collection_indexes), ("COLLECTION_GROUP", group_indexes)):
        out |= {(scope, c, tuple(tuple(f) for f in fields)) for c, fields in entries}
    return out


def check_indexes(cfg: Config, code: set[IndexSpec]) -> list[str]:
    errors = []
    declared = declared_indexes(cfg)
    errors += [f"composite index {i} used by the code is not declared in terraform" for i in sorted(code - declared)]
    errors += [f"terraform index {i} is not used by the code (shared/indexes.py)" for i in sorted(declared - code)]
    resource = cfg.resources.get(("google_firestore_index", "composite"))
    if resource is None:
        return [*errors, "google_firestore_index.composite is missing"]
    others = set(cfg.resources_of("google_firestore_index")) - {"composite"}
    errors += [f"google_firestore_index.{o} bypasses local.composite_indexes" for o in sorted(others)]
    if not refers(resource.get("for_each"), r"^\$\{local\.composite_indexes\}$"):
        errors.append("google_firestore_index.composite must iterate local.composite_indexes")
    fields = dynamic_content(resource, "fields")
    if len(fields) != 1 or not refers(fields[0].get("for_each"), r"each\.value\.fields"):
        errors.append("index fields must come from each.value.fields")
    if not refers(resource.get("query_scope"), r"each\.value\.query_scope"):
        errors.append("index query_scope must be each.value.query_scope")
    return errors


def check_ttl(cfg: Config, code_ttl: Iterable[tuple[str, str]], written_fields: set[str]) -> list[str]:
    errors = []
    code = {tuple(t) for t in code_ttl}
    declared = {(v.get("collection"), v.get("field")) for v in (cfg.locals.get("ttl_fields") or {}).values()}
    errors += [f"TTL field {t} of the code is not declared in terraform" for t in sorted(code - declared)]
    errors += [f"terraform TTL field {t} is not in shared/indexes.py TTL_FIELDS" for t in sorted(declared - code)]
    errors += [f"TTL field {f} is never written by the code" for _, f in sorted(declared) if f not in written_fields]
    resource = cfg.resources.get(("google_firestore_field", "ttl"))
    if resource is None:
        return [*errors, "google_firestore_field.ttl is missing"]
    if not refers(resource.get("for_each"), r"^\$\{local\.ttl_fields\}$"):
        errors.append("google_firestore_field.ttl must iterate local.ttl_fields")
    if "ttl_config" not in resource:
        errors.append("google_firestore_field.ttl has no ttl_config")
    return errors


def check_firestore_and_trigger(cfg: Config) -> list[str]:
    errors = []
    dbs = cfg.resources_of("google_firestore_database")
    if len(dbs) != 1 or next(iter(dbs.values())).get("type") != "FIRESTORE_NATIVE":
        errors.append("exactly one google_firestore_database of type FIRESTORE_NATIVE is required")
    fns = functions_map(cfg)
    events = [k for k, f in fns.items() if f.get("access") == "event"]
    fn = cfg.resources.get((FN, "fn"), {})
    triggers = dynamic_content(fn, "event_trigger")
    if not events:
        return [*errors, "no event-triggered function"]
    if len(triggers) != 1 or not refers(triggers[0].get("for_each"), r'each\.value\.access\s*==\s*"event"'):
        return [*errors, "event_trigger must be a dynamic block present only for access == event"]
    trig = triggers[0]
    if trig.get("event_type") != "google.cloud.firestore.document.v1.written":
        errors.append(f"event_type {trig.get('event_type')!r}")
    if trig.get("retry_policy") != "RETRY_POLICY_RETRY":
        errors.append("retry_policy must be RETRY_POLICY_RETRY")
    if not refers(trig.get("service_account_email"), r"google_service_account\.trigger\.email"):
        errors.append("the trigger must run as its dedicated account")
    filters = {f.get("attribute"): f for f in blocks(trig, "event_filters")}
    database = filters.get("database", {}).get("value")
    if not (database == "(default)" or refers(database, r"google_firestore_database\.main\.name")):
        errors.append("event filter database must be the (default) database")
    doc = filters.get("document", {})
    if doc.get("value") != "events/{eventId}" or doc.get("operator") != "match-path-pattern":
        errors.append("event filter document must be events/{eventId} with operator match-path-pattern")
    receiver = [b for b in cfg.resources.values() if b.get("role") == "roles/eventarc.eventReceiver"
                and refers(b.get("member"), r"google_service_account\.trigger\.email")]
    if not receiver:
        errors.append("the trigger account needs roles/eventarc.eventReceiver")
    return errors


def check_apis(cfg: Config) -> list[str]:
    enabled = set(cfg.locals.get("services") or [])
    gateway = any(t.startswith("google_api_gateway") for t, _ in cfg.resources)
    needed = REQUIRED_APIS | (GATEWAY_APIS if gateway else set())
    errors = [f"API {api} is not enabled" for api in sorted(needed - enabled)]
    apis = cfg.resources.get(("google_project_service", "apis"), {})
    if not refers(apis.get("for_each"), r"^\$\{toset\(local\.services\)\}$"):
        errors.append("google_project_service.apis must iterate local.services")
    return errors


def check_outputs(cfg: Config) -> list[str]:
    errors = [f"output {o} is missing" for o in ("webhook_url", "function_urls", "scheduler_job_name")
              if o not in cfg.outputs]
    if not refers(cfg.outputs.get("webhook_url", {}).get("value"), r"local\.webhook_url"):
        errors.append("output webhook_url must be local.webhook_url")
    if not refers(cfg.locals.get("webhook_url"), r'local\.function_urls\["webhook"\]'):
        errors.append("local.webhook_url must default to the webhook function's URL")
    if not refers(cfg.locals.get("base_env", {}).get("WEBHOOK_URL"), r"^\$\{local\.webhook_url\}$"):
        errors.append("WEBHOOK_URL must be local.webhook_url")
    return errors


def check_gateway(cfg: Config) -> list[str]:
    """User-facing functions are routed by the gateway; only the OAuth callback and the settings component's static
    files (GET only) carry no ID token."""
    errors = []
    fns = functions_map(cfg)
    gateway = {k: f for k, f in fns.items() if f.get("access") == "gateway"}
    paths = [f.get("path") for f in gateway.values()]
    if any(not isinstance(p, str) or not p.startswith("/") for p in paths) or len(set(paths)) != len(paths):
        errors.append(f"every user-facing function needs its own gateway path, got {paths}")
    if cfg.locals.get("unauthenticated_routes") != ["oauth_callback", "settings_ui"]:
        errors.append("only oauth_callback and the static settings_ui may be routed without an ID token")
    if cfg.locals.get("static_routes") != ["settings_ui"]:
        errors.append("settings_ui must be routed as a static, GET-only route (static_routes)")
    callback = fns.get("oauth_callback", {}).get("path")
    redirect = cfg.locals.get("base_env", {}).get("OAUTH_REDIRECT_URI", "")
    if not callback or not redirect.endswith(callback):
        errors.append(f"OAUTH_REDIRECT_URI {redirect!r} must end with the oauth_callback route {callback!r}")
    config = cfg.resources.get(("google_api_gateway_api_config", "api"), {})
    backend = [b for g in blocks(config, "gateway_config") for b in blocks(g, "backend_config")]
    if not backend or not refers(backend[0].get("google_service_account"), r"google_service_account\.gateway\.email"):
        errors.append("the API config must call backends as the gateway's account")
    security = cfg.locals.get("openapi", {}).get("securityDefinitions", {})
    if not refers(security.get("firebase", {}).get("x-google-issuer"), r"securetoken\.google\.com"):
        errors.append("the gateway must validate Firebase / Identity Platform ID tokens")
    return errors


def check_sizing(cfg: Config, job: Mapping[str, Any], renewal_deadline: float) -> list[str]:
    errors = []
    fns = functions_map(cfg)
    for key, f in fns.items():
        for attr in ("memory", "timeout", "min_instances", "max_instances"):
            if attr not in f:
                errors.append(f"function {key} has no default {attr}")
    renew = fns.get("renew", {})
    timeout = renew.get("timeout", 0)
    if not renewal_deadline < timeout <= job.get("attempt_deadline_seconds", 0):
        errors.append(f"need RENEWAL_DEADLINE_SECONDS ({renewal_deadline}) < renew timeout ({timeout}) "
                      f"<= scheduler attempt deadline ({job.get('attempt_deadline_seconds')})")
    return errors


def checkov_skips(cfg: Config) -> list[tuple[str, str, str]]:
    """(file, check id, reason) of every inline checkov skip."""
    found = []
    for fname, text in cfg.texts.items():
        for match in re.finditer(r"checkov:skip=([A-Z0-9_]+)(?::([^\n]*))?", text):
            found.append((fname, match.group(1), (match.group(2) or "").strip()))
    return found


# --- a fresh project (issue: what breaks the first apply) -----------------------------------------------------------
BUILD_ROLES = frozenset({"roles/logging.logWriter", "roles/artifactregistry.writer", "roles/storage.objectAdmin"})
EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def _depends_on(body: Mapping[str, Any]) -> list[str]:
    return [str(d).strip("${}") for d in body.get("depends_on") or []]


def _build_grants(cfg: Config) -> dict[str, tuple[str, str]]:
    """Grants to the build account: {role: (resource type, name)}."""
    found = {}
    for (rtype, name), body in cfg.resources.items():
        if refers(body.get("member"), r"google_service_account\.build\.email") and body.get("role"):
            found[body["role"]] = (rtype, name)
    return found


def check_fresh_project(cfg: Config) -> list[str]:
    """What a first apply on a new project needs: the Resource Manager API, the Eventarc service agent created and
    settled before the trigger, the build account's documented roles settled before the build."""
    errors = []
    if "cloudresourcemanager.googleapis.com" not in set(cfg.locals.get("services") or []):
        errors.append("cloudresourcemanager.googleapis.com must be enabled (project IAM resources call it)")
    identities = [(n, b) for n, b in cfg.resources_of("google_project_service_identity").items()
                  if b.get("service") == "eventarc.googleapis.com"]
    if len(identities) != 1:
        errors.append("the Eventarc service identity must be created explicitly (google_project_service_identity)")
        identity = None
    else:
        identity = identities[0][0]
    sleeps = cfg.resources_of("time_sleep")
    fn_deps = _depends_on(cfg.resources.get((FN, "fn"), {}))
    agent_sleep = None
    for name, body in sleeps.items():
        for dep in _depends_on(body):
            target = cfg.resources.get(tuple(dep.split(".")[:2]), {})  # type: ignore[arg-type]
            if identity and refers(target.get("member"), rf"google_project_service_identity\.{identity}\.email"):
                agent_sleep = name
    if identity and agent_sleep is None:
        errors.append("a time_sleep must wait for the Eventarc service agent's role grant")
    if agent_sleep and f"time_sleep.{agent_sleep}" not in fn_deps:
        errors.append("the functions (and their Firestore trigger) must depend on the Eventarc agent wait")
    grants = _build_grants(cfg)
    for role in sorted(BUILD_ROLES - set(grants)):
        errors.append(f"the build account lacks {role} (Cloud Run functions build account page)")
    build_sleep = [n for n, b in sleeps.items()
                   if {f"{t}.{n2}" for t, n2 in grants.values()} & set(_depends_on(b))]
    if not build_sleep:
        errors.append("a time_sleep must wait for the build account's grants")
    elif not any(f"time_sleep.{n}" in fn_deps for n in build_sleep):
        errors.append("the functions must depend on the build account's IAM wait")
    return errors


def check_run_app_audiences(cfg: Config, code_env_vars: Iterable[str]) -> list[str]:
    """Backends and audiences are the deterministic run.app URLs; the code is given the same values to check."""
    errors = []
    urls = cfg.locals.get("function_urls")
    if not refers(urls, r"\.run\.app") or not refers(urls, r"data\.google_project\.\w+\.number"):
        errors.append("local.function_urls must be https://SERVICE-PROJECT_NUMBER.REGION.run.app")
    for path, value in all_values({"locals": cfg.locals, "resources": {f"{t}.{n}": b for (t, n), b in
                                                                       cfg.resources.items()}}):
        if isinstance(value, str) and "cloudfunctions.net" in value:
            errors.append(f"{path} uses a cloudfunctions.net URL")
    if "jwt_audience" not in str(cfg.locals.get("openapi_paths")):
        errors.append("gateway backends must set jwt_audience explicitly")
    base = cfg.locals.get("base_env") or {}
    if not refers(base.get("GATEWAY_JWT_AUDIENCES"), r"local\.gateway_backend_urls"):
        errors.append("GATEWAY_JWT_AUDIENCES must be the gateway backends' jwt_audience (local.gateway_backend_urls)")
    if not refers(cfg.locals.get("gateway_backend_urls"), r'local\.function_urls\[k\].*f\.access\s*==\s*"gateway"'):
        errors.append("local.gateway_backend_urls must list the gateway functions' URLs")
    if not refers(base.get("GATEWAY_INVOKER_EMAIL"), r"google_service_account\.gateway\.email"):
        errors.append("GATEWAY_INVOKER_EMAIL must be the gateway's account")
    for name in ("SCHEDULER_OIDC_AUDIENCE", "GATEWAY_JWT_AUDIENCES", "GATEWAY_INVOKER_EMAIL"):
        if name not in set(code_env_vars):
            errors.append(f"the code does not read {name}")
    return errors


def check_names_prefixed(cfg: Config) -> list[str]:
    """Two deployments in one project must not collide: project-unique names carry var.name_prefix."""
    errors = []
    keys = {"google_cloud_scheduler_job": "name", "google_service_account": "account_id",
            "google_storage_bucket": "name", "google_artifact_registry_repository": "repository_id",
            "google_api_gateway_api": "api_id", "google_api_gateway_gateway": "gateway_id",
            "google_secret_manager_secret": "secret_id"}
    for (rtype, name), body in cfg.resources.items():
        attr = keys.get(rtype)
        if attr is None:
            continue
        value = body.get(attr, "")
        if not (refers(value, r"var\.name_prefix") or refers(value, r"each\.value$|^\$\{each\.value\}$")):
            errors.append(f"{rtype}.{name}.{attr} must carry var.name_prefix")
    return errors


def check_ingress(cfg: Config) -> list[str]:
    """renew and push_event are internal-only (Cloud Scheduler and Eventarc are internal on the run.app URL)."""
    fn = cfg.resources.get((FN, "fn"), {})
    expr = next((s.get("ingress_settings") for s in blocks(fn, "service_config")), "") or ""
    match = re.search(r'contains\(\[([^\]]*)\],\s*each\.value\.access\)\s*\?\s*"ALLOW_INTERNAL_ONLY"\s*:\s*"ALLOW_ALL"',
                      expr)
    internal = set(re.findall(r'"([a-z]+)"', match.group(1))) if match else set()
    if internal != {"private", "event"}:
        return [f"ingress must be internal-only for exactly the private and event functions, got {expr!r}"]
    return []


def check_provider_pins(versions_tf: str) -> list[str]:
    """Every provider is pinned to one exact version."""
    import hcl2

    errors = []
    parsed = hcl2.loads(versions_tf)
    found = 0
    for terraform in parsed.get("terraform", []):
        for required in terraform.get("required_providers", []):
            for provider, spec in (required or {}).items():
                if provider.startswith("__"):
                    continue
                found += 1
                spec = spec[0] if isinstance(spec, list) else spec
                version = str(spec.get("version", "")).strip('"')
                if not EXACT_VERSION.match(version):
                    errors.append(f"provider {provider} must be pinned to an exact version, got {version!r}")
    if not found:
        errors.append("no required_providers")
    return errors


def check_firestore_rules(cfg: Config) -> list[str]:
    """firestore.rules is deployed (ruleset from the file, released as cloud.firestore)."""
    errors = []
    rulesets = cfg.resources_of("google_firebaserules_ruleset")
    releases = cfg.resources_of("google_firebaserules_release")
    if len(rulesets) != 1 or len(releases) != 1:
        return ["exactly one google_firebaserules_ruleset and one google_firebaserules_release are required"]
    (rname, ruleset), (release,) = next(iter(rulesets.items())), releases.values()
    files = [f for s in blocks(ruleset, "source") for f in blocks(s, "files")]
    if len(files) != 1 or not refers(files[0].get("content"), r'file\("\$\{path\.module\}/\.\./firestore\.rules"\)'):
        errors.append("the ruleset must be the repository's firestore.rules")
    if release.get("name") != "cloud.firestore":
        errors.append("the release must be named cloud.firestore")
    if not refers(release.get("ruleset_name"), rf"google_firebaserules_ruleset\.{rname}\.name"):
        errors.append("the release must point at the ruleset")
    if "firebaserules.googleapis.com" not in set(cfg.locals.get("services") or []):
        errors.append("firebaserules.googleapis.com must be enabled")
    return errors


def check_evaluated_audiences(module: Any) -> list[str]:
    """On the evaluated configuration (infra.terraform_eval): every gateway operation's jwt_audience is its backend
    address and one of GATEWAY_JWT_AUDIENCES; the scheduler's audience is SCHEDULER_OIDC_AUDIENCE and its account
    SCHEDULER_INVOKER_EMAIL; the gateway calls as GATEWAY_INVOKER_EMAIL."""
    errors = []
    env = module.local("base_env")
    gateway_audiences = set(str(env.get("GATEWAY_JWT_AUDIENCES", "")).split(","))
    for path, methods in module.local("openapi")["paths"].items():
        for method, op in methods.items():
            backend = op.get("x-google-backend", {})
            if backend.get("jwt_audience") != backend.get("address"):
                errors.append(f"{method.upper()} {path}: jwt_audience {backend.get('jwt_audience')!r} is not the address")
            if backend.get("jwt_audience") not in gateway_audiences:
                errors.append(f"{method.upper()} {path}: jwt_audience is not in GATEWAY_JWT_AUDIENCES")
            if ".run.app" not in str(backend.get("address")):
                errors.append(f"{method.upper()} {path}: backend is not a run.app URL")
    job = module.resource_body("google_cloud_scheduler_job", "renew")
    if module.attribute(job, "http_target.oidc_token.audience") != env.get("SCHEDULER_OIDC_AUDIENCE"):
        errors.append("the scheduler's oidc_token.audience differs from SCHEDULER_OIDC_AUDIENCE")
    if module.attribute(job, "http_target.oidc_token.service_account_email") != env.get("SCHEDULER_INVOKER_EMAIL"):
        errors.append("the scheduler's account differs from SCHEDULER_INVOKER_EMAIL")
    config = module.resource_body("google_api_gateway_api_config", "api")
    if module.attribute(config, "gateway_config.backend_config.google_service_account") != env.get(
        "GATEWAY_INVOKER_EMAIL"
    ):
        errors.append("the gateway's account differs from GATEWAY_INVOKER_EMAIL")
    return errors
