//! The `warmspace.hcl` manifest at the root of every template version:
//! parsing, the validation rules of DESIGN §3, and checking parameter values
//! (for presets here, and for workspace builds later).

mod build_parameters;
mod model;
mod parse;
mod values;

pub use build_parameters::{ParameterInput, ParameterProblem, resolve_parameters};
pub use model::*;
pub use parse::{ManifestError, ManifestKey, manifest_keys, parse};
pub use values::ValueError;

/// The manifest's file name at the root of a template.
pub const MANIFEST_FILE: &str = "warmspace.hcl";
