//! The NFS server the NFS tests and benchmarks run against: rpcbind, and nfs-ganesha on
//! 127.0.0.1 with non-default ports (`testkit::ganesha`, one private instance per test, so
//! a fault test can kill and restart its own).
//!
//! [`Servers::start`] starts rpcbind when it is not running, and checks that a Ganesha
//! instance starts and serves an export, cross-checked with libnfs's `nfs-ls` (an
//! independent client). Dropping [`Servers`] stops what it started, and kills any Ganesha
//! a test left behind (one whose test process died before its guard ran), by pid.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use testkit::ganesha::Ganesha;

/// What xtask started for the NFS tests; stopped on drop, also when the run fails.
pub struct Servers {
    rpcbind: Option<Child>,
}

fn rpcbind_answers() -> bool {
    Command::new("rpcinfo")
        .args(["-p", "127.0.0.1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Servers {
    /// Starts rpcbind if needed, then checks that a Ganesha serves an export.
    pub fn start() -> Result<Servers> {
        let mut servers = Servers { rpcbind: None };
        if !rpcbind_answers() {
            eprintln!("xtask: starting rpcbind");
            let child = Command::new("rpcbind")
                .args(["-f", "-w"])
                .stdin(Stdio::null())
                .spawn()
                .context("start rpcbind")?;
            servers.rpcbind = Some(child);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !rpcbind_answers() {
                if Instant::now() > deadline {
                    bail!("rpcbind did not answer within 10s");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let g = Ganesha::start(1000, 1000);
        std::fs::write(g.export_dir().join("xtask-probe"), b"probe")
            .context("write a probe file into the Ganesha export")?;
        let url = format!(
            "nfs://127.0.0.1{}?version=3&nfsport={}&mountport={}",
            g.export_dir().display(),
            g.nfs_port(),
            g.mount_port()
        );
        let out = Command::new("nfs-ls")
            .arg(&url)
            .output()
            .context("run nfs-ls")?;
        let listing = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !listing.contains("xtask-probe") {
            bail!(
                "nfs-ls {url} did not list the probe file: {}{}",
                listing,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        eprintln!(
            "xtask: nfs-ganesha serves NFSv3 on 127.0.0.1:{} (checked with nfs-ls)",
            g.nfs_port()
        );
        Ok(servers)
    }
}

/// Kills every ganesha.nfsd whose configuration lies in a testkit instance directory
/// (`<tmp>/ganesha-*/ganesha.conf`): those are ours, and their test is over.
fn kill_stray_ganeshas() {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    let tmp = std::env::temp_dir();
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let ours = args.first().is_some_and(|a| a.ends_with("ganesha.nfsd"))
            && args.iter().any(|a| {
                let path = Path::new(a);
                path.file_name().is_some_and(|n| n == "ganesha.conf")
                    && path.parent().and_then(Path::parent) == Some(tmp.as_path())
                    && path
                        .parent()
                        .and_then(Path::file_name)
                        .is_some_and(|n| n.to_string_lossy().starts_with("ganesha-"))
            });
        if ours {
            eprintln!("xtask: killing ganesha.nfsd {pid} left behind by a test");
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        kill_stray_ganeshas();
        if let Some(mut c) = self.rpcbind.take() {
            eprintln!("xtask: stopping rpcbind");
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
