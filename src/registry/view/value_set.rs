//! A set of `bytes32` values laid out for the common case: most apps allow one compose hash and
//! one device, so one value is held inline (no allocation), a few in one exact-size sorted slice,
//! and only a large set pays for a hash table.

use std::collections::HashSet;

use super::Bytes32;

/// Above this many values a set is hashed: a sorted slice's insert moves every later value, which
/// would make a permissionless app's thousands of entries quadratic to build.
const SORTED_MAX: usize = 16;

/// A set of `bytes32` values (40 bytes inline). Membership never depends on the representation,
/// which only follows the size.
#[derive(Clone, Debug, Default)]
pub(crate) enum ValueSet {
    /// No values.
    #[default]
    Empty,
    /// Exactly one value.
    One(Bytes32),
    /// 2 to [`SORTED_MAX`] values, sorted, in an allocation of exactly their size.
    Sorted(Box<[Bytes32]>),
    /// More than [`SORTED_MAX`] values (or, after removals, more than half of it). SipHash with a
    /// random key, as values in permissionless apps are attacker-chosen.
    // Boxed: a `HashSet` inline (48 bytes) would grow every set, and so every app, by 16 bytes.
    #[allow(clippy::box_collection)]
    Hashed(Box<HashSet<Bytes32>>),
}

impl ValueSet {
    /// Whether `value` is in the set.
    pub(crate) fn contains(&self, value: &Bytes32) -> bool {
        match self {
            ValueSet::Empty => false,
            ValueSet::One(one) => one == value,
            ValueSet::Sorted(values) => values.binary_search(value).is_ok(),
            ValueSet::Hashed(values) => values.contains(value),
        }
    }

    /// Adds `value`; returns whether it was absent.
    pub(crate) fn insert(&mut self, value: Bytes32) -> bool {
        match self {
            ValueSet::Empty => *self = ValueSet::One(value),
            ValueSet::One(one) => {
                if *one == value {
                    return false;
                }
                let pair = if *one < value {
                    [*one, value]
                } else {
                    [value, *one]
                };
                *self = ValueSet::Sorted(Box::new(pair));
            }
            ValueSet::Sorted(values) => {
                let Err(at) = values.binary_search(&value) else {
                    return false;
                };
                let mut grown = Vec::with_capacity(values.len() + 1);
                grown.extend_from_slice(&values[..at]);
                grown.push(value);
                grown.extend_from_slice(&values[at..]);
                *self = if grown.len() > SORTED_MAX {
                    ValueSet::Hashed(Box::new(grown.into_iter().collect()))
                } else {
                    ValueSet::Sorted(grown.into_boxed_slice())
                };
            }
            ValueSet::Hashed(values) => return values.insert(value),
        }
        true
    }

    /// Removes `value`; returns whether it was present.
    pub(crate) fn remove(&mut self, value: &Bytes32) -> bool {
        match self {
            ValueSet::Empty => return false,
            ValueSet::One(one) => {
                if one != value {
                    return false;
                }
                *self = ValueSet::Empty;
            }
            ValueSet::Sorted(values) => {
                let Ok(at) = values.binary_search(value) else {
                    return false;
                };
                *self = match values.len() {
                    // A sorted set holds at least two values.
                    2 => ValueSet::One(values[1 - at]),
                    _ => {
                        let mut shrunk = values.to_vec();
                        shrunk.remove(at);
                        ValueSet::Sorted(shrunk.into_boxed_slice())
                    }
                };
            }
            ValueSet::Hashed(values) => {
                if !values.remove(value) {
                    return false;
                }
                // Back to sorted only well below the threshold, so a set hovering at it does
                // not convert on every change.
                if values.len() <= SORTED_MAX / 2 {
                    let mut sorted: Vec<Bytes32> = values.iter().copied().collect();
                    sorted.sort_unstable();
                    *self = ValueSet::Sorted(sorted.into_boxed_slice());
                }
            }
        }
        true
    }

    /// The values (sorted unless hashed).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Bytes32> + '_ {
        let (slice, hashed): (&[Bytes32], Option<&HashSet<Bytes32>>) = match self {
            ValueSet::Empty => (&[], None),
            ValueSet::One(one) => (std::slice::from_ref(one), None),
            ValueSet::Sorted(values) => (values, None),
            ValueSet::Hashed(values) => (&[], Some(values)),
        };
        slice.iter().chain(hashed.into_iter().flatten())
    }

    /// Gives a hashed set's unused capacity back.
    pub(crate) fn shrink_to_fit(&mut self) {
        if let ValueSet::Hashed(values) = self {
            values.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(i: u32) -> Bytes32 {
        let mut out = [0; 32];
        out[28..].copy_from_slice(&i.to_be_bytes());
        out
    }

    fn sorted(set: &ValueSet) -> Vec<Bytes32> {
        let mut values: Vec<Bytes32> = set.iter().copied().collect();
        values.sort_unstable();
        values
    }

    #[test]
    fn one_value_is_held_inline() {
        assert_eq!(std::mem::size_of::<ValueSet>(), 40);
        let mut set = ValueSet::default();
        assert!(!set.remove(&value(1)));
        assert!(set.insert(value(1)));
        assert!(matches!(set, ValueSet::One(_)));
        assert!(!set.insert(value(1)));
        assert!(set.contains(&value(1)));
        assert!(!set.contains(&value(2)));
        assert!(!set.remove(&value(2)));
        assert!(set.remove(&value(1)));
        assert!(matches!(set, ValueSet::Empty));
        assert_eq!(set.iter().count(), 0);
    }

    #[test]
    fn growing_and_shrinking_through_every_representation_keeps_membership() {
        let mut set = ValueSet::default();
        // Descending, so every insert lands before the values already there.
        for i in (0..100).rev() {
            assert!(set.insert(value(i)), "{i}");
            assert!(!set.insert(value(i)), "{i}");
            let len = set.iter().count();
            assert_eq!(len, usize::try_from(100 - i).unwrap());
            let kind_ok = match len {
                1 => matches!(set, ValueSet::One(_)),
                2..=SORTED_MAX => matches!(set, ValueSet::Sorted(_)),
                _ => matches!(set, ValueSet::Hashed(_)),
            };
            assert!(kind_ok, "{len} values: {set:?}");
        }
        assert_eq!(sorted(&set), (0..100).map(value).collect::<Vec<_>>());
        for i in 0..100 {
            assert!(set.remove(&value(i)), "{i}");
            assert!(!set.remove(&value(i)), "{i}");
            assert!(!set.contains(&value(i)));
            assert_eq!(sorted(&set), (i + 1..100).map(value).collect::<Vec<_>>());
        }
        assert!(matches!(set, ValueSet::Empty));
    }

    #[test]
    fn the_order_of_changes_does_not_change_the_set() {
        let values: Vec<Bytes32> = (0..40).map(|i| value(i * 7919 % 1000)).collect();
        let mut forward = ValueSet::default();
        let mut backward = ValueSet::default();
        for v in &values {
            forward.insert(*v);
        }
        for v in values.iter().rev() {
            backward.insert(*v);
        }
        assert_eq!(sorted(&forward), sorted(&backward));
        for v in values.iter().step_by(3) {
            forward.remove(v);
        }
        for v in values
            .iter()
            .rev()
            .filter(|v| values.iter().step_by(3).any(|x| x == *v))
        {
            backward.remove(v);
        }
        assert_eq!(sorted(&forward), sorted(&backward));
        for v in &values {
            assert_eq!(forward.contains(v), backward.contains(v));
        }
    }
}
