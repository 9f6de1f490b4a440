terraform {
  required_version = ">= 1.9.0" # variable validation refers to a local value

  # Exact provider versions: a deployment applies with the providers the policy tests were written against. Commit
  # the .terraform.lock.hcl that the first `terraform init` writes (it records the providers' checksums).
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "6.50.0"
    }
    # API Gateway resources and the Eventarc service identity exist only in the beta provider.
    google-beta = {
      source  = "hashicorp/google-beta"
      version = "6.50.0"
    }
    archive = {
      source  = "hashicorp/archive"
      version = "2.7.1"
    }
    # Waits for IAM grants and service agents to propagate before the resources that need them.
    time = {
      source  = "hashicorp/time"
      version = "0.13.1"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}

provider "google-beta" {
  project = var.project_id
  region  = var.region
}
