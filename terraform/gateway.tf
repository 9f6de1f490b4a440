# API Gateway in front of the user-facing functions (see the access notes in locals.tf).
#
# - The gateway validates the caller's Firebase / Identity Platform ID token (securityDefinitions.firebase) before
#   anything reaches a function; the functions verify it again (shared/account/identity.py) and take the user id only from it.
# - It calls each function as google_service_account.gateway, the only run.invoker of those services, with an OIDC
#   token whose audience is the backend's jwt_audience: the function's run.app URL, set explicitly (Cloud Run IAM
#   accepts it; the code checks the same list, GATEWAY_JWT_AUDIENCES). API Gateway moves the caller's own
#   `Authorization` header to `X-Forwarded-Authorization`.
# - /oauth/callback is the one route without a security requirement: Google redirects the browser there with `code`
#   and `state`; the function verifies the signed state.
# - Backends are the deterministic run.app URLs (locals.tf function_urls), so the gateway does not depend on the
#   functions and the functions can be given the gateway's hostname (OAUTH_REDIRECT_URI) without a cycle.
# - CORS: managed API Gateway takes no ESPv2 CORS flags, so preflights are passed through: OPTIONS is routed without a
#   security requirement and the function answers it
#   (https://cloud.google.com/endpoints/docs/openapi/support-cors#handle_cors_in_your_backend_application). The
#   gateway's own 401s carry no CORS headers, so a browser sees them as a failed request (README, Threat notes).
#
# infra/api_gateway.py builds the local gateway by evaluating local.openapi from this file.
locals {
  gateway_functions = { for k, f in local.functions : k => f if f.access == "gateway" }

  # Routes that carry no end-user ID token: the OAuth callback (Google's redirect) and the settings component's static
  # files (no user data; the page gets its token from the CRM's sign-in and sends it on its API calls).
  unauthenticated_routes = ["oauth_callback", "settings_ui"]

  # settings_ui answers GET only, on /settings (the page) and /settings/{asset}; the request path is appended to the
  # backend address so the function sees which file is asked for. No preflight: browsers load these without one.
  static_routes = ["settings_ui"]
  static_paths = {
    for k in local.static_routes : "${local.functions[k].path}/{asset}" => {
      get = {
        operationId = "${k}_asset_get"
        summary     = local.functions[k].description
        parameters  = [{ name = "asset", in = "path", required = true, type = "string" }]
        x-google-backend = {
          address          = local.function_urls[k]
          jwt_audience     = local.function_urls[k]
          path_translation = "APPEND_PATH_TO_ADDRESS"
          deadline         = local.sizing[k].timeout
        }
        produces  = ["text/html", "text/javascript", "text/css"]
        responses = { "200" = { description = "OK" } }
      }
    }
  }

  openapi_paths = merge(local.static_paths, {
    for k, f in local.gateway_functions : f.path => merge(
      {
        for method in(contains(local.static_routes, k) ? ["get"] : ["get", "post"]) : method => merge(
          {
            operationId = "${k}_${method}"
            summary     = f.description
            x-google-backend = {
              address          = local.function_urls[k]
              jwt_audience     = local.function_urls[k]
              path_translation = "CONSTANT_ADDRESS"
              deadline         = local.sizing[k].timeout
            }
            responses = { "200" = { description = "OK" } }
          },
          { for r in setsubtract([k], local.unauthenticated_routes) : "security" => [{ firebase = [] }] },
        )
      },
      {
        for method in(contains(local.static_routes, k) ? [] : ["options"]) : method => {
          operationId = "${k}_cors"
          summary     = "CORS preflight"
          x-google-backend = {
            address          = local.function_urls[k]
            jwt_audience     = local.function_urls[k]
            path_translation = "CONSTANT_ADDRESS"
          }
          responses = { "204" = { description = "No content" } }
        }
      },
    )
  })

  openapi = {
    swagger  = "2.0"
    info     = { title = "${var.name_prefix}-calendar-sync", version = "1.0.0" }
    schemes  = ["https"]
    produces = ["application/json"]
    securityDefinitions = {
      firebase = {
        type               = "oauth2"
        flow               = "implicit"
        authorizationUrl   = ""
        x-google-issuer    = "https://securetoken.google.com/${local.auth_project_id}"
        x-google-jwks_uri  = "https://www.googleapis.com/service_accounts/v1/metadata/x509/securetoken@system.gserviceaccount.com"
        x-google-audiences = local.auth_project_id
      }
    }
    paths = local.openapi_paths
  }
}

resource "google_api_gateway_api" "api" {
  provider = google-beta

  api_id       = "${var.name_prefix}-calendar-sync"
  display_name = "Calendar sync (user-facing)"

  depends_on = [google_project_service.apis]
}

resource "google_api_gateway_api_config" "api" {
  provider = google-beta

  api                  = google_api_gateway_api.api.api_id
  api_config_id_prefix = "${var.name_prefix}-cfg-"

  openapi_documents {
    document {
      path     = "openapi.yaml"
      contents = base64encode(yamlencode(local.openapi))
    }
  }

  gateway_config {
    backend_config {
      google_service_account = google_service_account.gateway.email
    }
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_api_gateway_gateway" "api" {
  provider = google-beta

  gateway_id   = "${var.name_prefix}-calendar-sync"
  region       = var.region
  api_config   = google_api_gateway_api_config.api.id
  display_name = "Calendar sync (user-facing)"
}
