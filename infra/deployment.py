"""What Terraform deploys, read from terraform/*.tf for the local front doors (infra/cloud_run_iam.py,
infra/api_gateway.py) and the local callers (scheduler, Eventarc trigger).

Everything here is evaluated from the configuration (infra/terraform_eval.py), never copied: each service's run.app
URL (the audience Cloud Run IAM accepts), its run.invoker members, the OpenAPI document the gateway is configured
with and the account it calls backends as, the scheduler's OIDC audience and account, the Eventarc trigger's
account, and the env vars the functions are given. Point `terraform_dir` at a copy to see what a change would do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.terraform_eval import TERRAFORM_DIR, TerraformModule

LOCAL_PROJECT_NUMBER = "100000000001"
RUN_INVOKER = "roles/run.invoker"
IAM_MEMBER_TYPES = ("google_cloud_run_v2_service_iam_member", "google_cloud_run_service_iam_member")


@dataclass(frozen=True)
class Service:
    """One function's Cloud Run service as deployed."""

    key: str  # entry point in main.py / key of local.functions
    name: str  # Cloud Run service name
    url: str  # deterministic run.app URL: the audience Cloud Run IAM accepts
    access: str  # public | gateway | private | event
    invokers: frozenset[str] = frozenset()  # IAM members holding roles/run.invoker on the service

    @property
    def public(self) -> bool:
        return "allUsers" in self.invokers


@dataclass(frozen=True)
class Deployment:
    project_id: str
    project_number: str
    services: dict[str, Service]
    openapi: dict[str, Any]
    gateway_account: str
    scheduler_audience: str
    scheduler_account: str
    trigger_account: str
    env: dict[str, str] = field(default_factory=dict)

    def service_by_url(self, url: str) -> Service | None:
        return next((s for s in self.services.values() if s.url == url.rstrip("/")), None)


def read_deployment(
    *,
    project_id: str,
    project_number: str = LOCAL_PROJECT_NUMBER,
    gateway_host: str = "gateway.local",
    terraform_dir: Path = TERRAFORM_DIR,
    variables: dict[str, Any] | None = None,
) -> Deployment:
    """Evaluate the deployment for one project (`variables` overrides Terraform variables)."""
    module = TerraformModule(
        terraform_dir,
        variables={"project_id": project_id, "oauth_client_id": "local-client", **(variables or {})},
        known={
            "data.google_project.this": {"number": project_number},
            "google_api_gateway_gateway.api": {"default_hostname": gateway_host},
        },
    )
    functions = module.local("functions")
    urls = module.local("function_urls")
    names = module.local("function_names")
    invokers: dict[str, set[str]] = {key: set() for key in functions}
    by_service = {name: key for key, name in names.items()}
    for (rtype, rname), body in module.resources.items():
        if rtype not in IAM_MEMBER_TYPES:
            continue
        for _, scope in module.instances(rtype, rname).items():
            if module.attribute(body, "role", scope) != RUN_INVOKER:
                continue
            service = str(module.attribute(body, "name", scope))
            key = by_service.get(service)
            if key is not None:
                invokers[key].add(str(module.attribute(body, "member", scope)))
    services = {
        key: Service(key=key, name=names[key], url=urls[key], access=f["access"], invokers=frozenset(invokers[key]))
        for key, f in functions.items()
    }
    job = module.resource_body("google_cloud_scheduler_job", "renew")
    api_config = module.resource_body("google_api_gateway_api_config", "api")
    function = module.resource_body("google_cloudfunctions2_function", "fn")
    event_key = next(k for k, f in functions.items() if f["access"] == "event")
    trigger_scope = module.instances("google_cloudfunctions2_function", "fn")[event_key]
    return Deployment(
        project_id=project_id,
        project_number=project_number,
        services=services,
        openapi=module.local("openapi"),
        gateway_account=str(module.attribute(api_config, "gateway_config.backend_config.google_service_account")),
        scheduler_audience=str(module.attribute(job, "http_target.oidc_token.audience")),
        scheduler_account=str(module.attribute(job, "http_target.oidc_token.service_account_email")),
        trigger_account=_trigger_account(module, function, trigger_scope),
        env={k: str(v) for k, v in module.local("base_env").items()},
    )


def _trigger_account(module: TerraformModule, function: Any, scope: Any) -> str:
    """The Eventarc trigger's service_account_email (inside `dynamic "event_trigger" { content { ... } }`)."""
    from infra.terraform_eval import _token_text, _trees

    for item in _trees(function):
        if item.data != "block" or _token_text(_trees(item)[0]) != "dynamic":
            continue
        body = next(p for p in _trees(item) if p.data == "body")
        for content in module._blocks(body, "content"):
            if module.has_attribute(content, "service_account_email"):
                return str(module.attribute(content, "service_account_email", scope))
    raise ValueError("terraform declares no event_trigger service account")
