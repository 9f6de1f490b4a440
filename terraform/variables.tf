variable "project_id" {
  description = "Google Cloud project to deploy into."
  type        = string
}

variable "region" {
  description = "Region of the functions, the scheduler job, the source bucket and the API gateway."
  type        = string
  default     = "europe-west1"
}

variable "firestore_location" {
  description = "Firestore location (e.g. eur3, nam5, europe-west1). Empty = the functions' region. The push_event trigger listens in this location."
  type        = string
  default     = ""
}

variable "name_prefix" {
  description = "Prefix of every named resource (functions, service accounts, bucket, gateway). Lowercase, at most 6 characters."
  type        = string
  default     = "gcal"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{0,5}$", var.name_prefix))
    error_message = "name_prefix must be 1-6 lowercase letters or digits, starting with a letter."
  }
}

variable "webhook_domain" {
  description = "Optional custom domain already mapped to the webhook function (e.g. hooks.example.com). Empty = the function's deterministic https://NAME-PROJECT_NUMBER.REGION.run.app URL."
  type        = string
  default     = ""
}

variable "api_base_url" {
  description = "Optional public base URL of the user-facing API (a custom domain in front of the API gateway). Empty = the gateway's own https://<host>.gateway.dev."
  type        = string
  default     = ""
}

variable "oauth_client_id" {
  description = "OAuth 2.0 client id (Web application) created in the console; its secret goes into Secret Manager, never here."
  type        = string
}

variable "oauth_return_url" {
  description = "Where the OAuth callback sends the browser afterwards (the CRM settings page). Empty = the callback answers JSON."
  type        = string
  default     = ""
}

variable "auth_project_id" {
  description = "Project of the Firebase Authentication / Identity Platform tenant whose ID tokens the user-facing functions accept. Empty = project_id."
  type        = string
  default     = ""
}

variable "token_encryption_active_key_id" {
  description = "Key id in TOKEN_ENCRYPTION_KEYS that encrypts new refresh tokens. Empty = the highest key id (sorted)."
  type        = string
  default     = ""
}

variable "tuning" {
  description = "Overrides of the sync tunables passed as env vars (keys of local.tuning_defaults, e.g. { RENEWAL_CONCURRENCY = \"16\" })."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.tuning) : contains(keys(local.tuning_defaults), k)])
    error_message = "tuning keys must be keys of local.tuning_defaults (sync tunables only)."
  }
}

variable "function_sizing" {
  description = "Per-function overrides of memory / timeout / instances / cpu / concurrency, keyed by entry point (e.g. { renew = { memory = \"1Gi\" } })."
  type = map(object({
    memory        = optional(string)
    timeout       = optional(number)
    min_instances = optional(number)
    max_instances = optional(number)
    cpu           = optional(string)
    concurrency   = optional(number)
  }))
  default = {}

}
