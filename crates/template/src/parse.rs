//! Parsing and validating `warmspace.hcl`. Every problem is reported, in
//! file order, each with the block and field it is about, so that a template
//! author can fix them all in one go.

mod agent;
mod backend;
mod parameter;
mod preset;
mod reader;
#[cfg(test)]
mod tests;

use crate::model::{ClaimMode, Manifest, Provisioner};
use reader::{Key, Loc, Problems, Reader};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// Where: the block and field, e.g. `preset "us-small" › prebuilds ›
    /// scheduling › timezone`, `parameter "region" › default`,
    /// `agent "my_agent"`, `exec › timeout`, or `provisioner`.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for ManifestError {}

const TOP_KEYS: &[Key] = &[
    Key::Attr("provisioner"),
    Key::Attr("claim"),
    Key::Blocks("parameter"),
    Key::Blocks("preset"),
    Key::Blocks("agent"),
    Key::Block("exec"),
    Key::Block("echo"),
];

/// Every block the parser reads, by its path from the top level (`""`), with
/// the keys it accepts. Nested blocks appear as keys of their parent and
/// again here with their own keys.
const BLOCKS: &[(&str, &[Key])] = &[
    ("", TOP_KEYS),
    ("parameter", parameter::KEYS),
    ("parameter › option", parameter::OPTION_KEYS),
    ("parameter › validation", parameter::VALIDATION_KEYS),
    ("preset", preset::KEYS),
    ("preset › prebuilds", preset::PREBUILDS_KEYS),
    ("preset › prebuilds › expiration_policy", preset::EXPIRATION_KEYS),
    ("preset › prebuilds › scheduling", preset::SCHEDULING_KEYS),
    ("preset › prebuilds › scheduling › schedule", preset::SCHEDULE_KEYS),
    ("agent", agent::KEYS),
    ("agent › app", agent::APP_KEYS),
    ("agent › app › healthcheck", agent::HEALTHCHECK_KEYS),
    ("agent › devcontainer", agent::DEVCONTAINER_KEYS),
    ("exec", backend::EXEC_KEYS),
    ("echo", backend::ECHO_KEYS),
];

/// A key the manifest accepts: an attribute or a nested block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManifestKey {
    /// The enclosing block as a path of block names (`preset › prebuilds`),
    /// empty for the top level.
    pub block: &'static str,
    pub name: &'static str,
    /// A block (`name { ... }`) rather than an attribute (`name = ...`).
    pub is_block: bool,
}

/// Every key the parser accepts, block by block, in the order the parser
/// lists them: what a manifest reference has to describe.
pub fn manifest_keys() -> Vec<ManifestKey> {
    BLOCKS
        .iter()
        .flat_map(|&(block, keys)| {
            keys.iter().map(move |&key| ManifestKey {
                block,
                name: key.name(),
                is_block: matches!(key, Key::Block(_) | Key::Blocks(_)),
            })
        })
        .collect()
}

const PROVISIONERS: &[(&str, Provisioner)] =
    &[("echo", Provisioner::Echo), ("exec", Provisioner::Exec), ("terraform", Provisioner::Terraform)];

const CLAIM_MODES: &[(&str, ClaimMode)] = &[("rebuild", ClaimMode::Rebuild), ("reinit", ClaimMode::Reinit)];

/// Parses and validates a warmspace.hcl manifest. Returns all problems
/// found (not just the first), in file order.
pub fn parse(source: &str) -> Result<Manifest, Vec<ManifestError>> {
    let body = hcl::parse(source).map_err(|e| vec![syntax_error(e)])?;
    let problems = Problems::default();
    let top = Reader::new(&body, Loc::default(), TOP_KEYS, &problems);

    let provisioner = provisioner(&top);
    let claim = top.choice("claim", CLAIM_MODES);
    let parameters = parameter::read_all(&top);
    let presets = preset::read_all(&top, &parameters);
    let agents = agent::read_all(&top);
    let backend = backend::read(&top, provisioner);

    // Any problem means no manifest; without one, every part was read.
    if problems.count() > 0 {
        return Err(problems.into_sorted());
    }
    let missing = "a part of the manifest is missing without a reported problem";
    Ok(Manifest {
        provisioner: provisioner.expect(missing),
        claim: claim.unwrap_or_default(),
        parameters: parameters.into_iter().map(|(_, p)| p.expect(missing)).collect(),
        presets,
        agents,
        backend: backend.expect(missing),
    })
}

/// The parser's own message is several lines of ASCII art; keep its facts.
fn syntax_error(error: hcl::Error) -> ManifestError {
    let message = match &error {
        hcl::Error::Parse(e) => {
            let at = e.location();
            format!("line {}, column {}: {}", at.line(), at.column(), e.message())
        }
        other => other.to_string(),
    };
    ManifestError { path: crate::MANIFEST_FILE.to_owned(), message }
}

fn provisioner(top: &Reader) -> Option<Provisioner> {
    if !top.has("provisioner") {
        let message = "required: one of echo, exec or terraform";
        top.report("provisioner", message);
        return None;
    }
    top.choice("provisioner", PROVISIONERS)
}
