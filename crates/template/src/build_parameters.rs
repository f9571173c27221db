//! Resolving the parameter values of a workspace build: every parameter of
//! the template version being built gets its value from the request, the
//! preset, the previous build or its default, and every value is checked
//! before any job is queued.

use std::collections::BTreeMap;

use crate::model::{Parameter, Transition};
use crate::values::canonical;

/// What a build's parameter values are resolved from.
#[derive(Debug, Clone, Copy)]
pub struct ParameterInput<'a> {
    /// Those of the template version being built.
    pub parameters: &'a [Parameter],
    /// The values of the workspace's latest build; `None` for its first build.
    pub previous: Option<&'a BTreeMap<String, String>>,
    /// The preset's name and values, when the build uses a preset.
    pub preset: Option<(&'a str, &'a BTreeMap<String, String>)>,
    /// The values given with the build request.
    pub requested: &'a BTreeMap<String, String>,
    pub transition: Transition,
}

/// Why one parameter (or one name in the request) has no acceptable value.
/// The message names the parameter, so it can be shown on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterProblem {
    pub parameter: String,
    pub message: String,
}

/// The values of a build: one per parameter of the version that has a value,
/// in canonical form (numbers shortest, lists compact JSON), so that later
/// builds can compare them as strings.
///
/// A `start` build takes, for each parameter, the requested value, else the
/// preset's, else the previous build's, else the default; a parameter with
/// none of these is a problem. A request may not contradict the preset, and
/// an immutable parameter may not change from its previous value (the same
/// number written differently is not a change).
///
/// `stop` and `delete` builds keep the previous values as they are; the
/// preset's value or the default only fill parameters the previous build did
/// not have, and a parameter with no value at all is left out. Their request
/// may repeat a value but not change it.
///
/// Values of the previous build for parameters the version no longer has are
/// dropped; requested names the version does not have are problems.
///
/// Every value kept, wherever it came from, must pass
/// [`Parameter::check_value`]. All problems are reported, at most one per
/// parameter, in the version's parameter order, then the unknown requested
/// names in sorted order.
pub fn resolve_parameters(input: &ParameterInput<'_>) -> Result<BTreeMap<String, String>, Vec<ParameterProblem>> {
    let mut values = BTreeMap::new();
    let mut problems = Vec::new();
    for parameter in input.parameters {
        match resolve_one(input, parameter) {
            Ok(Some(value)) => {
                values.insert(parameter.name.clone(), value);
            }
            Ok(None) => {}
            Err(message) => problems.push(ParameterProblem { parameter: parameter.name.clone(), message }),
        }
    }
    // `requested` is a `BTreeMap`, so these come out sorted.
    for name in input.requested.keys().filter(|name| !input.parameters.iter().any(|p| &p.name == *name)) {
        problems.push(ParameterProblem { parameter: name.clone(), message: format!("unknown parameter {name:?}") });
    }
    if problems.is_empty() { Ok(values) } else { Err(problems) }
}

/// Where a value came from, for the message when it fails its check.
#[derive(Clone, Copy)]
enum Source<'a> {
    Request,
    Preset(&'a str),
    Previous,
    Default,
}

impl Source<'_> {
    fn note(self) -> String {
        match self {
            Source::Request => String::new(),
            Source::Preset(preset) => format!(" (the value of preset {preset:?})"),
            Source::Previous => " (the value carried over from the previous build)".to_owned(),
            Source::Default => " (the default)".to_owned(),
        }
    }
}

/// The canonical value of one parameter, `None` when it has none (only on
/// `stop` and `delete`), or the message of its problem.
fn resolve_one(input: &ParameterInput<'_>, parameter: &Parameter) -> Result<Option<String>, String> {
    let name = parameter.name.as_str();
    let kind = parameter.kind;
    let requested = input.requested.get(name).map(String::as_str);
    let preset = input.preset.and_then(|(preset, values)| Some((preset, values.get(name)?.as_str())));
    let previous = input.previous.and_then(|values| values.get(name)).map(String::as_str);
    let default = parameter.default.as_deref();

    let from_request = requested.map(|value| (value, Source::Request));
    let from_preset = preset.map(|(preset, value)| (value, Source::Preset(preset)));
    let from_previous = previous.map(|value| (value, Source::Previous));
    let from_default = default.map(|value| (value, Source::Default));

    let chosen = match input.transition {
        Transition::Start => from_request.or(from_preset).or(from_previous).or(from_default),
        Transition::Stop | Transition::Delete => {
            let carried = from_previous.or(from_preset).or(from_default);
            let build = input.transition.as_str();
            match (requested, carried) {
                (Some(_), None) => return Err(format!("{name:?} cannot be given a value on a {build} build")),
                (Some(wanted), Some((kept, _))) if canonical(kind, wanted) != canonical(kind, kept) => {
                    let kept = canonical(kind, kept);
                    return Err(format!("{name:?} cannot change on a {build} build: it stays {kept:?}"));
                }
                _ => carried,
            }
        }
    };

    let Some((value, source)) = chosen else {
        return match input.transition {
            Transition::Start => Err(format!("{name:?} is required: it has no default, so a value must be given")),
            // Nothing that runs on stop or delete needs it.
            Transition::Stop | Transition::Delete => Ok(None),
        };
    };
    if let Err(e) = parameter.check_value(value) {
        return Err(format!("parameter {name:?}: {e}{}", source.note()));
    }
    let value = canonical(kind, value);

    if input.transition == Transition::Start
        && requested.is_some()
        && let Some((preset, fixed)) = preset
        && canonical(kind, fixed) != value
    {
        let fixed = canonical(kind, fixed);
        return Err(format!("{name:?} is set to {fixed:?} by preset {preset:?}: it cannot be {value:?}"));
    }
    if !parameter.mutable
        && let Some(previous) = previous
        && canonical(kind, previous) != value
    {
        return Err(format!("{name:?} is immutable: it cannot change from {previous:?} to {value:?}"));
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::model::{ParameterOption, ParameterType, Validation};

    fn parameter(name: &str, kind: ParameterType) -> Parameter {
        Parameter {
            name: name.into(),
            display_name: name.to_uppercase(),
            description: String::new(),
            kind,
            default: None,
            mutable: true,
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

    fn with_default(p: Parameter, default: &str) -> Parameter {
        Parameter { default: Some(default.into()), ..p }
    }

    fn immutable(p: Parameter) -> Parameter {
        Parameter { mutable: false, ..p }
    }

    /// `region`: immutable string, options us/eu, default us.
    fn region() -> Parameter {
        let p = parameter("region", ParameterType::String);
        immutable(with_default(Parameter { options: vec![option("us"), option("eu")], ..p }, "us"))
    }

    /// `cpus`: mutable number in 1..=16, default 2.
    fn cpus() -> Parameter {
        let validation = Validation { min: Some(1.0), max: Some(16.0), regex: None, error: None };
        with_default(Parameter { validation: Some(validation), ..parameter("cpus", ParameterType::Number) }, "2")
    }

    /// `project`: required string of lowercase letters.
    fn project() -> Parameter {
        let validation = Validation { min: None, max: None, regex: Some("[a-z]+".into()), error: None };
        Parameter { validation: Some(validation), ..parameter("project", ParameterType::String) }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    /// A builder over [`ParameterInput`]'s owned parts.
    struct Build {
        parameters: Vec<Parameter>,
        previous: Option<BTreeMap<String, String>>,
        preset: Option<(String, BTreeMap<String, String>)>,
        requested: BTreeMap<String, String>,
        transition: Transition,
    }

    fn build(parameters: Vec<Parameter>) -> Build {
        Build { parameters, previous: None, preset: None, requested: BTreeMap::new(), transition: Transition::Start }
    }

    impl Build {
        fn previous(mut self, pairs: &[(&str, &str)]) -> Self {
            self.previous = Some(map(pairs));
            self
        }

        fn preset(mut self, name: &str, pairs: &[(&str, &str)]) -> Self {
            self.preset = Some((name.into(), map(pairs)));
            self
        }

        fn request(mut self, pairs: &[(&str, &str)]) -> Self {
            self.requested = map(pairs);
            self
        }

        fn transition(mut self, transition: Transition) -> Self {
            self.transition = transition;
            self
        }

        fn resolve(&self) -> Result<BTreeMap<String, String>, Vec<ParameterProblem>> {
            resolve_parameters(&ParameterInput {
                parameters: &self.parameters,
                previous: self.previous.as_ref(),
                preset: self.preset.as_ref().map(|(name, values)| (name.as_str(), values)),
                requested: &self.requested,
                transition: self.transition,
            })
        }

        fn ok(&self) -> BTreeMap<String, String> {
            self.resolve().expect("should resolve")
        }

        /// The problems as (parameter, message) pairs.
        fn problems(&self) -> Vec<(String, String)> {
            let problems = self.resolve().expect_err("should not resolve");
            problems.into_iter().map(|p| (p.parameter, p.message)).collect()
        }

        /// The message of the only problem, which must be about `parameter`.
        fn problem(&self, parameter: &str) -> String {
            let problems = self.problems();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].0, parameter);
            problems[0].1.clone()
        }
    }

    fn problem(parameter: &str, message: &str) -> (String, String) {
        (parameter.to_owned(), message.to_owned())
    }

    #[test]
    fn unknown_names_are_refused() {
        let b = build(vec![cpus()]).request(&[("gpus", "1")]);
        assert_eq!(b.problem("gpus"), r#"unknown parameter "gpus""#);
        // Also on stop and delete.
        let b = b.previous(&[("cpus", "2")]).transition(Transition::Stop);
        assert_eq!(b.problem("gpus"), r#"unknown parameter "gpus""#);
    }

    #[test]
    fn type_errors() {
        let b = build(vec![cpus()]).request(&[("cpus", "many")]);
        assert_eq!(b.problem("cpus"), r#"parameter "cpus": "many" is not a number"#);
        let b = build(vec![with_default(parameter("gpu", ParameterType::Bool), "false")]).request(&[("gpu", "yes")]);
        assert_eq!(b.problem("gpu"), r#"parameter "gpu": "yes" is not a bool (true or false)"#);
    }

    #[test]
    fn option_errors() {
        let b = build(vec![region()]).request(&[("region", "ap")]);
        assert_eq!(b.problem("region"), r#"parameter "region": "ap" is not one of the options: us, eu"#);
    }

    #[test]
    fn validation_errors() {
        let b = build(vec![cpus()]).request(&[("cpus", "32")]);
        assert_eq!(b.problem("cpus"), r#"parameter "cpus": 32 is above the maximum 16"#);
        let b = build(vec![project()]).request(&[("project", "Web1")]);
        assert_eq!(b.problem("project"), r#"parameter "project": "Web1" does not match the pattern [a-z]+"#);
    }

    #[test]
    fn carried_over_values_are_checked_too() {
        // The new version no longer offers "ap".
        let b = build(vec![region()]).previous(&[("region", "ap")]);
        assert_eq!(
            b.problem("region"),
            r#"parameter "region": "ap" is not one of the options: us, eu (the value carried over from the previous build)"#
        );
    }

    #[test]
    fn a_required_value_must_be_given_on_the_first_start() {
        let b = build(vec![project(), cpus()]);
        assert_eq!(b.problem("project"), r#""project" is required: it has no default, so a value must be given"#);
        let b = b.request(&[("project", "web")]);
        assert_eq!(b.ok(), map(&[("cpus", "2"), ("project", "web")]));
    }

    #[test]
    fn defaults_are_used() {
        assert_eq!(build(vec![region(), cpus()]).ok(), map(&[("cpus", "2"), ("region", "us")]));
    }

    #[test]
    fn previous_values_carry_over() {
        let b =
            build(vec![region(), cpus(), project()]).previous(&[("region", "eu"), ("cpus", "4"), ("project", "web")]);
        assert_eq!(b.ok(), map(&[("cpus", "4"), ("project", "web"), ("region", "eu")]));
    }

    #[test]
    fn mutable_values_may_change() {
        let b = build(vec![region(), cpus()]).previous(&[("region", "eu"), ("cpus", "4")]).request(&[("cpus", "8")]);
        assert_eq!(b.ok(), map(&[("cpus", "8"), ("region", "eu")]));
    }

    #[test]
    fn immutable_values_may_not_change() {
        let b = build(vec![region(), cpus()]).previous(&[("region", "us"), ("cpus", "4")]).request(&[("region", "eu")]);
        assert_eq!(b.problem("region"), r#""region" is immutable: it cannot change from "us" to "eu""#);
    }

    #[test]
    fn repeating_an_immutable_value_is_not_a_change() {
        let b = build(vec![region()]).previous(&[("region", "us")]).request(&[("region", "us")]);
        assert_eq!(b.ok(), map(&[("region", "us")]));

        let size = immutable(with_default(parameter("size", ParameterType::Number), "1"));
        let b = build(vec![size.clone()]).previous(&[("size", "2")]).request(&[("size", "2.0")]);
        assert_eq!(b.ok(), map(&[("size", "2")]), "stored in canonical form");
        let b = build(vec![size.clone()]).previous(&[("size", "2.0")]).request(&[("size", "2")]);
        assert_eq!(b.ok(), map(&[("size", "2")]));
        let b = build(vec![size]).previous(&[("size", "2")]).request(&[("size", "2.5")]);
        assert_eq!(b.problem("size"), r#""size" is immutable: it cannot change from "2" to "2.5""#);

        let tags = immutable(parameter("tags", ParameterType::ListString));
        let b = build(vec![tags]).previous(&[("tags", r#"["a","b"]"#)]).request(&[("tags", r#"[ "a", "b" ]"#)]);
        assert_eq!(b.ok(), map(&[("tags", r#"["a","b"]"#)]));
    }

    #[test]
    fn presets_fix_values() {
        let b = build(vec![region(), cpus(), project()]).preset("eu-large", &[("region", "eu"), ("cpus", "8")]);
        let b = b.request(&[("project", "web")]);
        assert_eq!(b.ok(), map(&[("cpus", "8"), ("project", "web"), ("region", "eu")]));
        // Repeating the preset's value, however written, is fine.
        let b = b.request(&[("project", "web"), ("cpus", "8.0"), ("region", "eu")]);
        assert_eq!(b.ok(), map(&[("cpus", "8"), ("project", "web"), ("region", "eu")]));
        // A preset's value replaces a mutable previous value.
        let b = b.request(&[]).previous(&[("region", "eu"), ("cpus", "2"), ("project", "web")]);
        assert_eq!(b.ok(), map(&[("cpus", "8"), ("project", "web"), ("region", "eu")]));
        // But not an immutable one.
        let b = b.previous(&[("region", "us"), ("cpus", "2"), ("project", "web")]);
        assert_eq!(b.problem("region"), r#""region" is immutable: it cannot change from "us" to "eu""#);
    }

    #[test]
    fn requests_may_not_contradict_the_preset() {
        let b = build(vec![region(), cpus()]).preset("eu-large", &[("region", "eu"), ("cpus", "8")]);
        let b = b.request(&[("cpus", "4")]);
        assert_eq!(b.problem("cpus"), r#""cpus" is set to "8" by preset "eu-large": it cannot be "4""#);
    }

    #[test]
    fn a_new_version_may_add_a_parameter_with_a_default() {
        let b = build(vec![region(), cpus()]).previous(&[("region", "eu")]);
        assert_eq!(b.ok(), map(&[("cpus", "2"), ("region", "eu")]));
        // An immutable parameter new in this version may be given any value.
        let b = b.previous(&[("cpus", "4")]).request(&[("region", "eu")]);
        assert_eq!(b.ok(), map(&[("cpus", "4"), ("region", "eu")]));
        // A new required parameter needs a value.
        let b = build(vec![region(), project()]).previous(&[("region", "eu")]);
        assert_eq!(b.problem("project"), r#""project" is required: it has no default, so a value must be given"#);
    }

    #[test]
    fn values_of_removed_parameters_are_dropped() {
        let b = build(vec![cpus()]).previous(&[("region", "eu"), ("cpus", "4")]);
        assert_eq!(b.ok(), map(&[("cpus", "4")]));
        let b = b.transition(Transition::Delete);
        assert_eq!(b.ok(), map(&[("cpus", "4")]));
    }

    #[test]
    fn stop_and_delete_keep_the_previous_values() {
        for transition in [Transition::Stop, Transition::Delete] {
            let b = build(vec![region(), cpus()]).previous(&[("region", "eu"), ("cpus", "4")]).transition(transition);
            assert_eq!(b.ok(), map(&[("cpus", "4"), ("region", "eu")]));
            // Repeating a value is fine.
            let b = b.request(&[("cpus", "4.0")]);
            assert_eq!(b.ok(), map(&[("cpus", "4"), ("region", "eu")]));
            // Changing one, even a mutable one, is not.
            let b = b.request(&[("cpus", "8")]);
            let message = format!(r#""cpus" cannot change on a {} build: it stays "4""#, transition.as_str());
            assert_eq!(b.problem("cpus"), message);
            // The previous values win over the preset's.
            let b = b.request(&[]).preset("eu-large", &[("region", "eu"), ("cpus", "8")]);
            assert_eq!(b.ok(), map(&[("cpus", "4"), ("region", "eu")]));
        }
    }

    #[test]
    fn stop_and_delete_need_no_required_value() {
        for transition in [Transition::Stop, Transition::Delete] {
            let b = build(vec![cpus(), project()]).previous(&[("cpus", "4")]).transition(transition);
            assert_eq!(b.ok(), map(&[("cpus", "4")]));
            let b = b.request(&[("project", "web")]);
            let message = format!(r#""project" cannot be given a value on a {} build"#, transition.as_str());
            assert_eq!(b.problem("project"), message);
        }
    }

    #[test]
    fn every_problem_is_reported_in_parameter_order() {
        let b = build(vec![region(), cpus(), project()]).previous(&[("region", "us"), ("cpus", "4")]).request(&[
            ("zzz", "1"),
            ("cpus", "0"),
            ("aaa", "1"),
            ("region", "eu"),
        ]);
        assert_eq!(
            b.problems(),
            vec![
                problem("region", r#""region" is immutable: it cannot change from "us" to "eu""#),
                problem("cpus", r#"parameter "cpus": 0 is below the minimum 1"#),
                problem("project", r#""project" is required: it has no default, so a value must be given"#),
                problem("aaa", r#"unknown parameter "aaa""#),
                problem("zzz", r#"unknown parameter "zzz""#),
            ]
        );
    }

    // Property tests over versions drawn from a small catalog of parameters,
    // each with values it accepts (in several spellings) and values it refuses.

    struct Kind {
        parameter: Parameter,
        valid: &'static [&'static str],
        invalid: &'static [&'static str],
    }

    fn catalog(n: usize) -> Kind {
        use ParameterType::*;
        let (parameter, valid, invalid): (_, &[&str], &[&str]) = match n % 7 {
            0 => (region(), &["us", "eu"], &["ap", "US"]),
            1 => (project(), &["a", "web", "api"], &["Web", "a1", ""]),
            2 => (parameter("", String), &["", "x", "a b", "2.0"], &[]),
            3 => (cpus(), &["1", "1.0", "2", "2.50", "16", "1e1"], &["0", "-0e0", "17", "x", "inf"]),
            4 => {
                let p = Parameter { options: vec![option("2"), option("4")], ..parameter("", Number) };
                (p, &["2", "2.0", "4", "4.000"], &["3", "two"])
            }
            5 => (parameter("", Bool), &["true", "false"], &["yes", "True", ""]),
            _ => (parameter("", ListString), &["[]", r#"["a"]"#, r#"[ "a" ]"#, r#"["a","b"]"#], &["a", "[1]"]),
        };
        Kind { parameter, valid, invalid }
    }

    /// A version's parameter: (catalog entry, mutable, default as an index of a valid value).
    fn spec() -> impl Strategy<Value = (usize, bool, Option<usize>)> {
        (0..7usize, any::<bool>(), proptest::option::of(0..8usize))
    }

    fn version(specs: &[(usize, bool, Option<usize>)]) -> Vec<(Parameter, Kind)> {
        specs
            .iter()
            .enumerate()
            .map(|(i, &(entry, mutable, default))| {
                let kind = catalog(entry);
                let default = default.map(|d| kind.valid[d % kind.valid.len()].to_owned());
                let parameter = Parameter { name: format!("p{i}"), mutable, default, ..kind.parameter.clone() };
                (parameter, kind)
            })
            .collect()
    }

    /// A value for a parameter: valid (mostly) or invalid, by index.
    #[derive(Debug, Clone, Copy)]
    enum Choice {
        Valid(usize),
        Invalid(usize),
    }

    fn choice() -> impl Strategy<Value = Choice> {
        prop_oneof![4 => (0..8usize).prop_map(Choice::Valid), 1 => (0..8usize).prop_map(Choice::Invalid)]
    }

    fn pick(kind: &Kind, choice: Choice) -> String {
        match choice {
            Choice::Invalid(i) if !kind.invalid.is_empty() => kind.invalid[i % kind.invalid.len()],
            Choice::Valid(i) | Choice::Invalid(i) => kind.valid[i % kind.valid.len()],
        }
        .to_owned()
    }

    /// Values for the version's parameters (by position) plus names it does not have.
    fn values(
        version: &[(Parameter, Kind)],
        choices: &[Option<Choice>],
        extra: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut values = extra.clone();
        for ((parameter, kind), choice) in version.iter().zip(choices) {
            if let Some(choice) = choice {
                values.insert(parameter.name.clone(), pick(kind, *choice));
            }
        }
        values
    }

    fn extra_names() -> impl Strategy<Value = BTreeMap<String, String>> {
        proptest::collection::btree_map("[q-z]", "[a-z0-9]{0,3}", 0..3)
    }

    fn transition() -> impl Strategy<Value = Transition> {
        proptest::sample::select(Transition::ALL.to_vec())
    }

    /// The same value, spelled differently where the type allows it.
    fn respell(kind: ParameterType, value: &str) -> String {
        match kind {
            ParameterType::Number => format!("{:.3}", value.parse::<f64>().unwrap()),
            ParameterType::ListString => {
                serde_json::to_string_pretty(&serde_json::from_str::<Vec<String>>(value).unwrap()).unwrap()
            }
            ParameterType::String | ParameterType::Bool => value.to_owned(),
        }
    }

    fn canonical_of(version: &[(Parameter, Kind)], values: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        version.iter().filter_map(|(p, _)| Some((p.name.clone(), canonical(p.kind, values.get(&p.name)?)))).collect()
    }

    proptest! {
        #[test]
        fn repeating_the_previous_values_changes_nothing(
            specs in proptest::collection::vec(spec(), 1..6),
            previous in proptest::collection::vec(0..8usize, 6),
            repeat in proptest::collection::vec((any::<bool>(), any::<bool>()), 6),
            removed in extra_names(),
        ) {
            let version = version(&specs);
            let choices: Vec<_> = previous.iter().map(|&i| Some(Choice::Valid(i))).collect();
            let previous = values(&version, &choices, &removed);
            let mut requested = BTreeMap::new();
            for ((p, _), &(repeated, respelled)) in version.iter().zip(&repeat) {
                if repeated {
                    let value = &previous[&p.name];
                    let value = if respelled { respell(p.kind, value) } else { value.clone() };
                    requested.insert(p.name.clone(), value);
                }
            }
            let parameters: Vec<Parameter> = version.iter().map(|(p, _)| p.clone()).collect();
            let input = ParameterInput {
                parameters: &parameters,
                previous: Some(&previous),
                preset: None,
                requested: &requested,
                transition: Transition::Start,
            };
            prop_assert_eq!(resolve_parameters(&input), Ok(canonical_of(&version, &previous)));
        }

        #[test]
        fn resolved_values_are_valid_and_keep_immutable_values(
            specs in proptest::collection::vec(spec(), 1..6),
            previous in proptest::option::of((proptest::collection::vec(proptest::option::of(choice()), 6), extra_names())),
            preset in proptest::option::of(proptest::collection::vec(proptest::option::of(0..8usize), 6)),
            requested in proptest::collection::vec(proptest::option::weighted(0.3, choice()), 6),
            unknown in proptest::option::weighted(0.2, extra_names()),
            transition in transition(),
        ) {
            let version = version(&specs);
            let previous = previous.map(|(choices, removed)| values(&version, &choices, &removed));
            let preset = preset.map(|choices| {
                let choices: Vec<_> = choices.iter().map(|c| c.map(Choice::Valid)).collect();
                values(&version, &choices, &BTreeMap::new())
            });
            let requested = values(&version, &requested, &unknown.unwrap_or_default());
            let parameters: Vec<Parameter> = version.iter().map(|(p, _)| p.clone()).collect();
            let input = ParameterInput {
                parameters: &parameters,
                previous: previous.as_ref(),
                preset: preset.as_ref().map(|values| ("preset", values)),
                requested: &requested,
                transition,
            };
            match resolve_parameters(&input) {
                Ok(resolved) => {
                    prop_assert!(resolved.keys().all(|name| parameters.iter().any(|p| &p.name == name)));
                    prop_assert!(requested.keys().all(|name| parameters.iter().any(|p| &p.name == name)));
                    for p in &parameters {
                        let value = resolved.get(&p.name);
                        let before = previous.as_ref().and_then(|values| values.get(&p.name));
                        if let Some(value) = value {
                            prop_assert_eq!(p.check_value(value), Ok(()));
                            prop_assert_eq!(value, &canonical(p.kind, value), "stored canonical");
                        } else {
                            prop_assert!(transition != Transition::Start, "{} has no value on start", p.name);
                        }
                        if let Some(before) = before
                            && (!p.mutable || transition != Transition::Start)
                        {
                            prop_assert_eq!(value, Some(&canonical(p.kind, before)), "{} changed", p.name);
                        }
                        if let Some(wanted) = requested.get(&p.name) {
                            prop_assert_eq!(value, Some(&canonical(p.kind, wanted)), "{} not as requested", p.name);
                        }
                    }
                    // Idempotent: resolving again from the result gives the result.
                    let again = ParameterInput { previous: Some(&resolved), requested: &BTreeMap::new(), ..input };
                    prop_assert_eq!(resolve_parameters(&again), Ok(resolved.clone()));
                }
                Err(problems) => {
                    prop_assert!(!problems.is_empty());
                    // In the version's order, then unknown names sorted, at most one each.
                    let position = |name: &str| match parameters.iter().position(|p| p.name == name) {
                        Some(i) => (0, i, String::new()),
                        None => (1, 0, name.to_owned()),
                    };
                    let positions: Vec<_> = problems.iter().map(|p| position(&p.parameter)).collect();
                    prop_assert!(positions.windows(2).all(|w| w[0] < w[1]), "{:?}", problems);
                }
            }
        }
    }
}
