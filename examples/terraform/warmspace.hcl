# A template whose workspaces are described in Terraform (main.tf) with
# built-in resources only, so it works offline: `terraform_data` resources
# whose `local-exec` provisioners start a local process and the workspace's
# agent, and stop them again. Terraform's state is kept by the server with
# each build, so any daemon can run the next build.
provisioner = "terraform"

parameter "greeting" {
  display_name = "Greeting"
  description  = "Printed by the workspace process every few seconds."
  type         = "string"
  default      = "hello"
  mutable      = true
}

preset "default" {
  description = "A Terraform-made local workspace, one kept warm"
  default     = true
  parameters  = { greeting = "hello" }
  prebuilds {
    instances = 1
  }
}

agent "main" {
  startup_script = "echo workspace ready"
}
