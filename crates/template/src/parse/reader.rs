//! Reading one HCL block body: its keys checked against what the block
//! allows, attributes evaluated and converted to typed values, and every
//! problem recorded (with where it is) instead of stopping at the first.

use std::cell::RefCell;
use std::collections::BTreeMap;

use hcl::eval::{Context, Evaluate};
use hcl::{Block, Body, Expression, Structure, Value};

use super::ManifestError;
use crate::values::format_number;

/// Where something is in the manifest: the path shown to the user, and the
/// positions of the structures leading to it, which sort problems into file
/// order (a parent's problems come before those inside it).
#[derive(Debug, Clone, Default)]
pub(super) struct Loc {
    path: String,
    order: Vec<usize>,
}

impl Loc {
    /// The `index`th structure of this block, called `name` in paths.
    pub fn child(&self, name: &str, index: usize) -> Loc {
        Loc { path: self.join(name), order: self.with_index(index) }
    }

    /// Something that is not in the file (a missing field): named like a
    /// child, sorted at the end of this block, where it was found missing.
    pub fn absent(&self, name: &str) -> Loc {
        Loc { path: self.join(name), order: self.with_index(usize::MAX) }
    }

    /// This block, sorted after everything in it: for something missing
    /// from it that has no name of its own.
    pub fn end(&self) -> Loc {
        Loc { path: self.path.clone(), order: self.with_index(usize::MAX) }
    }

    /// A problem of this block found at its `index`th structure (say, an
    /// unknown key there): named by the block, sorted by the structure.
    fn at(&self, index: usize) -> Loc {
        Loc { path: self.path.clone(), order: self.with_index(index) }
    }

    fn join(&self, name: &str) -> String {
        if self.path.is_empty() { name.to_owned() } else { format!("{} › {name}", self.path) }
    }

    fn with_index(&self, index: usize) -> Vec<usize> {
        let mut order = self.order.clone();
        order.push(index);
        order
    }
}

/// Every problem found so far. Shared by all the readers of one manifest.
#[derive(Debug, Default)]
pub(super) struct Problems(RefCell<Vec<(Vec<usize>, ManifestError)>>);

impl Problems {
    pub fn report(&self, at: &Loc, message: impl Into<String>) {
        // The top level has no block to name: the file stands in for it.
        let path = match at.path.as_str() {
            "" => crate::MANIFEST_FILE.to_owned(),
            path => path.to_owned(),
        };
        let error = ManifestError { path, message: message.into() };
        self.0.borrow_mut().push((at.order.clone(), error));
    }

    /// How many problems have been found so far: comparing counts tells
    /// whether reading something found a problem in it.
    pub fn count(&self) -> usize {
        self.0.borrow().len()
    }

    /// In file order; problems at the same place keep the order they were found in.
    pub fn into_sorted(self) -> Vec<ManifestError> {
        let mut problems = self.0.into_inner();
        problems.sort_by(|a, b| a.0.cmp(&b.0));
        problems.into_iter().map(|(_, error)| error).collect()
    }
}

/// What a block body may contain.
#[derive(Debug, Clone, Copy)]
pub(super) enum Key {
    Attr(&'static str),
    /// A block that may appear at most once.
    Block(&'static str),
    /// A block that may repeat.
    Blocks(&'static str),
}

impl Key {
    pub fn name(self) -> &'static str {
        match self {
            Key::Attr(name) | Key::Block(name) | Key::Blocks(name) => name,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Item<'a> {
    Attr(&'a Expression),
    Block(&'a Block),
}

/// A block body whose keys have been checked. The typed getters return
/// `None` when the attribute is absent or was wrong (and then reported), so
/// callers only decide what to do without a value.
pub(super) struct Reader<'a> {
    pub loc: Loc,
    /// The known keys present, with their positions, in file order.
    entries: Vec<(&'static str, usize, Item<'a>)>,
    pub problems: &'a Problems,
}

impl<'a> Reader<'a> {
    /// Reports unknown keys, attributes written as blocks and vice versa,
    /// and repeats of single blocks; keeps the rest.
    pub fn new(body: &'a Body, loc: Loc, keys: &[Key], problems: &'a Problems) -> Reader<'a> {
        let mut entries: Vec<(&'static str, usize, Item<'a>)> = Vec::new();
        for (index, structure) in body.iter().enumerate() {
            let (name, item) = match structure {
                Structure::Attribute(attr) => (attr.key(), Item::Attr(attr.expr())),
                Structure::Block(block) => (block.identifier(), Item::Block(block)),
            };
            let Some(&key) = keys.iter().find(|k| k.name() == name) else {
                let expected: Vec<_> = keys.iter().map(|k| k.name()).collect();
                let message = format!("unknown key {name:?}; expected one of: {}", expected.join(", "));
                problems.report(&loc.at(index), message);
                continue;
            };
            let here = loc.child(name, index);
            match (key, item) {
                (Key::Attr(_), Item::Block(_)) => {
                    problems.report(&here, format!("{name} is an attribute ({name} = ...), not a block"));
                }
                (Key::Block(_) | Key::Blocks(_), Item::Attr(_)) => {
                    problems.report(&here, format!("{name} is a block ({name} {{ ... }}), not an attribute"));
                }
                // The HCL parser already rejects a repeated attribute.
                (Key::Block(_), Item::Block(_)) if entries.iter().any(|e| e.0 == name) => {
                    problems.report(&here, format!("only one {name} block is allowed"));
                }
                _ => entries.push((key.name(), index, item)),
            }
        }
        Reader { loc, entries, problems }
    }

    pub fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|e| e.0 == name)
    }

    /// Where the attribute or single block `name` is, or would be.
    fn loc_of(&self, name: &str) -> Loc {
        match self.entries.iter().find(|e| e.0 == name) {
            Some(&(_, index, _)) => self.loc.child(name, index),
            None => self.loc.absent(name),
        }
    }

    /// Reports a problem with the attribute or single block `name`.
    pub fn report(&self, name: &str, message: impl Into<String>) {
        self.problems.report(&self.loc_of(name), message);
    }

    /// `get(self, name)`, after reporting `name` as missing when it is absent.
    pub fn required<T>(&self, name: &str, get: impl Fn(&Self, &str) -> Option<T>) -> Option<T> {
        if !self.has(name) {
            self.problems.report(&self.loc.absent(name), "required");
            return None;
        }
        get(self, name)
    }

    /// `value` after reporting `check`'s complaint about it (at `name`),
    /// or `None` if it has one.
    pub fn checked<T>(&self, name: &str, value: Option<T>, check: impl FnOnce(&T) -> Result<(), String>) -> Option<T> {
        let value = value?;
        match check(&value) {
            Ok(()) => Some(value),
            Err(message) => {
                self.report(name, message);
                None
            }
        }
    }

    /// The attribute's value, evaluated: literals and arithmetic work;
    /// variables and functions do not exist in a manifest.
    pub fn value(&self, name: &str) -> Option<(Loc, Value)> {
        let (_, index, item) = self.entries.iter().find(|e| e.0 == name)?;
        let Item::Attr(expr) = item else { return None };
        let loc = self.loc.child(name, *index);
        match expr.evaluate(&Context::new()) {
            // Checked here, where every attribute passes, so that no string of the manifest
            // reaches PostgreSQL (whose text cannot hold a NUL) whatever field it is in.
            Ok(value) if holds_nul(&value) => {
                self.problems.report(&loc, NUL_MESSAGE);
                None
            }
            Ok(value) => Some((loc, value)),
            Err(e) => {
                self.problems.report(&loc, format!("not a constant value: {e}"));
                None
            }
        }
    }

    /// The attribute converted by `convert`, or its `Err(expected)` reported
    /// as "expected {expected}, got {value}".
    pub fn typed<T>(&self, name: &str, convert: impl Fn(&Value) -> Result<T, String>) -> Option<T> {
        let (loc, value) = self.value(name)?;
        convert(&value).map_err(|expected| self.problems.report(&loc, expected_got(&expected, &value))).ok()
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.typed(name, as_string)
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        self.typed(name, |v| v.as_bool().ok_or_else(|| "a bool (true or false)".to_owned()))
    }

    pub fn number(&self, name: &str) -> Option<f64> {
        self.typed(name, |v| v.as_f64().ok_or_else(|| "a number".to_owned()))
    }

    /// One of `choices`, written as a string.
    pub fn choice<T: Copy>(&self, name: &str, choices: &[(&str, T)]) -> Option<T> {
        self.typed(name, |v| {
            let chosen = choices.iter().find(|(text, _)| v.as_str() == Some(text));
            chosen.map(|&(_, choice)| choice).ok_or_else(|| {
                let names: Vec<_> = choices.iter().map(|(text, _)| format!("\"{text}\"")).collect();
                match names.split_last() {
                    Some((last, [])) => last.clone(),
                    Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
                    None => "nothing".to_owned(),
                }
            })
        })
    }

    pub fn uint(&self, name: &str) -> Option<u64> {
        self.typed(name, as_uint)
    }

    /// A count (of instances): stored in a 32-bit integer column, so at most `i32::MAX`.
    pub fn count(&self, name: &str) -> Option<u32> {
        self.typed(name, |v| at_most(as_uint(v)?, i32::MAX as u64).map(|n| n as u32))
    }

    /// A number of seconds: at most `i32::MAX` (68 years), which any
    /// timestamp arithmetic in the database can still hold.
    pub fn seconds(&self, name: &str) -> Option<u64> {
        self.typed(name, |v| at_most(as_uint(v)?, i32::MAX as u64))
    }

    /// A duration written as a string such as `"90s"` or `"10m"`.
    pub fn duration(&self, name: &str) -> Option<std::time::Duration> {
        let text = self.string(name)?;
        let parsed = humantime::parse_duration(&text);
        parsed
            .map_err(|e| self.report(name, format!("{text:?} is not a duration such as \"90s\" or \"10m\": {e}")))
            .ok()
    }

    pub fn string_list(&self, name: &str) -> Option<Vec<String>> {
        self.typed(name, |v| {
            let expected = || "a list of strings".to_owned();
            let items = v.as_array().ok_or_else(expected)?;
            items.iter().map(|item| item.as_str().map(str::to_owned).ok_or_else(expected)).collect()
        })
    }

    /// An object whose values are strings, numbers or bools, all kept as strings.
    pub fn string_map(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let (loc, value) = self.value(name)?;
        let Value::Object(object) = &value else {
            self.problems.report(&loc, expected_got("an object of strings", &value));
            return None;
        };
        let mut map = BTreeMap::new();
        let mut ok = true;
        for (key, item) in object {
            match scalar_string(item) {
                Some(text) => _ = map.insert(key.clone(), text),
                None => {
                    let message = format!("{key:?}: {}", expected_got("a string", item));
                    self.problems.report(&loc, message);
                    ok = false;
                }
            }
        }
        ok.then_some(map)
    }

    /// The single block `name`, if present.
    pub fn block(&self, name: &str) -> Option<(Loc, &'a Block)> {
        self.blocks(name).into_iter().next()
    }

    /// Every block `name`, in file order.
    pub fn blocks(&self, name: &str) -> Vec<(Loc, &'a Block)> {
        self.entries
            .iter()
            .filter(|e| e.0 == name)
            .filter_map(|&(_, index, item)| match item {
                Item::Block(block) => Some((self.loc.child(name, index), block)),
                Item::Attr(_) => None,
            })
            .collect()
    }

    /// Opens every block `kind "name" { ... }`, with its name. Reports a
    /// missing or extra label (and skips that block: it has no name to go
    /// by) and a name used twice.
    pub fn labelled(&self, kind: &str, keys: &[Key]) -> Vec<(String, Reader<'a>)> {
        let mut opened: Vec<(String, Reader<'a>)> = Vec::new();
        for &(_, index, item) in self.entries.iter().filter(|e| e.0 == kind) {
            let Item::Block(block) = item else { continue };
            let [label] = block.labels() else {
                let message = format!(
                    "a {kind} block needs exactly one label, its name ({kind} \"name\" {{ ... }}); found {}",
                    block.labels().len()
                );
                self.problems.report(&self.loc.child(kind, index), message);
                continue;
            };
            let name = label.as_str().to_owned();
            if name.contains('\0') {
                let shown = name.replace('\0', "\\u0000");
                self.problems.report(&self.loc.child(&format!("{kind} \"{shown}\""), index), NUL_MESSAGE);
                continue;
            }
            let loc = self.loc.child(&format!("{kind} \"{name}\""), index);
            if opened.iter().any(|(other, _)| *other == name) {
                self.problems.report(&loc, format!("duplicate name: another {kind} is called \"{name}\""));
            }
            opened.push((name, Reader::new(block.body(), loc, keys, self.problems)));
        }
        opened
    }

    /// Opens the single, unlabelled block `name`, if present.
    pub fn nested(&self, name: &str, keys: &[Key]) -> Option<Reader<'a>> {
        let (loc, block) = self.block(name)?;
        Some(self.open(loc, block, keys))
    }

    /// Opens every unlabelled block `name`, numbered `#1`, `#2`… in paths
    /// since they have no names of their own.
    pub fn nested_all(&self, name: &str, keys: &[Key]) -> Vec<Reader<'a>> {
        let blocks = self.entries.iter().filter(|e| e.0 == name);
        blocks
            .enumerate()
            .filter_map(|(n, &(_, index, item))| match item {
                Item::Block(block) => {
                    let loc = self.loc.child(&format!("{name} #{}", n + 1), index);
                    Some(self.open(loc, block, keys))
                }
                Item::Attr(_) => None,
            })
            .collect()
    }

    fn open(&self, loc: Loc, block: &'a Block, keys: &[Key]) -> Reader<'a> {
        if !block.labels().is_empty() {
            self.problems.report(&loc, format!("a {} block takes no label", block.identifier()));
        }
        Reader::new(block.body(), loc, keys, self.problems)
    }
}

const NUL_MESSAGE: &str = "must not contain a NUL character (\\u0000)";

/// Whether a NUL character is in any string of `value`, or in a key of one of its objects.
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(object) => object.iter().any(|(key, item)| key.contains('\0') || holds_nul(item)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn as_string(value: &Value) -> Result<String, String> {
    value.as_str().map(str::to_owned).ok_or_else(|| "a string".to_owned())
}

fn at_most(n: u64, max: u64) -> Result<u64, String> {
    if n > max {
        return Err(format!("a whole number <= {max}"));
    }
    Ok(n)
}

fn as_uint(value: &Value) -> Result<u64, String> {
    let expected = || "a whole number >= 0".to_owned();
    let n = value.as_number().ok_or_else(expected)?;
    // `6 / 2` evaluates to the float 3, which is still a whole number.
    n.as_u64()
        .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 2f64.powi(53)).map(|f| f as u64))
        .ok_or_else(expected)
}

/// Strings as they are, numbers in shortest form, bools as `true`/`false`.
pub(super) fn scalar_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => n.as_f64().map(format_number),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

pub(super) fn expected_got(expected: &str, value: &Value) -> String {
    format!("expected {expected}, got {}", describe(value))
}

/// A value as a user would recognise it in an error message.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), format_number),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "an object".to_owned(),
    }
}
