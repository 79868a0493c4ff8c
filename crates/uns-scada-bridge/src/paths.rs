//! Collision-free `_tag` paths for the metrics of one birth.
//!
//! A metric's tag path is its name split at `/` with each part slugged ([`crate::bridge::tag_path`]),
//! so names that differ only by case or punctuation (`Speed`, `speed`, `SPEED`, `Temp 1`, `temp-1`)
//! land on the same path. Merging them would silently mix two signals on one topic, so within one
//! birth (one node's own metrics, or one device's) the rule is:
//!
//! 1. Names whose paths differ keep their plain path.
//! 2. Of the names that share a path, one keeps it: the name that already reads like the path
//!    (`speed` for `speed`, `Motor/speed` does not), else the first in byte order (`SPEED` before
//!    `Speed` before `speed`).
//! 3. Every other name of the group gets its last path part suffixed with `-` and the 8 hex digits
//!    of the FNV-1a hash of its exact name (`Speed` → `speed-0a6b8020`), so its topic depends only
//!    on its own name. The part is cut to 55 characters first, so it stays a valid segment.
//! 4. Should a suffixed path be taken already (by another name's plain path), `-2`, `-3`, ... is
//!    appended until it is free.
//!
//! Each such group is reported on the location's `_errors` (kind `tag_collision`) with every name
//! and the path it got, at every birth that contains it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use uns_model::topic::{Id, TagPath};

use crate::bridge::tag_path;

/// The longest part that still takes a `-xxxxxxxx` suffix within a 64-character segment.
const MAX_SUFFIXED_PART: usize = 55;

/// Names of one birth that share a tag path, and what each got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Collision {
    /// The path they all slug to.
    pub(crate) path: TagPath,
    /// The name that keeps `path`.
    pub(crate) owner: Arc<str>,
    /// The other names, in byte order, with the path each was given.
    pub(crate) moved: Vec<(Arc<str>, TagPath)>,
}

impl Collision {
    /// A sentence for `_errors`.
    pub(crate) fn reason(&self) -> String {
        let mut names: Vec<String> = vec![format!("{:?}", &*self.owner)];
        names.extend(self.moved.iter().map(|(name, _)| format!("{:?}", &**name)));
        let moved: Vec<String> = self
            .moved
            .iter()
            .map(|(name, path)| format!("{:?} on _tag/{path}", &**name))
            .collect();
        format!(
            "metric names {} all map to _tag/{}: {:?} keeps it, {} (names that differ only by case \
             or punctuation are kept apart, see the bridge's tag path rule)",
            names.join(", "),
            self.path,
            &*self.owner,
            moved.join(", ")
        )
    }
}

/// The paths of `names` (one birth's metric names, duplicates ignored) that differ from their plain
/// [`tag_path`], and the collisions behind them.
pub(crate) fn assign(names: &[Arc<str>]) -> (HashMap<Arc<str>, TagPath>, Vec<Collision>) {
    let mut groups: HashMap<TagPath, Vec<&Arc<str>>> = HashMap::with_capacity(names.len());
    let mut seen: HashSet<&str> = HashSet::with_capacity(names.len());
    for name in names {
        if seen.insert(name) {
            groups.entry(tag_path(name)).or_default().push(name);
        }
    }
    let mut collided: Vec<(TagPath, Vec<&Arc<str>>)> = groups
        .iter()
        .filter(|(_, group)| group.len() > 1)
        .map(|(path, group)| (path.clone(), group.clone()))
        .collect();
    if collided.is_empty() {
        return (HashMap::new(), Vec::new());
    }
    collided.sort_by_cached_key(|(path, _)| path.to_string());
    let mut taken: HashSet<TagPath> = groups.into_keys().collect();
    let mut overrides = HashMap::new();
    let mut collisions = Vec::with_capacity(collided.len());
    for (path, mut group) in collided {
        group.sort();
        let plain = path.to_string();
        let owner_idx = group.iter().position(|name| ***name == *plain).unwrap_or(0);
        let owner = group.remove(owner_idx).clone();
        let mut moved = Vec::with_capacity(group.len());
        for name in group {
            let mut candidate = suffixed(&path, name, None);
            let mut n = 2_u32;
            while taken.contains(&candidate) {
                candidate = suffixed(&path, name, Some(n));
                n += 1;
            }
            taken.insert(candidate.clone());
            overrides.insert(name.clone(), candidate.clone());
            moved.push((name.clone(), candidate));
        }
        collisions.push(Collision { path, owner, moved });
    }
    (overrides, collisions)
}

/// `path` with its last part suffixed by the hash of `name` (and `-n`).
fn suffixed(path: &TagPath, name: &str, n: Option<u32>) -> TagPath {
    let mut parts = path.parts().to_vec();
    let hash = fnv1a(name);
    let n_suffix = n.map(|n| format!("-{n}")).unwrap_or_default();
    if let Some(last) = parts.last_mut() {
        let keep = MAX_SUFFIXED_PART.saturating_sub(n_suffix.len());
        // Slugs are ASCII, so any byte index is a char boundary.
        let head = last.as_str();
        let head = head[..head.len().min(keep)].trim_end_matches('-');
        let text = format!("{head}-{hash:08x}{n_suffix}");
        // `head` starts like a valid id and the suffix is [a-z0-9-]; the fallback is the hash alone.
        *last = Id::new(&text)
            .or_else(|_| Id::new(&format!("x-{hash:08x}{n_suffix}")))
            .unwrap_or_else(|_| last.clone());
    }
    TagPath::new(parts).unwrap_or_else(|| path.clone())
}

/// FNV-1a, 32 bits: stable across runs and platforms (the suffix is part of a topic).
fn fnv1a(text: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in text.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<Arc<str>> {
        list.iter().map(|name| Arc::from(*name)).collect()
    }

    fn path_of(overrides: &HashMap<Arc<str>, TagPath>, name: &str) -> String {
        overrides
            .get(name)
            .map_or_else(|| tag_path(name).to_string(), ToString::to_string)
    }

    #[test]
    fn case_variants_are_kept_apart_and_the_lowercase_name_keeps_the_path() {
        let list = names(&["Speed", "speed", "SPEED", "Temperature"]);
        let (overrides, collisions) = assign(&list);
        assert_eq!(path_of(&overrides, "speed"), "speed");
        assert_eq!(path_of(&overrides, "Temperature"), "temperature");
        let speed = path_of(&overrides, "Speed");
        let upper = path_of(&overrides, "SPEED");
        assert_eq!(speed, format!("speed-{:08x}", fnv1a("Speed")));
        assert_eq!(upper, format!("speed-{:08x}", fnv1a("SPEED")));
        assert_ne!(speed, upper);
        assert_eq!(collisions.len(), 1);
        assert_eq!(&*collisions[0].owner, "speed");
        let reason = collisions[0].reason();
        assert!(reason.contains("\"SPEED\" on _tag/speed-"), "{reason}");
    }

    #[test]
    fn the_rule_does_not_depend_on_order_and_every_path_is_distinct() {
        let forward = names(&[
            "Motor/Speed",
            "MOTOR/SPEED",
            "Temp 1",
            "temp-1",
            "motor/SPEED",
        ]);
        let mut backward = forward.clone();
        backward.reverse();
        let (a, _) = assign(&forward);
        let (b, _) = assign(&backward);
        assert_eq!(a, b);
        let paths: HashSet<String> = forward.iter().map(|name| path_of(&a, name)).collect();
        assert_eq!(paths.len(), forward.len());
        // No name reads like `motor/speed`: the first in byte order keeps it.
        assert_eq!(path_of(&a, "MOTOR/SPEED"), "motor/speed");
        // `temp-1` reads like its path and keeps it.
        assert_eq!(path_of(&a, "temp-1"), "temp-1");
        assert_eq!(
            path_of(&a, "Temp 1"),
            format!("temp-1-{:08x}", fnv1a("Temp 1"))
        );
    }

    #[test]
    fn a_suffixed_path_that_is_taken_gets_a_number_and_long_parts_stay_valid() {
        let clash = format!("speed-{:08x}", fnv1a("Speed"));
        let list = names(&["Speed", "speed", &clash]);
        let (overrides, _) = assign(&list);
        assert_eq!(path_of(&overrides, &clash), clash);
        assert_eq!(path_of(&overrides, "Speed"), format!("{clash}-2"));
        let long = "A".repeat(80);
        let list = names(&[&long, &long.to_lowercase()]);
        let (overrides, _) = assign(&list);
        let paths: HashSet<String> = list.iter().map(|name| path_of(&overrides, name)).collect();
        assert_eq!(paths.len(), 2);
    }

    #[test]
    fn no_collisions_no_overrides() {
        let (overrides, collisions) = assign(&names(&["a", "b", "a"]));
        assert!(overrides.is_empty() && collisions.is_empty());
    }
}
