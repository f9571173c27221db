//! The template import job: unpack the version's files, parse and validate
//! `warmspace.hcl`, and let the named backend check its own block.

use std::path::{Component, Path};

use warmspace_sdk::{LogLevel, LogSource};
use warmspace_template::{BackendConfig, MANIFEST_FILE, Manifest};

use crate::archive;
use crate::logs::LogSink;

mod variables;

const STAGE: &str = "Importing template";

/// Why an import failed, as one message per problem.
pub struct ImportFailure(pub Vec<String>);

/// `terraform` is the CLI the daemon's `terraform` backend runs, checked when
/// the template uses that backend.
pub fn import(archive_bytes: &[u8], log: &LogSink, terraform: &Path) -> Result<Manifest, ImportFailure> {
    let fail = |message: String| {
        log.error(STAGE, &message);
        ImportFailure(vec![message])
    };
    let dir = tempfile::Builder::new()
        .prefix("warmspace-import-")
        .tempdir()
        .map_err(|e| fail(format!("cannot create a working directory: {e}")))?;
    log.info(STAGE, format!("Unpacking {} bytes of template files", archive_bytes.len()));
    archive::unpack(archive_bytes, dir.path()).map_err(|e| fail(format!("the archive cannot be unpacked: {e}")))?;
    let source = read_manifest(dir.path()).map_err(fail)?;
    log.info(STAGE, format!("Parsing {MANIFEST_FILE}"));
    let manifest = warmspace_template::parse(&source).map_err(|errors| {
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for message in &messages {
            log.error(STAGE, message);
        }
        ImportFailure(messages)
    })?;
    validate_backend(&manifest, dir.path(), terraform, log).map_err(|messages| {
        for message in &messages {
            log.error(STAGE, message);
        }
        ImportFailure(messages)
    })?;
    log.info(
        STAGE,
        format!(
            "Imported: provisioner {}, claim {}, {} parameters, {} presets, {} agents",
            manifest.provisioner.as_str(),
            manifest.claim.as_str(),
            manifest.parameters.len(),
            manifest.presets.len(),
            manifest.agents.len()
        ),
    );
    Ok(manifest)
}

/// The manifest's text, or why there is none to parse.
fn read_manifest(root: &Path) -> Result<String, String> {
    let bytes = match std::fs::read(root.join(MANIFEST_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("{MANIFEST_FILE} is missing from the template's root"));
        }
        Err(e) => return Err(format!("{MANIFEST_FILE} cannot be read: {e}")),
    };
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        format!("{MANIFEST_FILE} is not UTF-8 text (the bytes at offset {at} are not valid UTF-8)")
    })
}

/// The backend's own check of its block against the template's files.
fn validate_backend(manifest: &Manifest, root: &Path, terraform: &Path, log: &LogSink) -> Result<(), Vec<String>> {
    match &manifest.backend {
        BackendConfig::Echo(_) => Ok(()),
        BackendConfig::Terraform => {
            check_terraform(root, terraform).map_err(|problem| vec![problem])?;
            validate_terraform(root, terraform, log)?;
            let declared = variables::declared(root).map_err(|problem| vec![problem])?;
            for warning in variables::warnings(manifest, &declared) {
                log.line(LogSource::ProvisionerDaemon, LogLevel::Warn, STAGE, warning);
            }
            Ok(())
        }
        BackendConfig::Exec(exec) => {
            let scripts =
                [("start", Some(&exec.start)), ("stop", exec.stop.as_ref()), ("delete", exec.delete.as_ref())];
            let problems: Vec<String> = scripts
                .into_iter()
                .filter_map(|(field, path)| Some((field, path?)))
                .filter_map(|(field, path)| {
                    let inside =
                        Path::new(path).components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
                    let file = root.join(path);
                    if !inside {
                        Some(format!("exec › {field}: {path:?} must be a path inside the template"))
                    } else if !file.is_file() {
                        Some(format!("exec › {field}: {path:?} is not a file in the template"))
                    } else {
                        None
                    }
                })
                .collect();
            if problems.is_empty() { Ok(()) } else { Err(problems) }
        }
    }
}

/// A Terraform template needs `.tf` files beside its manifest, and the daemon
/// needs a Terraform CLI that runs: found out now rather than at the first build.
fn check_terraform(root: &Path, terraform: &Path) -> Result<(), String> {
    let has_tf = std::fs::read_dir(root)
        .map_err(|e| format!("cannot list the template's files: {e}"))?
        .filter_map(Result::ok)
        .any(|entry| entry.path().extension().is_some_and(|ext| ext == "tf"));
    if !has_tf {
        return Err("provisioner: \"terraform\" needs .tf files beside warmspace.hcl; the template has none".into());
    }
    let shown = terraform.display();
    let how = "install Terraform (https://developer.hashicorp.com/terraform/install) on the provisioner's host, \
               or point the daemon at it with --terraform-binary";
    match std::process::Command::new(terraform).arg("version").stdin(std::process::Stdio::null()).output() {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "provisioner: the Terraform CLI `{shown}` does not work (`{shown} version` failed: {}): {how}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "provisioner: the terraform backend needs the `{shown}` binary, which is not on this provisioner's PATH: {how}"
        )),
        Err(e) => Err(format!("provisioner: cannot run the Terraform CLI `{shown}`: {e}: {how}")),
    }
}

/// `terraform init`, then `terraform validate`: the template's errors fail
/// the import, its warnings are logged. A failing `init` (a provider that
/// cannot be downloaded here, say) is only a warning — builds run `init`
/// again on their own daemons — and leaves nothing to validate.
fn validate_terraform(root: &Path, terraform: &Path, log: &LogSink) -> Result<(), Vec<String>> {
    let run = |args: &[&str]| {
        std::process::Command::new(terraform)
            .args(args)
            .current_dir(root)
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("CHECKPOINT_DISABLE", "1")
            .stdin(std::process::Stdio::null())
            .output()
    };
    log.info(STAGE, "Running terraform init and terraform validate");
    match run(&["init", "-input=false", "-no-color", "-backend=false"]) {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let from = stderr.find("Error:").unwrap_or(0);
            let warning = format!(
                "warning: terraform init failed here, so the template was not validated: {}",
                stderr[from..].trim()
            );
            log.line(LogSource::ProvisionerDaemon, LogLevel::Warn, STAGE, warning);
            return Ok(());
        }
        Err(e) => return Err(vec![format!("provisioner: cannot run terraform init: {e}")]),
    }
    let output = run(&["validate", "-json", "-no-color"])
        .map_err(|e| vec![format!("provisioner: cannot run terraform validate: {e}")])?;
    let validated: Validated = serde_json::from_slice(&output.stdout).map_err(|e| {
        vec![format!(
            "provisioner: cannot read what terraform validate said ({e}): {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )]
    })?;
    let mut errors = Vec::new();
    for d in validated.diagnostics {
        let place = d.range.map(|r| format!(" ({}:{})", r.filename, r.start.line)).unwrap_or_default();
        let text = format!("terraform validate: {}{place}: {}", d.summary, d.detail.trim());
        match d.severity.as_str() {
            "error" => errors.push(text),
            _ => log.line(LogSource::ProvisionerDaemon, LogLevel::Warn, STAGE, format!("warning: {text}")),
        }
    }
    if errors.is_empty() && !validated.valid {
        errors.push("terraform validate found the template invalid".into());
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// The part of `terraform validate -json`'s answer read here.
#[derive(serde::Deserialize)]
struct Validated {
    valid: bool,
    #[serde(default)]
    diagnostics: Vec<ValidateDiagnostic>,
}

#[derive(serde::Deserialize)]
struct ValidateDiagnostic {
    severity: String,
    summary: String,
    #[serde(default)]
    detail: String,
    range: Option<Range>,
}

#[derive(serde::Deserialize)]
struct Range {
    filename: String,
    start: Position,
}

#[derive(serde::Deserialize)]
struct Position {
    line: u32,
}

#[cfg(test)]
mod tests {
    use tempfile::TempDir;
    use warmspace_sdk::archive::tar_directory;

    use super::*;

    /// Imports a template made of `files`, with the Terraform CLI `terraform`.
    fn import_files(files: &[(&str, &str)], terraform: &str) -> Result<Manifest, Vec<String>> {
        let (log, _rx) = LogSink::channel();
        import(&archive(files), &log, Path::new(terraform)).map_err(|ImportFailure(problems)| problems)
    }

    /// A template version's archive holding `files`.
    fn archive(files: &[(&str, &str)]) -> Vec<u8> {
        let dir = TempDir::new().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        tar_directory(dir.path()).unwrap()
    }

    /// The warnings the import of `files` logged (it must succeed).
    fn import_warnings(files: &[(&str, &str)]) -> Vec<String> {
        let archive = archive(files);
        let (log, mut rx) = LogSink::channel();
        let imported = import(&archive, &log, Path::new("terraform"));
        drop(log);
        let mut warnings = Vec::new();
        while let Ok(line) = rx.try_recv() {
            if line.level == LogLevel::Warn {
                warnings.push(line.output);
            }
        }
        assert!(imported.is_ok(), "{warnings:#?}");
        warnings
    }

    #[test]
    fn the_import_validates_the_terraform_and_fails_on_its_errors() {
        let invalid = ("main.tf", "resource \"terraform_data\" \"home\" { input = var.undeclared }\n");
        let problems = import_files(&[MANIFEST, invalid], "terraform").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("terraform validate: Reference to undeclared input variable (main.tf:1): "),
            "{problems:?}"
        );
    }

    #[test]
    fn the_import_warns_of_parameters_and_variables_that_do_not_match() {
        let manifest = (
            "warmspace.hcl",
            "provisioner = \"terraform\"\nparameter \"greeting\" {\n  type = \"string\"\n  default = \"hi\"\n}\n",
        );
        let main_tf = (
            "main.tf",
            "variable \"zone\" { type = string }\nvariable \"warmspace_owner_name\" { type = string }\n\
             resource \"terraform_data\" \"home\" { input = \"${var.zone}${var.warmspace_owner_name}\" }\n",
        );
        let warnings = import_warnings(&[manifest, main_tf]);
        assert_eq!(warnings.len(), 2, "{warnings:#?}");
        assert!(
            warnings[0].contains("parameter \"greeting\" has no matching `variable \"greeting\"`"),
            "{warnings:#?}"
        );
        assert!(warnings[1].contains("`variable \"zone\"` has no default and no parameter"), "{warnings:#?}");
        // Matched both ways: nothing to say.
        assert_eq!(import_warnings(&[MANIFEST, MAIN_TF]), Vec::<String>::new());
    }

    const MANIFEST: (&str, &str) = ("warmspace.hcl", "provisioner = \"terraform\"\n");
    const MAIN_TF: (&str, &str) = ("main.tf", "resource \"terraform_data\" \"home\" {}\n");

    #[test]
    fn a_terraform_template_imports_when_the_cli_runs() {
        let manifest = import_files(&[MANIFEST, MAIN_TF], "terraform").unwrap();
        assert_eq!(manifest.backend, BackendConfig::Terraform);
    }

    #[test]
    fn a_missing_terraform_cli_fails_the_import_saying_how_to_install_it() {
        let problems = import_files(&[MANIFEST, MAIN_TF], "/nonexistent/terraform").unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        let message = &problems[0];
        assert!(
            message.contains("`/nonexistent/terraform` binary, which is not on this provisioner's PATH"),
            "{message}"
        );
        assert!(message.contains("https://developer.hashicorp.com/terraform/install"), "{message}");
        assert!(message.contains("--terraform-binary"), "{message}");
    }

    #[test]
    fn a_terraform_template_needs_tf_files() {
        let problems = import_files(&[MANIFEST], "terraform").unwrap_err();
        assert_eq!(
            problems,
            ["provisioner: \"terraform\" needs .tf files beside warmspace.hcl; the template has none"]
        );
    }
}
