//! Where the two roots are: the persistent one (configuration) and the run one
//! (everything else).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::error::{Result, SandboxError};

/// The two directories a [`SandboxStore`](super::SandboxStore) keeps sandboxes under.
/// Each sandbox is `<root>/<sandbox>/`, each container `<root>/<sandbox>/<container>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// Persistent root: the Configuration items, which survive a reboot.
    pub persistent: PathBuf,
    /// Run root: every other item, the item locks and the raw files; it should be on
    /// tmpfs, so that nothing in it outlives a boot.
    pub run: PathBuf,
}

impl Roots {
    /// The persistent root of a store run as root.
    pub const SYSTEM_PERSISTENT: &'static str = "/var/lib/strata/sbs";
    /// The run root of a store run as root.
    pub const SYSTEM_RUN: &'static str = "/run/strata/sbs";

    /// Two explicit roots (tests use temporary directories).
    pub fn new(persistent: impl Into<PathBuf>, run: impl Into<PathBuf>) -> Self {
        Roots {
            persistent: persistent.into(),
            run: run.into(),
        }
    }

    /// The system roots under `/var/lib` and `/run`.
    pub fn system() -> Self {
        Roots::new(Self::SYSTEM_PERSISTENT, Self::SYSTEM_RUN)
    }

    /// The roots for the effective user: [`Roots::system`] for root, [`Roots::rootless`]
    /// from the environment for anyone else.
    pub fn for_current_user() -> Result<Self> {
        let uid = rustix::process::geteuid().as_raw();
        if uid == 0 {
            return Ok(Roots::system());
        }
        let passwd_home = || {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
                .ok()
                .flatten()
                .map(|u| u.dir)
        };
        Roots::rootless(uid, |name| std::env::var_os(name), passwd_home)
    }

    /// The roots of a non-root user `uid`, from XDG variables read through `env`:
    /// - run root: `$XDG_RUNTIME_DIR/strata/sbs`, else `/run/user/<uid>/strata/sbs`
    ///   (where systemd-logind puts `XDG_RUNTIME_DIR`);
    /// - persistent root: `$XDG_DATA_HOME/strata/sbs`, else
    ///   `$HOME/.local/share/strata/sbs`, else the same under `passwd_home()`.
    ///
    /// As the XDG specification says, empty and relative values are ignored.
    pub fn rootless(
        uid: u32,
        env: impl Fn(&str) -> Option<OsString>,
        passwd_home: impl FnOnce() -> Option<PathBuf>,
    ) -> Result<Self> {
        let absolute = |name: &str| env(name).map(PathBuf::from).filter(|p| p.is_absolute());
        let run = absolute("XDG_RUNTIME_DIR")
            .unwrap_or_else(|| Path::new("/run/user").join(uid.to_string()))
            .join("strata/sbs");
        let data_home = absolute("XDG_DATA_HOME")
            .or_else(|| absolute("HOME").map(|h| h.join(".local/share")))
            .or_else(|| {
                passwd_home()
                    .filter(|p| p.is_absolute())
                    .map(|h| h.join(".local/share"))
            })
            .ok_or_else(|| SandboxError::NoDefaultRoot {
                which: "persistent",
                reason: format!(
                    "user {uid} has no absolute XDG_DATA_HOME or HOME and no home directory \
                     in the user database"
                ),
            })?;
        Ok(Roots {
            persistent: data_home.join("strata/sbs"),
            run,
        })
    }
}
