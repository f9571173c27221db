//! The user documentation: README.md and docs/*.md link only inside the
//! repository, every link resolves (file and heading), the README links every
//! document, and the manifest reference describes every key the parser
//! accepts.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// README.md and every docs/*.md, by their path relative to the repository.
fn documents() -> BTreeMap<String, String> {
    let root = repo();
    let mut docs = BTreeMap::new();
    docs.insert("README.md".to_owned(), std::fs::read_to_string(root.join("README.md")).unwrap());
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            let name = format!("docs/{}", path.file_name().unwrap().to_str().unwrap());
            docs.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    docs
}

/// The document's lines outside fenced code blocks, with inline code spans
/// blanked: where links and bare web addresses are looked for.
fn prose(text: &str) -> Vec<String> {
    outside_fences(text).iter().map(|line| blank_code_spans(line)).collect()
}

/// The document's lines outside fenced code blocks, as written.
fn outside_fences(text: &str) -> Vec<&str> {
    let mut fence: Option<&str> = None;
    let mut lines = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| trimmed.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(open), Some(m)) if open == m => fence = None,
            (None, None) => lines.push(line),
            _ => {}
        }
    }
    lines
}

fn blank_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
            out.push(c);
        } else {
            out.push(if in_code { ' ' } else { c });
        }
    }
    out
}

/// Every link destination in a line of prose: inline links and images
/// `[text](dest "title")`, reference definitions `[label]: dest`, and
/// autolinks `<scheme:…>`.
fn link_targets(line: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("](") {
        let after = &rest[i + 2..];
        let end = after.find(')').unwrap_or(after.len());
        let dest = after[..end].split_whitespace().next().unwrap_or("");
        targets.push(dest.trim_matches(['<', '>']).to_owned());
        rest = &after[end..];
    }
    let trimmed = line.trim_start();
    if trimmed.starts_with('[')
        && let Some(i) = trimmed.find("]:")
    {
        targets.push(trimmed[i + 2..].split_whitespace().next().unwrap_or("").to_owned());
    }
    let mut rest = line;
    while let Some(i) = rest.find('<') {
        let after = &rest[i + 1..];
        let end = after.find('>').unwrap_or(after.len());
        let inside = &after[..end];
        if inside.contains(':') && !inside.contains(' ') {
            targets.push(inside.to_owned());
        }
        rest = &after[end..];
    }
    targets
}

/// GitHub's anchors for a document's headings: lowercased, punctuation
/// dropped, spaces as hyphens, repeats numbered.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = Vec::new();
    for line in outside_fences(text) {
        let Some(heading) = heading_text(line) else { continue };
        let slug: String = heading
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let n = seen.entry(slug.clone()).or_default();
        anchors.push(if *n == 0 { slug.clone() } else { format!("{slug}-{n}") });
        *n += 1;
    }
    anchors
}

/// The text of an ATX heading (`## Text`), without its markup. Works on the
/// raw line (code spans intact) as well as on prose.
fn heading_text(line: &str) -> Option<String> {
    let hashes = line.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
        return None;
    }
    Some(line[hashes..].trim().replace('`', ""))
}

/// `path` joined to `base`, with `.` and `..` resolved, if it stays inside the repository.
fn resolve(base: &Path, path: &str) -> Option<PathBuf> {
    let mut resolved = base.to_path_buf();
    for component in Path::new(path).components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !resolved.pop() {
                    return None;
                }
            }
            Component::Normal(part) => resolved.push(part),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(resolved)
}

#[test]
fn documentation_links_stay_in_the_repository_and_resolve() {
    let root = repo();
    let docs = documents();
    let mut problems = Vec::new();
    for (name, text) in &docs {
        for (n, line) in prose(text).iter().enumerate() {
            if line.contains("http://") || line.contains("https://") {
                problems.push(format!("{name}: a web address outside code: {:?}", line.trim()));
            }
            for target in link_targets(line) {
                let at = format!("{name} (prose line {}): link {target:?}", n + 1);
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    problems.push(format!("{at} is not a relative link into the repository"));
                    continue;
                }
                if target.starts_with('/') {
                    problems.push(format!("{at} is absolute; links must be relative"));
                    continue;
                }
                let (path, fragment) = match target.split_once('#') {
                    Some((path, fragment)) => (path, Some(fragment)),
                    None => (target.as_str(), None),
                };
                let dir = Path::new(name).parent().unwrap();
                let relative = if path.is_empty() { PathBuf::from(name) } else { dir.join(path) };
                let Some(file) = resolve(Path::new(""), relative.to_str().unwrap()) else {
                    problems.push(format!("{at} leads out of the repository"));
                    continue;
                };
                if !root.join(&file).exists() {
                    problems.push(format!("{at}: {} does not exist", file.display()));
                    continue;
                }
                if let Some(fragment) = fragment {
                    let Ok(target_text) = std::fs::read_to_string(root.join(&file)) else {
                        problems.push(format!("{at}: {} is not a document with headings", file.display()));
                        continue;
                    };
                    if !anchors(&target_text).iter().any(|a| a == fragment) {
                        problems.push(format!("{at}: {} has no heading #{fragment}", file.display()));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "documentation links:\n{}", problems.join("\n"));
}

#[test]
fn the_readme_links_every_document() {
    let docs = documents();
    let readme: Vec<String> = prose(&docs["README.md"]).iter().flat_map(|line| link_targets(line)).collect();
    let missing: Vec<&String> = docs
        .keys()
        .filter(|name| name.starts_with("docs/"))
        .filter(|name| !readme.iter().any(|t| t.split('#').next() == Some(name.as_str())))
        .collect();
    assert!(missing.is_empty(), "README.md does not link {missing:?}");
}

/// The section under the heading whose whole text is `heading`, up to the
/// next heading of any level.
fn section<'a>(text: &'a str, heading: &str) -> Option<Vec<&'a str>> {
    let mut lines = outside_fences(text).into_iter().skip_while(|line| heading_text(line).as_deref() != Some(heading));
    lines.next()?;
    Some(lines.take_while(|line| heading_text(line).is_none()).collect())
}

#[test]
fn the_manifest_reference_describes_every_key_the_parser_accepts() {
    let text = &documents()["docs/templates.md"];
    let mut problems = Vec::new();
    for key in warmspace_template::manifest_keys() {
        // The reference has one section per block, headed by the block's
        // name (`### prebuilds`), and "Top level" for the file itself.
        let heading = match key.block.rsplit_once(" › ") {
            Some((_, last)) => last,
            None if key.block.is_empty() => "Top level",
            None => key.block,
        };
        let Some(lines) = section(text, heading) else {
            problems.push(format!("no section headed {heading:?} (for {:?})", key.block));
            continue;
        };
        let wanted = format!("`{}`", key.name);
        if !lines.iter().any(|line| line.contains(&wanted)) {
            problems.push(format!("section {heading:?} does not describe {wanted}"));
        }
    }
    assert!(problems.is_empty(), "docs/templates.md:\n{}", problems.join("\n"));
}
