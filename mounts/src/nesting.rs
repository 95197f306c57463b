//! Planning the overlay for a chain of lower directories: a chain deeper than one mount
//! takes has its bottom nested into read-only groups, each mounted once and stacked as a
//! single lower.
//!
//! Groups are cut from the bottom of the chain, all of one size (what one mount of such
//! lowers takes) but the topmost, which may hold only what is left above the others. So a
//! group named for its topmost lower holds the same lowers in every chain that reaches
//! it: a layer and every layer or container above it share their groups.

use std::path::{Path, PathBuf};

use storage_core::{Error, Result};

use crate::overlay::{MountApi, Stack};

/// One lower directory of a chain to stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lower {
    /// The name a nested group topped by this lower goes by (a layer's id): a single
    /// path component, the same in every chain the lower is part of.
    pub name: String,
    /// The directory.
    pub path: PathBuf,
}

/// What [`nest`] plans: the groups to mount first and the stack to mount on them.
#[derive(Debug)]
pub(crate) struct Nested {
    /// Read-only groups, bottom first, each with the name of its topmost lower; group
    /// `name` is mounted at `<group_dir>/<name>`.
    pub groups: Vec<(String, Stack)>,
    /// The stack of the mount itself: the lowers left above the groups, then the groups.
    pub stack: Stack,
}

/// Plans the mount of `lowers` (topmost first) with `upper` (`None`: read-only), nesting
/// bottom groups under `group_dir` until one mount takes what is left. `empty` is an
/// empty directory, the lower a stack with too few of them gets: overlay mounts
/// read-only with two lowers at least, read-write with one.
pub(crate) fn nest(
    api: MountApi,
    mut lowers: Vec<Lower>,
    upper: Option<(PathBuf, PathBuf)>,
    empty: &Path,
    group_dir: &Path,
) -> Result<Nested> {
    let depth = lowers.len();
    // Links of additional stores may be longer than this store's own. The size depends
    // on the lowers alone, never on the upper, so a read-only and a read-write mount of
    // the same chain cut the same groups.
    let path_len = lowers
        .iter()
        .map(|l| l.path.as_os_str().len())
        .max()
        .unwrap_or(0);
    let size = api.max_lowers(path_len);
    let mut groups: Vec<(String, Stack)> = Vec::new();
    loop {
        let mut stack = Stack {
            lowers: lowers
                .iter()
                .map(|l| l.path.clone())
                .chain(groups.iter().rev().map(|(name, _)| group_dir.join(name)))
                .collect(),
            upper: upper.clone(),
        };
        if api.takes(&stack) {
            if stack.lowers.len() < 2 && (stack.upper.is_none() || stack.lowers.is_empty()) {
                stack.lowers.push(empty.to_owned());
            }
            return Ok(Nested { groups, stack });
        }
        if lowers.len() < 2 {
            return Err(Error::Unsupported {
                what: format!("an overlay of a chain of {depth} lowers"),
                reason: format!(
                    "one mount takes {size} of them here, and groups of {size} nested once \
                     do not bring the chain down to that"
                ),
            });
        }
        let group = lowers.split_off(lowers.len() - size.min(lowers.len()));
        let name = group.first().map(|l| l.name.clone()).unwrap_or_default();
        groups.push((
            name,
            Stack {
                lowers: group.into_iter().map(|l| l.path).collect(),
                upper: None,
            },
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize, dir: &str) -> Vec<Lower> {
        (0..n)
            .map(|i| Lower {
                name: format!("{:064x}", n - i),
                path: PathBuf::from(format!("{dir}/{:026}", n - i)),
            })
            .collect()
    }

    fn rw() -> Option<(PathBuf, PathBuf)> {
        Some(("/store/top/diff".into(), "/store/top/work".into()))
    }

    fn plan(api: MountApi, lowers: Vec<Lower>, upper: Option<(PathBuf, PathBuf)>) -> Nested {
        nest(
            api,
            lowers,
            upper,
            Path::new("/empty"),
            Path::new("/run/nest"),
        )
        .unwrap()
    }

    #[test]
    fn a_chain_one_mount_takes_is_not_nested() {
        let lowers = chain(500, "/l");
        let n = plan(MountApi::LowerdirPlus, lowers.clone(), rw());
        assert!(n.groups.is_empty());
        let paths: Vec<_> = lowers.into_iter().map(|l| l.path).collect();
        assert_eq!(n.stack.lowers, paths);
        assert_eq!(n.stack.upper, rw());
    }

    #[test]
    fn a_1200_chain_nests_two_bottom_aligned_groups_of_500() {
        let lowers = chain(1200, "/l");
        let n = plan(MountApi::LowerdirPlus, lowers.clone(), rw());
        assert_eq!(n.groups.len(), 2);
        let (bottom, bottom_stack) = &n.groups[0];
        assert_eq!(bottom, &lowers[700].name);
        assert_eq!(bottom_stack.lowers.len(), 500);
        assert_eq!(bottom_stack.lowers[499], lowers[1199].path);
        assert!(bottom_stack.upper.is_none());
        assert_eq!(n.groups[1].0, lowers[200].name);
        // The 200 lowers left, then the upper group, then the bottom one.
        assert_eq!(n.stack.lowers.len(), 202);
        assert_eq!(n.stack.lowers[199], lowers[199].path);
        assert_eq!(
            n.stack.lowers[200],
            Path::new("/run/nest").join(&lowers[200].name)
        );
        assert_eq!(
            n.stack.lowers[201],
            Path::new("/run/nest").join(&lowers[700].name)
        );
    }

    #[test]
    fn a_layer_and_the_one_above_it_share_their_groups() {
        let above = chain(1201, "/l");
        let below = above[1..].to_vec();
        let a = plan(MountApi::LowerdirPlus, above, rw());
        let b = plan(MountApi::LowerdirPlus, below, None);
        assert_eq!(a.groups.len(), 2);
        for (x, y) in a.groups.iter().zip(&b.groups) {
            assert_eq!(x.0, y.0);
            assert_eq!(x.1.lowers, y.1.lowers);
        }
    }

    #[test]
    fn stacks_with_too_few_lowers_get_the_empty_directory() {
        let one = chain(1, "/l");
        let n = plan(MountApi::LowerdirPlus, one.clone(), None);
        assert_eq!(n.stack.lowers, vec![one[0].path.clone(), "/empty".into()]);
        let n = plan(MountApi::LowerdirPlus, one.clone(), rw());
        assert_eq!(n.stack.lowers, vec![one[0].path.clone()]);
        let n = plan(MountApi::LowerdirPlus, Vec::new(), rw());
        assert_eq!(n.stack.lowers, vec![PathBuf::from("/empty")]);
    }

    #[test]
    fn mount_2_stacks_and_their_groups_fit_in_a_page_with_a_long_upper() {
        // Upper and work paths far longer than the lowers', and group targets too: 98
        // lowers of 39 bytes are what a page takes beside paths of 39, not of 118, and 97
        // of them need a group, of all 97.
        let long = "/var/lib/a-store-with-a-rather-long-root/overlay";
        let upper = Some((
            PathBuf::from(format!("{long}/{:064x}/diff", 1)),
            PathBuf::from(format!("{long}/{:064x}/work", 1)),
        ));
        for depth in [40, 90, 97, 98, 99, 100, 500, 1200] {
            let n = nest(
                MountApi::Legacy,
                chain(depth, "/s/overlay/l"),
                upper.clone(),
                Path::new("/empty"),
                Path::new("/run/strata/a-long-run-root/nest"),
            )
            .unwrap();
            assert!(MountApi::Legacy.takes(&n.stack), "depth {depth}");
            for (_, group) in &n.groups {
                assert!(MountApi::Legacy.takes(group), "depth {depth}");
            }
            let grouped: usize = n.groups.iter().map(|g| g.1.lowers.len()).sum();
            let left = n.stack.lowers.len() - n.groups.len();
            assert_eq!(left + grouped, depth, "depth {depth}");
            if depth == 97 {
                assert_eq!(n.groups.len(), 1);
                assert_eq!(n.groups[0].1.lowers.len(), 97);
                assert_eq!(n.stack.lowers.len(), 1);
            }
        }
    }

    #[test]
    fn a_chain_too_deep_to_nest_once_is_refused_not_a_panic() {
        // Paths so long that mount(2) takes two lowers: groups of two cannot help.
        let long = |c: &str, i: usize| PathBuf::from(format!("/{}{i}", c.repeat(1300)));
        let lowers: Vec<Lower> = (0..10)
            .map(|i| Lower {
                name: i.to_string(),
                path: long("x", i),
            })
            .collect();
        let planned = nest(
            MountApi::Legacy,
            lowers,
            None,
            Path::new("/empty"),
            &long("n", 0),
        );
        let Err(err) = planned else {
            panic!("ten lowers of 1,300 bytes were planned for mount(2)");
        };
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("10 lowers"), "{err}");
    }
}
