//! A private nfs-ganesha server for one test: NFSv3 on 127.0.0.1, non-default ports,
//! exporting a fresh temporary directory with the VFS backend.
//!
//! Each [`Ganesha`] is a foreground child process of the test; dropping the value kills
//! it, so a failing test leaves no server behind. [`Ganesha::kill`] and
//! [`Ganesha::restart`] let fault tests take the server away mid-operation and bring it
//! back on the same ports and export. Ganesha registers with rpcbind, which must be
//! running (`cargo xtask ci` starts it); clients that pass both ports never ask it.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Requirement;

/// What a test needs for [`Ganesha::start`].
pub const REQUIREMENTS: [Requirement<'static>; 3] = [
    Requirement::Root,
    Requirement::Command("ganesha.nfsd"),
    // rpcbind, with which Ganesha registers (`cargo xtask ci` starts it).
    Requirement::Listening("127.0.0.1:111"),
];

/// How long a starting server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running (or killed, restartable) Ganesha instance.
pub struct Ganesha {
    dir: tempfile::TempDir,
    export: PathBuf,
    nfs_port: u16,
    mount_port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port on 127.0.0.1")
}

fn plugins_dir() -> String {
    for d in [
        "/usr/lib/x86_64-linux-gnu/ganesha",
        "/usr/lib/aarch64-linux-gnu/ganesha",
        "/usr/lib64/ganesha",
        "/usr/lib/ganesha",
    ] {
        if Path::new(d).join("libfsalvfs.so").exists() {
            return d.to_owned();
        }
    }
    "/usr/lib/x86_64-linux-gnu/ganesha".to_owned()
}

impl Ganesha {
    /// Starts a server exporting a new empty directory owned by `uid:gid`, and waits until
    /// it accepts connections. Panics (with the server's log) when it does not start.
    pub fn start(uid: u32, gid: u32) -> Ganesha {
        Ganesha::start_in(&std::env::temp_dir(), uid, gid)
    }

    /// [`Ganesha::start`], with the server's directory (and so the export) inside
    /// `parent`: on a small filesystem, to export a disk that fills.
    pub fn start_in(parent: &Path, uid: u32, gid: u32) -> Ganesha {
        let dir = tempfile::Builder::new()
            .prefix("ganesha-")
            .tempdir_in(parent)
            .expect("create a directory for a Ganesha instance");
        let export = dir.path().join("export");
        std::fs::create_dir_all(&export).expect("create the export directory");
        std::fs::create_dir_all(dir.path().join("recovery")).expect("create recovery dir");
        let status = Command::new("chown")
            .arg(format!("{uid}:{gid}"))
            .arg(&export)
            .status()
            .expect("run chown");
        assert!(status.success(), "chown {uid}:{gid} {}", export.display());
        let mut g = Ganesha {
            export,
            nfs_port: free_port(),
            mount_port: free_port(),
            dir,
            child: None,
        };
        // A port found free may be taken before the server binds it (by any outgoing
        // connection): then start again on other ports.
        for _ in 0..3 {
            g.write_config();
            match g.spawn() {
                Ok(()) => return g,
                Err(log) => {
                    eprintln!("ganesha.nfsd did not start, trying other ports:\n{log}");
                    g.nfs_port = free_port();
                    g.mount_port = free_port();
                }
            }
        }
        panic!("ganesha.nfsd did not start three times (see above)");
    }

    fn write_config(&self) {
        let config = format!(
            r#"NFS_CORE_PARAM {{
    Bind_addr = 127.0.0.1;
    NFS_Port = {nfs};
    MNT_Port = {mnt};
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Protocols = 3;
    Plugins_Dir = "{plugins}";
}}
NFSV4 {{ Graceless = true; RecoveryBackend = fs; RecoveryRoot = "{recovery}"; }}
NFS_KRB5 {{ Active_krb5 = false; }}
EXPORT {{
    Export_Id = 1;
    Path = "{export}";
    Pseudo = "{export}";
    Access_Type = RW;
    Squash = No_Root_Squash;
    Protocols = 3;
    Transports = TCP;
    SecType = sys;
    FSAL {{ Name = VFS; }}
}}
"#,
            nfs = self.nfs_port,
            mnt = self.mount_port,
            plugins = plugins_dir(),
            recovery = self.dir.path().join("recovery").display(),
            export = self.export.display(),
        );
        std::fs::write(self.dir.path().join("ganesha.conf"), config).expect("write ganesha.conf");
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("ganesha.log")
    }

    /// Starts the server; `Err` with its log when it exits at once.
    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new("ganesha.nfsd")
            .arg("-F")
            .arg("-f")
            .arg(self.dir.path().join("ganesha.conf"))
            .arg("-L")
            .arg(self.log())
            .arg("-p")
            .arg(self.dir.path().join("ganesha.pid"))
            .arg("-N")
            .arg("NIV_EVENT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ganesha.nfsd");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Err(format!(
                    "exited with {status}:\n{}",
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                ));
            }
            let up = |p| TcpStream::connect(("127.0.0.1", p)).is_ok();
            if up(self.nfs_port) && up(self.mount_port) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "ganesha.nfsd did not accept connections within {START_TIMEOUT:?}:\n{}",
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
    }

    /// The exported directory, as the server sees it.
    pub fn export_dir(&self) -> &Path {
        &self.export
    }

    /// The NFS port.
    pub fn nfs_port(&self) -> u16 {
        self.nfs_port
    }

    /// The mount protocol's port.
    pub fn mount_port(&self) -> u16 {
        self.mount_port
    }

    /// The store URL for this export with the given credentials and both ports.
    pub fn url(&self, uid: u32, gid: u32) -> String {
        format!(
            "nfs://127.0.0.1:{}{}?uid={uid}&gid={gid}&mountport={}",
            self.nfs_port,
            self.export.display(),
            self.mount_port
        )
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server at once (SIGKILL) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same ports and export.
    pub fn restart(&mut self) {
        self.kill();
        if let Err(log) = self.spawn() {
            panic!("ganesha.nfsd did not restart: {log}");
        }
    }
}

impl Drop for Ganesha {
    fn drop(&mut self) {
        self.kill();
    }
}
