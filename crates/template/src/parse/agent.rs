//! `agent "name" { ... }` blocks.

use std::sync::LazyLock;

use regex::Regex;

use super::reader::{Key, Reader};
use crate::model::Agent;

pub(super) const KEYS: &[Key] = &[Key::Attr("startup_script"), Key::Attr("env")];

/// Agent names end up in hostnames and URLs, hence the DNS-label shape.
static NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new("^[a-z0-9]+(-[a-z0-9]+)*$").expect("a valid pattern"));

pub(super) fn read_all(top: &Reader) -> Vec<Agent> {
    let blocks = top.labelled("agent", KEYS);
    blocks.into_iter().map(|(name, block)| read(name, &block)).collect()
}

fn read(name: String, block: &Reader) -> Agent {
    if !NAME.is_match(&name) {
        let message = "an agent name may contain only lowercase letters, digits and single \
                       hyphens, and must start and end with a letter or digit";
        block.problems.report(&block.loc, message);
    }
    Agent {
        name,
        startup_script: block.string("startup_script").unwrap_or_default(),
        env: block.string_map("env").unwrap_or_default(),
    }
}
