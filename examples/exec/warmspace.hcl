# A template whose workspaces are local processes: `start` launches one in
# the background, `stop` ends it, `delete` removes everything it made. The
# process id lives in the state file the server keeps between builds, so any
# daemon can run the next build.
provisioner = "exec"

parameter "greeting" {
  display_name = "Greeting"
  description  = "Printed by the workspace process every few seconds."
  type         = "string"
  default      = "hello"
  mutable      = true
}

preset "default" {
  description = "A plain local workspace, one kept warm"
  default     = true
  parameters  = { greeting = "hello" }
  prebuilds {
    instances = 1
  }
}

agent "main" {
  startup_script = "echo workspace ready"
}

exec {
  start   = "scripts/start.sh"
  stop    = "scripts/stop.sh"
  delete  = "scripts/delete.sh"
  timeout = "1m"
}
