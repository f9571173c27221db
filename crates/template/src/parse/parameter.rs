//! `parameter "name" { ... }` blocks, with their options and validation.

use hcl::Value;

use super::reader::{Key, Reader};
use crate::model::{Parameter, ParameterOption, ParameterType, Validation};
use crate::values::{format_number, whole_match};

pub(super) const KEYS: &[Key] = &[
    Key::Attr("display_name"),
    Key::Attr("description"),
    Key::Attr("type"),
    Key::Attr("default"),
    Key::Attr("mutable"),
    Key::Blocks("option"),
    Key::Block("validation"),
];

pub(super) const OPTION_KEYS: &[Key] =
    &[Key::Attr("name"), Key::Attr("value"), Key::Attr("description"), Key::Attr("icon")];

pub(super) const VALIDATION_KEYS: &[Key] =
    &[Key::Attr("min"), Key::Attr("max"), Key::Attr("regex"), Key::Attr("error")];

const TYPES: &[(&str, ParameterType)] = &[
    ("string", ParameterType::String),
    ("number", ParameterType::Number),
    ("bool", ParameterType::Bool),
    ("list(string)", ParameterType::ListString),
];

/// Every parameter's name, with the parameter when its block had no
/// problem: presets check their values only against sound parameters, so
/// one mistake is not reported again for every preset.
pub(super) fn read_all(top: &Reader) -> Vec<(String, Option<Parameter>)> {
    let blocks = top.labelled("parameter", KEYS);
    blocks
        .into_iter()
        .map(|(name, block)| {
            let before = block.problems.count();
            let parameter = read(&name, &block).filter(|_| block.problems.count() == before);
            (name, parameter)
        })
        .collect()
}

fn read(name: &str, block: &Reader) -> Option<Parameter> {
    if !valid_name(name) {
        let message = "a parameter name must start with a letter and contain only letters, \
                       digits, underscores and hyphens";
        block.problems.report(&block.loc, message);
    }
    let kind = block.required("type", |b, key| b.choice(key, TYPES));
    let display_name = block.string("display_name").unwrap_or_else(|| name.to_owned());
    let description = block.string("description").unwrap_or_default();
    let mutable = block.bool("mutable").unwrap_or(false);
    // The default is checked against the options and validation, which can
    // only be trusted when reading them found nothing wrong.
    let before = block.problems.count();
    let options = read_options(block, kind);
    let validation = read_validation(block, kind);
    let default = kind.and_then(|kind| block.typed("default", |v| typed_value(kind, v)));
    let trusted = block.problems.count() == before;

    let mut parameter = Parameter {
        name: name.to_owned(),
        display_name,
        description,
        kind: kind?,
        default: None,
        mutable,
        options,
        validation,
    };
    if trusted {
        parameter.default =
            block.checked("default", default, |default| parameter.check_value(default).map_err(|e| e.to_string()));
    }
    Some(parameter)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A default or option value must be written as the parameter's own type;
/// returns it in the string form of [`Parameter`].
fn typed_value(kind: ParameterType, value: &Value) -> Result<String, String> {
    let converted = match kind {
        ParameterType::String => value.as_str().map(str::to_owned),
        ParameterType::Number => value.as_f64().map(format_number),
        ParameterType::Bool => value.as_bool().map(|b| b.to_string()),
        ParameterType::ListString => string_list_json(value),
    };
    converted.ok_or_else(|| match kind {
        ParameterType::String => "a string".to_owned(),
        ParameterType::Number => "a number".to_owned(),
        ParameterType::Bool => "a bool (true or false)".to_owned(),
        ParameterType::ListString => "a list of strings".to_owned(),
    })
}

/// A list of strings as its JSON string form.
pub(super) fn string_list_json(value: &Value) -> Option<String> {
    let items = value.as_array()?;
    let strings: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
    serde_json::to_string(&strings?).ok()
}

/// `kind` is `None` when the type is missing or wrong: the blocks are still
/// read, for their other problems.
fn read_options(block: &Reader, kind: Option<ParameterType>) -> Vec<ParameterOption> {
    let option_blocks = block.nested_all("option", OPTION_KEYS);
    if kind == Some(ParameterType::ListString)
        && let Some(first) = option_blocks.first()
    {
        first.problems.report(&first.loc, "a list(string) parameter cannot have options");
    }
    let mut options: Vec<ParameterOption> = Vec::new();
    for option in option_blocks {
        let name = option.required("name", Reader::string);
        let value = option.required("value", |o, key| match kind {
            Some(kind) => o.typed(key, |v| typed_value(kind, v)),
            // Evaluated for its own problems; nothing to compare it with.
            None => o.value(key).and(None),
        });
        let name = option.checked("name", name, |name| unique(options.iter().map(|o| &o.name), name, "option name"));
        let value =
            option.checked("value", value, |value| unique(options.iter().map(|o| &o.value), value, "option value"));
        options.push(ParameterOption {
            name: name.unwrap_or_default(),
            value: value.unwrap_or_default(),
            description: option.string("description").unwrap_or_default(),
            icon: option.string("icon").unwrap_or_default(),
        });
    }
    options
}

fn unique<'a>(mut earlier: impl Iterator<Item = &'a String>, this: &str, what: &str) -> Result<(), String> {
    match earlier.any(|e| e == this) {
        true => Err(format!("duplicate {what} {this:?}")),
        false => Ok(()),
    }
}

fn read_validation(block: &Reader, kind: Option<ParameterType>) -> Option<Validation> {
    let v = block.nested("validation", VALIDATION_KEYS)?;
    let only_for = |keys: &[&str], wanted: ParameterType| {
        let misplaced = kind.is_some_and(|kind| kind != wanted);
        for key in keys.iter().filter(|key| misplaced && v.has(key)) {
            let message = format!("{key} is only for {} parameters", wanted.as_str());
            v.report(key, message);
        }
    };
    only_for(&["min", "max"], ParameterType::Number);
    only_for(&["regex", "error"], ParameterType::String);

    let min = v.number("min");
    let max = v.number("max");
    let max = v.checked("max", max, |&max| match min {
        Some(min) if min > max => {
            Err(format!("the maximum {} is below the minimum {}", format_number(max), format_number(min)))
        }
        _ => Ok(()),
    });
    let regex = v.string("regex");
    let regex = v.checked("regex", regex, |regex| {
        whole_match(regex).map(drop).map_err(|e| format!("not a valid regular expression: {e}"))
    });
    // The error replaces the message for a value the regex rejects; alone it would never show.
    let error = v.string("error");
    if error.is_some() && !v.has("regex") && kind == Some(ParameterType::String) {
        v.report("error", "error needs a regex: it is shown when a value does not match it");
    }
    Some(Validation { min, max, regex, error })
}
