//! `preset "name" { ... }` blocks, with their prebuild pools and schedules.

use std::collections::BTreeMap;

use chrono_tz::Tz;
use hcl::Value;
use warmspace_prebuilds::schedule::Schedule;

use super::parameter::string_list_json;
use super::reader::{Key, Loc, Reader, expected_got, scalar_string};
use crate::model::{Parameter, PrebuildPolicy, Preset, ScheduleSpec, Scheduling};
use crate::values::canonical;

pub(super) const KEYS: &[Key] = &[
    Key::Attr("description"),
    Key::Attr("icon"),
    Key::Attr("default"),
    Key::Attr("parameters"),
    Key::Block("prebuilds"),
];

pub(super) const PREBUILDS_KEYS: &[Key] =
    &[Key::Attr("instances"), Key::Block("expiration_policy"), Key::Block("scheduling")];

pub(super) const EXPIRATION_KEYS: &[Key] = &[Key::Attr("ttl")];

pub(super) const SCHEDULING_KEYS: &[Key] = &[Key::Attr("timezone"), Key::Blocks("schedule")];

pub(super) const SCHEDULE_KEYS: &[Key] = &[Key::Attr("cron"), Key::Attr("instances")];

const MAX_DESCRIPTION: usize = 128;
const MAX_ICON: usize = 256;

/// `parameters` are those of [`super::parameter::read_all`]: a name with
/// `None` is declared but broken, and its values are not checked.
pub(super) fn read_all(top: &Reader, parameters: &[(String, Option<Parameter>)]) -> Vec<Preset> {
    let mut presets: Vec<Preset> = Vec::new();
    for (name, block) in top.labelled("preset", KEYS) {
        let preset = read(name, &block, parameters);
        // The first default preset wins; the problem is with any later one.
        if preset.default
            && let Some(first) = presets.iter().find(|p| p.default)
        {
            let message = format!("only one preset may be the default; preset \"{}\" already is", first.name);
            block.report("default", message);
        }
        presets.push(preset);
    }
    presets
}

fn read(name: String, block: &Reader, parameters: &[(String, Option<Parameter>)]) -> Preset {
    if name.trim().is_empty() {
        block.problems.report(&block.loc, "a preset needs a name");
    }
    Preset {
        name,
        description: limited(block, "description", MAX_DESCRIPTION),
        icon: limited(block, "icon", MAX_ICON),
        default: block.bool("default").unwrap_or(false),
        parameters: read_values(block, parameters),
        prebuilds: block.nested("prebuilds", PREBUILDS_KEYS).map(|p| read_prebuilds(&p)),
    }
}

fn limited(block: &Reader, key: &str, max: usize) -> String {
    let text = block.string(key);
    block
        .checked(key, text, |text| match text.chars().count() {
            n if n > max => Err(format!("must be at most {max} characters, not {n}")),
            _ => Ok(()),
        })
        .unwrap_or_default()
}

/// `parameters = { name = value, ... }`: each value must be acceptable for
/// the parameter it names, and is kept in its canonical string form.
fn read_values(block: &Reader, parameters: &[(String, Option<Parameter>)]) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    let Some((loc, value)) = block.value("parameters") else {
        return values;
    };
    let Value::Object(object) = &value else {
        let message = expected_got("an object of parameter values ({ name = value })", &value);
        block.problems.report(&loc, message);
        return values;
    };
    for (name, value) in object {
        if let Some(text) = read_value(block, &loc, name, value, parameters) {
            values.insert(name.clone(), text);
        }
    }
    values
}

fn read_value(
    block: &Reader,
    loc: &Loc,
    name: &str,
    value: &Value,
    parameters: &[(String, Option<Parameter>)],
) -> Option<String> {
    let report = |message: String| block.problems.report(loc, message);
    let Some((_, parameter)) = parameters.iter().find(|(declared, _)| declared == name) else {
        report(format!("unknown parameter {name:?}"));
        return None;
    };
    // Values may be written as strings, numbers, bools or lists of strings,
    // whatever the parameter's type: the check below is what decides.
    let Some(text) = scalar_string(value).or_else(|| string_list_json(value)) else {
        let expected = "a string, number, bool or list of strings";
        report(format!("parameter {name:?}: {}", expected_got(expected, value)));
        return None;
    };
    // A broken parameter has been reported already.
    let parameter = parameter.as_ref()?;
    match parameter.check_value(&text) {
        Ok(()) => Some(canonical(parameter.kind, &text)),
        Err(e) => {
            report(format!("parameter {name:?}: {e}"));
            None
        }
    }
}

fn read_prebuilds(prebuilds: &Reader) -> PrebuildPolicy {
    let expiration = prebuilds.nested("expiration_policy", EXPIRATION_KEYS);
    let scheduling = prebuilds.nested("scheduling", SCHEDULING_KEYS);
    PrebuildPolicy {
        instances: prebuilds.required("instances", Reader::count).unwrap_or(0),
        ttl_seconds: expiration.and_then(|e| e.required("ttl", Reader::seconds)),
        scheduling: scheduling.map(|s| read_scheduling(&s)),
    }
}

fn read_scheduling(scheduling: &Reader) -> Scheduling {
    let timezone = scheduling.required("timezone", Reader::string);
    let timezone = scheduling.checked("timezone", timezone, |zone| {
        zone.parse::<Tz>()
            .map(drop)
            .map_err(|_| format!("{zone:?} is not an IANA time zone name (such as America/New_York)"))
    });
    Scheduling { timezone: timezone.unwrap_or_default(), schedules: read_schedules(scheduling) }
}

fn read_schedules(scheduling: &Reader) -> Vec<ScheduleSpec> {
    let blocks = scheduling.nested_all("schedule", SCHEDULE_KEYS);
    if blocks.is_empty() {
        scheduling.problems.report(&scheduling.loc.end(), "at least one schedule block is required");
    }
    // Each schedule is compared with the earlier ones, so an overlap is
    // reported once, on the later schedule of the pair.
    let mut earlier: Vec<(usize, Schedule)> = Vec::new();
    let mut specs = Vec::new();
    for (n, block) in blocks.iter().enumerate() {
        let cron = block.required("cron", Reader::string);
        let instances = block.required("instances", Reader::count).unwrap_or(0);
        let Some(schedule) = cron.and_then(|cron| parse_cron(block, &cron)) else {
            specs.push(ScheduleSpec { cron: String::new(), instances });
            continue;
        };
        for (m, other) in earlier.iter().filter(|(_, other)| other.overlaps(&schedule)) {
            let message = format!(
                "{:?} overlaps schedule #{} ({:?}): no two schedules may cover the same minute",
                schedule.as_str(),
                m + 1,
                other.as_str()
            );
            block.report("cron", message);
        }
        specs.push(ScheduleSpec { cron: schedule.as_str().to_owned(), instances });
        earlier.push((n, schedule));
    }
    specs
}

fn parse_cron(block: &Reader, cron: &str) -> Option<Schedule> {
    Schedule::parse(cron).map_err(|e| block.report("cron", format!("{cron:?}: {e}"))).ok()
}
