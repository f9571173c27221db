//! The `variable` blocks of a Terraform template's root module, and how
//! they match the manifest's parameters: each build sets `TF_VAR_<name>`
//! for every parameter and for the `warmspace_*` inputs, so a parameter
//! with no variable is ignored by Terraform, and a variable with neither a
//! default nor a parameter fails every plan.

use std::path::Path;

use warmspace_template::Manifest;

/// A declared input variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    pub has_default: bool,
}

/// The variables declared in the `.tf` files at `root` (the root module),
/// in file-name order. A file Terraform could not parse either is left to
/// `terraform validate` to report.
pub fn declared(root: &Path) -> Result<Vec<Variable>, String> {
    let mut files: Vec<_> = std::fs::read_dir(root)
        .map_err(|e| format!("cannot list the template's files: {e}"))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "tf"))
        .collect();
    files.sort();
    let mut variables = Vec::new();
    for file in files {
        let Ok(source) = std::fs::read_to_string(&file) else { continue };
        variables.extend(in_source(&source));
    }
    Ok(variables)
}

/// The variables one file's text declares.
fn in_source(source: &str) -> Vec<Variable> {
    let Ok(body) = hcl::parse(source) else { return Vec::new() };
    body.blocks()
        .filter(|block| block.identifier() == "variable")
        .filter_map(|block| {
            let name = block.labels().first()?.as_str().to_owned();
            let has_default = block.body().attributes().any(|a| a.key() == "default");
            Some(Variable { name, has_default })
        })
        .collect()
}

/// What does not match, as import warnings.
pub fn warnings(manifest: &Manifest, variables: &[Variable]) -> Vec<String> {
    let declares = |name: &str| variables.iter().any(|v| v.name == name);
    let is_parameter = |name: &str| manifest.parameters.iter().any(|p| p.name == name);
    let unused = manifest.parameters.iter().filter(|p| !declares(&p.name)).map(|p| {
        format!(
            "warning: parameter {:?} has no matching `variable {:?}` in the .tf files, so Terraform ignores its value",
            p.name, p.name
        )
    });
    let unset = variables
        .iter()
        .filter(|v| !v.has_default && !v.name.starts_with("warmspace_") && !is_parameter(&v.name))
        .map(|v| {
            format!(
                "warning: `variable {:?}` has no default and no parameter of that name sets it, \
                 so every build's plan will fail for want of a value",
                v.name
            )
        });
    unused.chain(unset).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(parameters: &[&str]) -> Manifest {
        let mut source = "provisioner = \"terraform\"\n".to_owned();
        for name in parameters {
            source.push_str(&format!("parameter \"{name}\" {{\n  type = \"string\"\n  default = \"x\"\n}}\n"));
        }
        warmspace_template::parse(&source).unwrap()
    }

    #[test]
    fn variables_are_read_with_whether_they_have_a_default() {
        let source = r#"
variable "region" { type = string }
variable "size" {
  type    = number
  default = 2
}
resource "terraform_data" "x" { input = var.region }
"#;
        assert_eq!(
            in_source(source),
            [
                Variable { name: "region".into(), has_default: false },
                Variable { name: "size".into(), has_default: true }
            ]
        );
        assert_eq!(in_source("this is { not hcl"), []);
    }

    #[test]
    fn parameters_without_variables_and_variables_nothing_sets_are_warned_of() {
        let variables = [
            Variable { name: "region".into(), has_default: false },
            Variable { name: "size".into(), has_default: true },
            Variable { name: "zone".into(), has_default: false },
            Variable { name: "warmspace_owner_name".into(), has_default: false },
        ];
        let warnings = warnings(&manifest(&["region", "greeting"]), &variables);
        assert_eq!(warnings.len(), 2, "{warnings:#?}");
        assert!(warnings[0].starts_with("warning: parameter \"greeting\" has no matching `variable \"greeting\"`"));
        assert!(warnings[1].starts_with("warning: `variable \"zone\"` has no default and no parameter"));
        assert_eq!(super::warnings(&manifest(&["region"]), &variables[..2]), Vec::<String>::new());
    }
}
