# A template whose workspaces are simulated: builds take a moment and run no
# processes. Good for trying warmspace out and for load tests.
provisioner = "echo"
claim       = "rebuild"

parameter "region" {
  display_name = "Region"
  type         = "string"
  default      = "us"
  mutable      = false
  option {
    name  = "US East"
    value = "us"
  }
  option {
    name  = "EU West"
    value = "eu"
  }
}

parameter "cpus" {
  type    = "number"
  default = 2
  mutable = true
  validation {
    min = 1
    max = 16
  }
}

preset "us-small" {
  description = "US East, 2 CPUs"
  icon        = "/icon/us.svg"
  default     = true
  parameters  = { region = "us", cpus = "2" }
  prebuilds {
    instances = 1
    expiration_policy {
      ttl = 86400
    }
    scheduling {
      timezone = "America/New_York"
      schedule {
        cron      = "* 8-18 * * 1-5"
        instances = 3
      }
      schedule {
        cron      = "* 8-14 * * 6"
        instances = 1
      }
    }
  }
}

preset "eu-large" {
  description = "EU West, 8 CPUs, no pool"
  parameters  = { region = "eu", cpus = "8" }
}

agent "main" {
  startup_script = "echo ready"
  env            = { EDITOR = "vim" }
}

echo {
  duration_ms      = 200
  fail_on          = []
  replace_on_claim = []
}
