"""Production's front doors, assembled for one local stack: every function behind its Cloud Run IAM stand-in, the
user-facing ones also behind the API Gateway stand-in, and the callers (Cloud Scheduler, Eventarc) holding the
Google-signed tokens of the accounts Terraform grants. Used by `make run` (infra/devstack.py) and the test suites.

Functions are served as `<functions_url>/<entry point>` (each wrapped in CloudRunIam); the gateway maps each backend's
run.app URL to that local path. The webhook stays public (its allUsers binding).

`local_routes` gives the gateway extra, clearly local-only routes by exact path (`make run`'s demo sign-in, which the
standalone settings page calls on its own origin); they are never part of the OpenAPI document, so production's
gateway cannot have them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra.api_gateway import ApiGateway, StandinTokens
from infra.cloud_run_iam import CloudRunIam
from infra.deployment import Deployment

# Where Terraform's security definitions point for Firebase / Identity Platform keys (x509 and JWK forms).
FIREBASE_KEY_URLS = (
    "https://www.googleapis.com/service_accounts/v1/metadata/x509/securetoken@system.gserviceaccount.com",
    "https://www.googleapis.com/robot/v1/metadata/x509/securetoken@system.gserviceaccount.com",
)


@dataclass
class FrontDoors:
    deployment: Deployment
    control: Any  # the Google stand-in's ControlClient: mints Google-signed tokens, serves the certs
    certs_url: str
    functions_url: str = ""
    gateway_url: str = ""
    cors_on_own_errors: bool = False
    local_routes: dict[str, Callable[..., Any]] = field(default_factory=dict)  # local only, see the module docstring
    _servers: list[Any] = field(default_factory=list)

    # -- the doors --------------------------------------------------------------------------------------------------
    def guard(self, apps: dict[str, Any]) -> dict[str, Any]:
        """Each function app wrapped in its service's Cloud Run IAM check."""
        return {
            key: CloudRunIam.for_service(app, self.deployment.services[key], self.certs_url)
            for key, app in apps.items()
        }

    def gateway(self) -> ApiGateway:
        url_map = {s.url: f"{self.functions_url}/{key}" for key, s in self.deployment.services.items()}
        url_map.update(dict.fromkeys(FIREBASE_KEY_URLS, self.certs_url))
        return ApiGateway(
            self.deployment.openapi,
            url_map,
            StandinTokens(self.control, self.deployment.gateway_account),
            cors_on_own_errors=self.cors_on_own_errors,
            local_routes=dict(self.local_routes),
        )

    def route_url(self, key: str) -> str:
        """The gateway URL of a user-facing function (from the OpenAPI document's backend addresses; a fixed path
        before a path template)."""
        url = self.deployment.services[key].url
        paths = sorted(self.deployment.openapi["paths"].items(), key=lambda item: "{" in item[0])
        for path, operations in paths:
            if any((op.get("x-google-backend") or {}).get("address") == url for op in operations.values()):
                return f"{self.gateway_url}{path}"
        raise KeyError(f"{key} has no gateway route")

    def settings_page_url(self) -> str:
        """The settings page on the gateway (settings_ui's page under its route): where OAuth returns locally."""
        from functions.settings_ui import PAGE

        return f"{self.route_url('settings_ui')}/{PAGE}"

    def function_url(self, key: str) -> str:
        return f"{self.functions_url}/{key}"

    # -- the callers ------------------------------------------------------------------------------------------------
    def scheduler_token(self) -> Callable[[], str]:
        """Cloud Scheduler's OIDC token: the job's account and audience, as Terraform configures them."""
        tokens = StandinTokens(self.control, self.deployment.scheduler_account)
        return lambda: tokens(self.deployment.scheduler_audience)

    def trigger_token(self) -> Callable[[], str]:
        """Eventarc's token for push_event: the trigger's account, the service's URL as audience."""
        tokens = StandinTokens(self.control, self.deployment.trigger_account)
        service = next(s for s in self.deployment.services.values() if s.access == "event")
        return lambda: tokens(service.url)

    # -- the functions' configuration -------------------------------------------------------------------------------
    def environment(self, gateway_host: str = "gateway.local") -> dict[str, str]:
        """Env vars Terraform gives the functions that concern the doors, with the gateway's host made local."""
        env = self.deployment.env
        names = (
            "SCHEDULER_OIDC_AUDIENCE",
            "SCHEDULER_INVOKER_EMAIL",
            "GATEWAY_JWT_AUDIENCES",
            "GATEWAY_INVOKER_EMAIL",
            "OAUTH_REDIRECT_URI",
            "ID_TOKEN_ISSUER",
            "ID_TOKEN_AUDIENCE",
        )
        out = {name: env[name] for name in names if name in env}
        if "OAUTH_REDIRECT_URI" in out:
            out["OAUTH_REDIRECT_URI"] = out["OAUTH_REDIRECT_URI"].replace(f"https://{gateway_host}", self.gateway_url)
        if self.gateway_url:
            # Terraform's oauth_return_url is the CRM's settings page; locally the standalone page plays it.
            out["OAUTH_RETURN_URL"] = self.settings_page_url()
        return out

    # -- serving ----------------------------------------------------------------------------------------------------
    def serve_gateway(self, port: int = 0) -> str:
        from werkzeug.serving import make_server

        from infra.access_log import AccessLogRequestHandler

        server = make_server("127.0.0.1", port, self.gateway(), threaded=True, request_handler=AccessLogRequestHandler)
        threading.Thread(target=server.serve_forever, name="api-gateway", daemon=True).start()
        self._servers.append(server)
        self.gateway_url = f"http://127.0.0.1:{server.server_port}"
        return self.gateway_url

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers.clear()
