# The workspace: a local process and its agent while it is started, and a
# home directory for as long as it exists. Everything lives under
# $WARMSPACE_EXAMPLE_ROOT/<workspace id> (default: $TMPDIR/warmspace-example),
# read from the daemon's environment by the provisioners' shell commands.

variable "warmspace_workspace_id" { type = string }
variable "warmspace_workspace_name" { type = string }
variable "warmspace_owner_name" { type = string }
variable "warmspace_start_count" { type = number }
variable "warmspace_access_url" { type = string }

# Issued by the builds that (re)start the agent; a claim issues none, the
# agent already running serves the new owner. Not `sensitive`: that would
# hide the provisioners' output, and the token is only ever passed in the
# environment, which Terraform does not print.
variable "warmspace_agent_token_main" {
  type    = string
  default = ""
}

variable "greeting" { type = string }

# The workspace's home, made for its owner.
#
# Written the naive way on purpose: `triggers_replace` depends on the owner,
# so the claim of a prebuild (a new owner) destroys and recreates it — the
# home the pool kept warm is thrown away, and the claim's build log, the
# template admins and the drift check say so. The fix keeps the owner out of
# what forces a replacement, and personalises elsewhere (say in the agent's
# startup script):
#
#   lifecycle {
#     ignore_changes = [triggers_replace]
#   }
resource "terraform_data" "home" {
  triggers_replace = var.warmspace_owner_name
  input            = var.warmspace_workspace_id

  provisioner "local-exec" {
    command = <<-EOT
      dir="$${WARMSPACE_EXAMPLE_ROOT:-$${TMPDIR:-/tmp}/warmspace-example}/${self.input}"
      mkdir -p "$dir/home"
      echo "made for ${var.warmspace_owner_name}" >"$dir/home/profile"
      echo "home ready in $dir/home"
    EOT
  }

  provisioner "local-exec" {
    when    = destroy
    command = <<-EOT
      dir="$${WARMSPACE_EXAMPLE_ROOT:-$${TMPDIR:-/tmp}/warmspace-example}/${self.input}"
      rm -rf "$dir/home"
      rmdir "$dir" 2>/dev/null || true
      echo "removed $dir/home"
    EOT
  }
}

# The running workspace: exists while it is started (`start_count` is 1 for
# `start`, 0 for `stop` and `delete`), so a stop destroys it (ending the
# processes) and the next start creates it again.
resource "terraform_data" "workspace" {
  count = var.warmspace_start_count

  # A new greeting restarts the process.
  triggers_replace = var.greeting
  input            = var.warmspace_workspace_id

  # The background processes write to files, not to Terraform's pipes,
  # which Terraform would otherwise wait on.
  provisioner "local-exec" {
    command = <<-EOT
      set -eu
      dir="$${WARMSPACE_EXAMPLE_ROOT:-$${TMPDIR:-/tmp}/warmspace-example}/${self.input}"
      mkdir -p "$dir"
      nohup sh -c 'while true; do echo "$(date) $0 from $1"; sleep 5; done' \
        "$GREETING" "$NAME" </dev/null >"$dir/workspace.log" 2>&1 &
      echo $! >"$dir/workspace.pid"
      echo "workspace process started (pid $!) in $dir"
      if [ -n "$WARMSPACE_AGENT_TOKEN" ]; then
        nohup "$WARMSPACE_BINARY" agent </dev/null >"$dir/agent.log" 2>&1 &
        echo $! >"$dir/agent.pid"
        echo "agent started (pid $!)"
      fi
    EOT
    environment = {
      GREETING              = var.greeting
      NAME                  = var.warmspace_workspace_name
      WARMSPACE_AGENT_URL   = var.warmspace_access_url
      WARMSPACE_AGENT_TOKEN = var.warmspace_agent_token_main
    }
  }

  provisioner "local-exec" {
    when    = destroy
    command = <<-EOT
      dir="$${WARMSPACE_EXAMPLE_ROOT:-$${TMPDIR:-/tmp}/warmspace-example}/${self.input}"
      for name in agent workspace; do
        if [ -s "$dir/$name.pid" ] && kill "$(cat "$dir/$name.pid")" 2>/dev/null; then
          echo "stopped $name process $(cat "$dir/$name.pid")"
        fi
        rm -f "$dir/$name.pid" "$dir/$name.log"
      done
      rmdir "$dir" 2>/dev/null || true
    EOT
  }
}
