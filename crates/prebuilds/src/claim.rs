//! Which preset a create request claims from when it names none: the one
//! whose every parameter value the request repeats (DESIGN §5.2).

use std::collections::BTreeMap;

use uuid::Uuid;

/// A preset's values, canonical (see the template crate's `Parameter::canonical`).
#[derive(Debug, Clone)]
pub struct PresetValues<'a> {
    pub id: Uuid,
    pub values: &'a BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetMatch {
    /// Every value of this preset appears in the request, equal.
    Matched(Uuid),
    /// No preset matches, but the request names every parameter of this one
    /// and repeats some of its values: the preset it came closest to.
    Mismatch(Uuid),
    NoPreset,
}

/// The preset a request (canonical values) matches: the one with the most
/// parameters among those whose every value the request repeats; on a tie,
/// the first in the manifest (the order given). Failing that, the closest
/// preset the request names every parameter of: the most equal values, then
/// the fewest different ones, then the first in the manifest — so a miss is
/// charged to the pool the request was nearly asking for.
pub fn match_preset(presets: &[PresetValues<'_>], requested: &BTreeMap<String, String>) -> PresetMatch {
    let equal = |p: &PresetValues| p.values.iter().filter(|(name, value)| requested.get(*name) == Some(*value)).count();
    let repeats = |p: &PresetValues| equal(p) == p.values.len();
    let names_all = |p: &PresetValues| p.values.keys().all(|name| requested.contains_key(name));
    // `max_by_key` keeps the last of equals; walking in reverse makes it the first.
    let matched = presets.iter().rev().filter(|p| repeats(p)).max_by_key(|p| p.values.len());
    if let Some(preset) = matched {
        return PresetMatch::Matched(preset.id);
    }
    let closest = presets
        .iter()
        .rev()
        .filter(|p| names_all(p) && equal(p) > 0)
        .max_by_key(|p| (equal(p), std::cmp::Reverse(p.values.len() - equal(p))));
    match closest {
        Some(preset) => PresetMatch::Mismatch(preset.id),
        None => PresetMatch::NoPreset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
    }

    #[test]
    fn the_most_specific_matching_preset_wins() {
        let (small, large, any) = (map(&[("region", "us"), ("cpus", "2")]), map(&[("region", "us")]), map(&[]));
        let presets = [
            PresetValues { id: Uuid::from_u128(1), values: &large },
            PresetValues { id: Uuid::from_u128(2), values: &small },
        ];
        let request = map(&[("region", "us"), ("cpus", "2"), ("editor", "vim")]);
        assert_eq!(match_preset(&presets, &request), PresetMatch::Matched(Uuid::from_u128(2)));
        assert_eq!(match_preset(&presets, &map(&[("region", "us")])), PresetMatch::Matched(Uuid::from_u128(1)));
        // One value off: close to `small`, but `large` still matches.
        assert_eq!(
            match_preset(&presets, &map(&[("region", "us"), ("cpus", "4")])),
            PresetMatch::Matched(Uuid::from_u128(1))
        );
        assert_eq!(
            match_preset(&presets, &map(&[("region", "eu"), ("cpus", "2")])),
            PresetMatch::Mismatch(Uuid::from_u128(2))
        );
        assert_eq!(match_preset(&presets, &map(&[("cpus", "2")])), PresetMatch::NoPreset);
        // Nothing in common with any preset: not close to one.
        assert_eq!(match_preset(&presets[1..], &map(&[("region", "eu"), ("cpus", "8")])), PresetMatch::NoPreset);
        // A preset without parameters matches anything, last resort.
        let with_any = [PresetValues { id: Uuid::from_u128(3), values: &any }, presets[1].clone()];
        assert_eq!(match_preset(&with_any, &map(&[("cpus", "2")])), PresetMatch::Matched(Uuid::from_u128(3)));
    }

    #[test]
    fn a_mismatch_is_charged_to_the_closest_preset_not_the_first() {
        let (us, eu) = (map(&[("region", "us"), ("cpus", "2")]), map(&[("region", "eu"), ("cpus", "4")]));
        let presets = [
            PresetValues { id: Uuid::from_u128(1), values: &us },
            PresetValues { id: Uuid::from_u128(2), values: &eu },
        ];
        // One value equal to `eu`'s, none to `us`'s.
        assert_eq!(
            match_preset(&presets, &map(&[("region", "eu"), ("cpus", "8")])),
            PresetMatch::Mismatch(Uuid::from_u128(2))
        );
        // As close to both: the first in the manifest.
        assert_eq!(
            match_preset(&presets, &map(&[("region", "eu"), ("cpus", "2")])),
            PresetMatch::Mismatch(Uuid::from_u128(1))
        );
    }

    fn values() -> impl Strategy<Value = BTreeMap<String, String>> {
        proptest::collection::btree_map(
            proptest::sample::select(vec!["a", "b", "c", "d"]).prop_map(str::to_owned),
            proptest::sample::select(vec!["1", "2"]).prop_map(str::to_owned),
            0..4,
        )
    }

    proptest! {
        #[test]
        fn a_match_is_repeated_and_maximal(presets in proptest::collection::vec(values(), 0..5), request in values()) {
            let list: Vec<PresetValues> = presets
                .iter()
                .enumerate()
                .map(|(i, values)| PresetValues { id: Uuid::from_u128(i as u128), values })
                .collect();
            let repeated = |v: &BTreeMap<String, String>| v.iter().all(|(k, x)| request.get(k) == Some(x));
            let equal = |v: &BTreeMap<String, String>| v.iter().filter(|(k, x)| request.get(*k) == Some(*x)).count();
            match match_preset(&list, &request) {
                PresetMatch::Matched(id) => {
                    let chosen = &presets[id.as_u128() as usize];
                    prop_assert!(repeated(chosen));
                    for (i, other) in presets.iter().enumerate() {
                        if repeated(other) {
                            prop_assert!(other.len() < chosen.len() || (other.len() == chosen.len() && i >= id.as_u128() as usize));
                        }
                    }
                }
                PresetMatch::Mismatch(id) => {
                    prop_assert!(presets.iter().all(|p| !repeated(p)));
                    let chosen = &presets[id.as_u128() as usize];
                    prop_assert!(chosen.keys().all(|k| request.contains_key(k)));
                    // The closest: no preset the request also names in full has more equal values.
                    prop_assert!(equal(chosen) > 0);
                    for other in presets.iter().filter(|p| p.keys().all(|k| request.contains_key(k))) {
                        prop_assert!(equal(other) <= equal(chosen), "{other:?} is closer than {chosen:?}");
                    }
                }
                PresetMatch::NoPreset => {
                    prop_assert!(presets.iter().all(|p| !repeated(p)));
                    prop_assert!(presets.iter().all(|p| !p.keys().all(|k| request.contains_key(k)) || equal(p) == 0));
                }
            }
        }
    }
}
