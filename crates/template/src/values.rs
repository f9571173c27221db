//! Checking one parameter value (in its string form, see [`Parameter`])
//! against the parameter's type, options and validation. Used for preset
//! values at parse time and for build requests later, so the messages are
//! written for the person who typed the value.

use crate::model::{Parameter, ParameterType, Validation};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("{0:?} is not a number")]
    NotANumber(String),
    #[error("{0:?} is not a bool (true or false)")]
    NotABool(String),
    #[error("{0:?} is not a list of strings (a JSON array such as [\"a\",\"b\"])")]
    NotAList(String),
    #[error("{value:?} is not one of the options: {}", .options.join(", "))]
    NotAnOption { value: String, options: Vec<String> },
    #[error("{value} is below the minimum {min}")]
    BelowMinimum { value: String, min: String },
    #[error("{value} is above the maximum {max}")]
    AboveMaximum { value: String, max: String },
    #[error("{value:?} does not match the pattern {regex}")]
    NoMatch { value: String, regex: String },
    /// The template's own message (`validation { error = "..." }`), shown
    /// instead of the generic one when a value fails the validation.
    #[error("{0}")]
    Custom(String),
    /// Only possible for a [`Parameter`] built by hand: a parsed manifest's
    /// patterns always compile.
    #[error("the validation pattern {regex:?} is not a valid regular expression: {message}")]
    BadPattern { regex: String, message: String },
}

impl Parameter {
    /// Checks one value (in the string form described on [`Parameter`])
    /// against the parameter's type, options and validation.
    pub fn check_value(&self, value: &str) -> Result<(), ValueError> {
        let number = parse_typed(self.kind, value)?;
        self.check_options(value, number)?;
        match &self.validation {
            Some(validation) => check_validation(validation, value, number),
            None => Ok(()),
        }
    }

    /// The canonical form of a value (`2.0` → `2`), for comparing values as
    /// the parameter's type means them. Values that do not parse stay as given.
    pub fn canonical(&self, value: &str) -> String {
        canonical(self.kind, value)
    }

    /// True when the parameter has no default.
    pub fn required(&self) -> bool {
        self.default.is_none()
    }

    fn check_options(&self, value: &str, number: Option<f64>) -> Result<(), ValueError> {
        if self.options.is_empty() {
            return Ok(());
        }
        // Numbers compare by value, so "2.0" picks the option "2".
        let same = |option: &str| match number {
            Some(n) => option.parse::<f64>() == Ok(n),
            None => option == value,
        };
        if self.options.iter().any(|o| same(&o.value)) {
            return Ok(());
        }
        Err(ValueError::NotAnOption {
            value: value.to_owned(),
            options: self.options.iter().map(|o| o.value.clone()).collect(),
        })
    }
}

/// Checks that `value` is of type `kind`; for numbers also returns the number.
fn parse_typed(kind: ParameterType, value: &str) -> Result<Option<f64>, ValueError> {
    match kind {
        ParameterType::String => Ok(None),
        ParameterType::Number => parse_number(value).map(Some).ok_or_else(|| ValueError::NotANumber(value.to_owned())),
        ParameterType::Bool => match value {
            "true" | "false" => Ok(None),
            _ => Err(ValueError::NotABool(value.to_owned())),
        },
        ParameterType::ListString => {
            parse_list(value).map(|_| None).ok_or_else(|| ValueError::NotAList(value.to_owned()))
        }
    }
}

fn check_validation(validation: &Validation, value: &str, number: Option<f64>) -> Result<(), ValueError> {
    let failure = match number {
        Some(n) => check_bounds(validation, value, n),
        None => check_pattern(validation, value)?,
    };
    match (failure, &validation.error) {
        (None, _) => Ok(()),
        (Some(_), Some(custom)) => Err(ValueError::Custom(custom.clone())),
        (Some(generic), None) => Err(generic),
    }
}

fn check_bounds(validation: &Validation, value: &str, n: f64) -> Option<ValueError> {
    if let Some(min) = validation.min.filter(|&min| n < min) {
        return Some(ValueError::BelowMinimum { value: value.to_owned(), min: format_number(min) });
    }
    if let Some(max) = validation.max.filter(|&max| n > max) {
        return Some(ValueError::AboveMaximum { value: value.to_owned(), max: format_number(max) });
    }
    None
}

/// `Err` when the pattern itself is broken (not the value's fault), `Ok(Some)`
/// when the value does not match.
fn check_pattern(validation: &Validation, value: &str) -> Result<Option<ValueError>, ValueError> {
    let Some(regex) = &validation.regex else {
        return Ok(None);
    };
    let matched = whole_match(regex)
        .map_err(|e| ValueError::BadPattern { regex: regex.clone(), message: e.to_string() })?
        .is_match(value);
    Ok((!matched).then(|| ValueError::NoMatch { value: value.to_owned(), regex: regex.clone() }))
}

/// The pattern must match the whole value, not just part of it.
pub(crate) fn whole_match(regex: &str) -> Result<regex::Regex, regex::Error> {
    // Compiling the pattern alone first makes its errors point at what the
    // author wrote rather than at our anchoring group.
    regex::Regex::new(regex)?;
    regex::Regex::new(&format!("^(?:{regex})$"))
}

/// A finite decimal number ("2", "-2.5", "1e3"); not "inf" or "NaN", which
/// Rust's parser would otherwise accept.
pub(crate) fn parse_number(value: &str) -> Option<f64> {
    value.parse::<f64>().ok().filter(|n| n.is_finite())
}

pub(crate) fn parse_list(value: &str) -> Option<Vec<String>> {
    serde_json::from_str(value).ok()
}

/// The shortest decimal form: `2`, not `2.0`; `2.5`.
pub(crate) fn format_number(n: f64) -> String {
    // `f64`'s `Display` is already the shortest form that reads back
    // exactly, and prints whole numbers without a fraction; only -0 needs care.
    if n == 0.0 { "0".to_owned() } else { n.to_string() }
}

/// The canonical string form of a value that has passed
/// [`Parameter::check_value`]: numbers in shortest form, lists as compact JSON.
pub(crate) fn canonical(kind: ParameterType, value: &str) -> String {
    match kind {
        ParameterType::Number => parse_number(value).map(format_number),
        ParameterType::ListString => parse_list(value).and_then(|list| serde_json::to_string(&list).ok()),
        ParameterType::String | ParameterType::Bool => None,
    }
    .unwrap_or_else(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ParameterOption;
    use proptest::prelude::*;

    fn parameter(kind: ParameterType) -> Parameter {
        Parameter {
            name: "p".into(),
            display_name: "P".into(),
            description: String::new(),
            kind,
            default: None,
            mutable: false,
            options: Vec::new(),
            validation: None,
        }
    }

    fn option(value: &str) -> ParameterOption {
        ParameterOption {
            name: value.to_uppercase(),
            value: value.into(),
            description: String::new(),
            icon: String::new(),
        }
    }

    fn bounded(min: Option<f64>, max: Option<f64>) -> Parameter {
        let validation = Validation { min, max, regex: None, error: None };
        Parameter { validation: Some(validation), ..parameter(ParameterType::Number) }
    }

    fn message(p: &Parameter, value: &str) -> String {
        p.check_value(value).unwrap_err().to_string()
    }

    #[test]
    fn types() {
        let number = parameter(ParameterType::Number);
        assert_eq!(number.check_value("2"), Ok(()));
        assert_eq!(number.check_value("-2.5"), Ok(()));
        assert_eq!(message(&number, "x"), r#""x" is not a number"#);
        assert!(number.check_value("inf").is_err());
        assert!(number.check_value("NaN").is_err());
        assert!(number.check_value(" 2").is_err());

        let boolean = parameter(ParameterType::Bool);
        assert_eq!(boolean.check_value("true"), Ok(()));
        assert_eq!(boolean.check_value("false"), Ok(()));
        assert_eq!(message(&boolean, "yes"), r#""yes" is not a bool (true or false)"#);

        let list = parameter(ParameterType::ListString);
        assert_eq!(list.check_value(r#"["a","b"]"#), Ok(()));
        assert_eq!(list.check_value("[]"), Ok(()));
        assert!(list.check_value("[1]").is_err());
        assert!(list.check_value("a,b").is_err());

        assert_eq!(parameter(ParameterType::String).check_value("anything"), Ok(()));
    }

    #[test]
    fn options() {
        let mut region = parameter(ParameterType::String);
        region.options = vec![option("us"), option("eu")];
        assert_eq!(region.check_value("eu"), Ok(()));
        assert_eq!(message(&region, "eu-north"), r#""eu-north" is not one of the options: us, eu"#);

        let mut cpus = parameter(ParameterType::Number);
        cpus.options = vec![option("2"), option("4")];
        assert_eq!(cpus.check_value("2.0"), Ok(()), "numbers compare by value");
        assert!(cpus.check_value("3").is_err());
    }

    #[test]
    fn bounds_and_custom_error() {
        let p = bounded(Some(1.0), Some(4.0));
        assert_eq!(message(&p, "5"), "5 is above the maximum 4");
        assert_eq!(message(&p, "0.5"), "0.5 is below the minimum 1");
        assert_eq!(p.check_value("4.0"), Ok(()));

        let mut custom = p.clone();
        custom.validation.as_mut().unwrap().error = Some("between 1 and 4 CPUs".into());
        assert_eq!(message(&custom, "5"), "between 1 and 4 CPUs");
        // The custom message is for validation failures; a type error stays specific.
        assert_eq!(message(&custom, "x"), r#""x" is not a number"#);
    }

    #[test]
    fn patterns_match_the_whole_value() {
        let mut p = parameter(ParameterType::String);
        let validation = Validation { min: None, max: None, regex: Some("[a-z]+".into()), error: None };
        p.validation = Some(validation);
        assert_eq!(p.check_value("abc"), Ok(()));
        assert_eq!(message(&p, "abc1"), r#""abc1" does not match the pattern [a-z]+"#);
        p.validation.as_mut().unwrap().regex = Some("a|b".into());
        assert_eq!(p.check_value("b"), Ok(()), "alternation is anchored as a whole");
        assert!(p.check_value("ab").is_err());
        p.validation.as_mut().unwrap().regex = Some("(".into());
        assert!(matches!(p.check_value("x"), Err(ValueError::BadPattern { .. })));
    }

    #[test]
    fn required_means_no_default() {
        let mut p = parameter(ParameterType::String);
        assert!(p.required());
        p.default = Some(String::new());
        assert!(!p.required());
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(format_number(2.0), "2");
        assert_eq!(format_number(2.5), "2.5");
        assert_eq!(format_number(-0.0), "0");
        assert_eq!(canonical(ParameterType::Number, "2.0"), "2");
        assert_eq!(canonical(ParameterType::ListString, r#"[ "a", "b" ]"#), r#"["a","b"]"#);
        assert_eq!(canonical(ParameterType::String, "2.0"), "2.0");
    }

    /// Whole and half numbers in a small range, so that bounds are hit exactly.
    fn small_number() -> impl Strategy<Value = f64> {
        (-40i32..40).prop_map(|halves| f64::from(halves) / 2.0)
    }

    proptest! {
        #[test]
        fn accepts_exactly_the_values_within_bounds(
            a in small_number(), b in small_number(), value in small_number(),
            has_min: bool, has_max: bool,
        ) {
            let (min, max) = (a.min(b), a.max(b));
            let p = bounded(has_min.then_some(min), has_max.then_some(max));
            let inside = (!has_min || value >= min) && (!has_max || value <= max);
            prop_assert_eq!(p.check_value(&format_number(value)).is_ok(), inside);
            // The same number written with a trailing ".0" or as "2.50" is the same value.
            prop_assert_eq!(p.check_value(&format!("{value:.2}")).is_ok(), inside);
        }

        #[test]
        fn format_number_reads_back_exactly(n in -1e12f64..1e12) {
            let text = format_number(n);
            prop_assert_eq!(parse_number(&text), Some(n));
            prop_assert!(!text.ends_with(".0"));
        }
    }
}
