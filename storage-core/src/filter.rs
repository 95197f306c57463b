//! `FilterSpec`: which archive entries an import or export keeps, and how it renames them.
//!
//! The rules are the port layer's:
//! - the longest matching inclusion or exclusion wins, and a tie goes to inclusion;
//! - the empty path matches everything; with no rule at all, everything is included;
//! - filtering looks at the entry's original name, then `strip` is removed from the front,
//!   then `rebase` is put in front.
//!
//! Unlike the port layer, matching is by path component: excluding `a/b` excludes `a/b` and
//! `a/b/c`, but leaves `a/bc` alone.

use std::collections::BTreeSet;

/// Inclusions, exclusions, and the strip/rebase rewrite of entry names.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FilterSpec {
    /// Paths whose subtrees are included.
    pub inclusions: BTreeSet<String>,
    /// Paths whose subtrees are excluded.
    pub exclusions: BTreeSet<String>,
    /// A prefix put in front of every kept name (after stripping).
    pub rebase: String,
    /// A prefix removed from the front of every kept name that starts with it.
    pub strip: String,
}

/// Splits a path into its components, dropping empty and `.` ones and leading `/`.
fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// How many components `rule` has if it is a component-wise prefix of `path`.
fn match_len(rule: &[&str], path: &[&str]) -> Option<usize> {
    (rule.len() <= path.len() && rule == &path[..rule.len()]).then_some(rule.len())
}

impl FilterSpec {
    /// A spec that keeps everything unchanged.
    pub fn all() -> Self {
        Self::default()
    }

    /// True when the spec keeps every entry under its own name.
    pub fn is_identity(&self) -> bool {
        self.inclusions.is_empty()
            && self.exclusions.is_empty()
            && components(&self.rebase).is_empty()
            && components(&self.strip).is_empty()
    }

    fn longest(rules: &BTreeSet<String>, path: &[&str]) -> Option<usize> {
        rules
            .iter()
            .filter_map(|r| match_len(&components(r), path))
            .max()
    }

    /// True when the entry with this original name is kept.
    pub fn includes(&self, path: &str) -> bool {
        let path = components(path);
        match (
            Self::longest(&self.inclusions, &path),
            Self::longest(&self.exclusions, &path),
        ) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(inc), Some(exc)) => inc >= exc,
        }
    }

    /// True when some entry below `dir` could be kept, so a walk must descend into it even
    /// when `dir` itself is excluded (an inclusion deeper than the exclusion).
    pub fn may_include_below(&self, dir: &str) -> bool {
        if self.includes(dir) {
            return true;
        }
        let dir = components(dir);
        self.inclusions.iter().any(|r| {
            let r = components(r);
            r.len() > dir.len() && r[..dir.len()] == dir[..]
        })
    }

    /// The entry's new name when it is kept (strip, then rebase), or `None` when it is
    /// filtered out. The result has no leading `/` and no trailing `/`; the empty string
    /// names the root.
    pub fn apply(&self, path: &str) -> Option<String> {
        if !self.includes(path) {
            return None;
        }
        let comps = components(path);
        let strip = components(&self.strip);
        let rest = match match_len(&strip, &comps) {
            Some(n) => &comps[n..],
            None => &comps[..],
        };
        let mut out = components(&self.rebase);
        out.extend_from_slice(rest);
        Some(out.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(inc: &[&str], exc: &[&str]) -> FilterSpec {
        FilterSpec {
            inclusions: inc.iter().map(|s| s.to_string()).collect(),
            exclusions: exc.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn filterspec_table_of_inclusion_rules() {
        // (inclusions, exclusions, path, included?)
        let table: &[(&[&str], &[&str], &str, bool)] = &[
            (&[], &[], "anything/at/all", true),
            (&[], &[""], "a", false),
            (&[""], &[""], "a", true), // tie goes to inclusion
            (&[], &["a/b"], "a/b", false),
            (&[], &["a/b"], "a/b/c", false),
            (&[], &["a/b"], "a/bc", true), // by component, not by string prefix
            (&[], &["a/b"], "a", true),
            (&["a/b/keep"], &["a/b"], "a/b/keep/x", true), // longest wins
            (&["a/b/keep"], &["a/b"], "a/b/other", false),
            (&["a"], &["a/b"], "a/b/c", false),
            (&["a/b"], &["a/b"], "a/b/c", true),
            (&[""], &["etc"], "etc/passwd", false),
            (&[""], &["etc"], "usr/bin", true),
            (&[], &["/etc/"], "./etc/passwd", false), // slashes and dots normalised
        ];
        for (inc, exc, path, want) in table {
            assert_eq!(
                spec(inc, exc).includes(path),
                *want,
                "inc={inc:?} exc={exc:?} path={path}"
            );
        }
    }

    #[test]
    fn filterspec_strips_then_rebases_after_filtering_on_the_original_name() {
        let mut s = spec(&[], &["data/skip"]);
        s.strip = "data".into();
        s.rebase = "vol/root".into();
        assert_eq!(s.apply("data/x/y").as_deref(), Some("vol/root/x/y"));
        assert_eq!(s.apply("data/skip/y"), None); // filtered on the original name
        assert_eq!(s.apply("other/z").as_deref(), Some("vol/root/other/z"));
        assert_eq!(s.apply("data").as_deref(), Some("vol/root"));
        assert_eq!(s.apply("database").as_deref(), Some("vol/root/database"));
        let identity = FilterSpec::all();
        assert!(identity.is_identity());
        assert_eq!(identity.apply("./a/b/").as_deref(), Some("a/b"));
    }

    #[test]
    fn walks_descend_into_excluded_dirs_with_deeper_inclusions() {
        let s = spec(&["a/b/keep"], &["a"]);
        assert!(s.may_include_below("a"));
        assert!(s.may_include_below("a/b"));
        assert!(!s.may_include_below("a/c"));
    }
}
