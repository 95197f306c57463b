//! The block view's server: a small detached process that serves one disk chain's block
//! view, so that the attachment outlives the command that made it.
//!
//! Any program can host it: it calls [`serve`] with the arguments the registry passes
//! (`diskimg serve …` does, and so can `strata`). A [`Server`] says which program that
//! is. The server runs in a process group of its own from the start (a Ctrl-C meant for
//! the command that started it does not reach it; a hang-up is ignored), opens the
//! chain, mounts the view,
//! answers `ready` on its standard output and serves until it is told to stop (SIGTERM
//! or SIGINT) or its view is unmounted. Then it flushes the disk and writes how that
//! went to `exit` in its state directory. What it has to say goes to `server.log` there.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use rustix::fs::FlockOperation;

use crate::attach::process::ProcessId;
use crate::block_view::{self, BlockView, SharedDisk};
use crate::error::{Error, ErrorKind, Result};
use crate::{Disk, open_chain, open_chain_within};

/// How long a server may take to open its chain and mount its view.
const READY_WAIT: Duration = Duration::from_secs(30);
/// The answer of a server that serves.
const READY: &str = "ready";

/// The block view's mount point in a state directory.
pub(crate) fn mountpoint(state: &Path) -> PathBuf {
    state.join("mnt")
}

/// The file the server writes when it ends: `ok`, or `error: …` when the last flush failed.
pub(crate) fn exit_file(state: &Path) -> PathBuf {
    state.join("exit")
}

/// The file where a server records who it is (`pid start`), so that it can be found
/// even when its record could not be written or read.
pub(crate) fn pid_file(state: &Path) -> PathBuf {
    state.join("server.pid")
}

/// The server recorded in `state`'s pid file, if it is still running.
pub(crate) fn recorded(state: &Path) -> Option<ProcessId> {
    let text = std::fs::read_to_string(pid_file(state)).ok()?;
    let mut fields = text.split_ascii_whitespace();
    let id = ProcessId {
        pid: fields.next()?.parse().ok()?,
        start: fields.next()?.parse().ok()?,
    };
    id.alive().then_some(id)
}

/// The file a server holds a shared `flock` on for as long as it lives. Its starter
/// makes it before the server starts, holding a token the server is given too; a server
/// that finds it gone, or holding another token (a later start's), once it holds the
/// lock exits at once: its attachment was torn down while it was starting.
pub(crate) fn lock_file(state: &Path) -> PathBuf {
    state.join("server.lock")
}

/// The server's log in a state directory.
pub(crate) fn log_file(state: &Path) -> PathBuf {
    state.join("server.log")
}

/// Which program serves block views: a path and the arguments that select [`serve`] in
/// it, to which the registry appends its own.
#[derive(Debug, Clone)]
pub struct Server {
    program: PathBuf,
    args: Vec<OsString>,
}

impl Server {
    /// `program` with `args` before the registry's (`diskimg` with `["serve"]`).
    pub fn new(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
    ) -> Self {
        Server {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// This very program, with `args` selecting [`serve`] in it.
    pub fn this_program(args: impl IntoIterator<Item = impl Into<OsString>>) -> Result<Self> {
        let program = std::env::current_exe().map_err(|e| {
            Error::io(
                Path::new("/proc/self/exe"),
                "finding this program to serve block views",
                e,
            )
        })?;
        Ok(Server::new(program, args))
    }

    /// Starts a server for the chain at `top`, with its state in `state`; returns it once
    /// it answers `ready` (its view is mounted at [`mountpoint`]). `on_start` is called
    /// with the server's identity as soon as it is known, before waiting, so the caller
    /// can record it.
    pub(crate) fn start(
        &self,
        state: &Path,
        top: &Path,
        read_only: bool,
        within: Option<&Path>,
        on_start: impl FnOnce(ProcessId) -> Result<()>,
    ) -> Result<ProcessId> {
        let lock = lock_file(state);
        let token = start_token();
        std::fs::write(&lock, &token)
            .map_err(|e| Error::io(&lock, "creating the server's lock", e))?;
        let log_path = log_file(state);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(&log_path, "creating the server log", e))?;
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .arg("--state")
            .arg(state)
            .arg("--disk")
            .arg(top)
            .arg("--token")
            .arg(&token);
        if read_only {
            command.arg("--read-only");
        }
        if let Some(root) = within {
            command.arg("--within").arg(root);
        }
        use std::os::unix::process::CommandExt;
        command
            .current_dir("/")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = command
            .spawn()
            .map_err(|e| Error::io(&self.program, "starting the block view server", e))?;
        let id = ProcessId::of(child.id());
        let answer = match id {
            Some(id) => on_start(id)
                .and_then(|()| wait_ready(&mut child))
                .map(|()| id),
            // Gone already: what it said is in its log.
            None => Err(Error::new(ErrorKind::Io, "the server exited at once")),
        };
        answer.map_err(|e| {
            let _ = child.kill();
            let _ = child.wait();
            let said = last_lines(&log_path);
            if said.is_empty() {
                e.with_path(top)
            } else {
                Error::new(e.kind(), said).with_path(top)
            }
        })
    }
}

/// Waits for the server's `ready` line.
fn wait_ready(child: &mut Child) -> Result<()> {
    let Some(stdout) = child.stdout.take() else {
        return Err(Error::new(
            ErrorKind::Io,
            "the server's output is not a pipe",
        ));
    };
    let (tx, rx) = std::sync::mpsc::channel();
    // The reader thread ends with the pipe: at the server's answer or its exit.
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(read.map(|_| line));
    });
    match rx.recv_timeout(READY_WAIT) {
        Ok(Ok(line)) if line.trim_end() == READY => Ok(()),
        Ok(Ok(_)) => Err(Error::new(
            ErrorKind::Io,
            "the server exited without serving",
        )),
        Ok(Err(e)) => Err(Error::io(
            Path::new("block view server"),
            "reading its answer",
            e,
        )),
        Err(_) => Err(Error::new(
            ErrorKind::Io,
            format!(
                "the server did not answer within {} s",
                READY_WAIT.as_secs()
            ),
        )),
    }
}

/// The last few lines a server logged, joined, for an error message.
fn last_lines(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join("; ")
}

/// A token no other start of a server has had: this process, the time, and a count.
fn start_token() -> String {
    static STARTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{}-{}-{}",
        std::process::id(),
        now.as_nanos(),
        STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// The arguments [`Server::start`] passes.
struct Args {
    state: PathBuf,
    disk: PathBuf,
    token: String,
    read_only: bool,
    within: Option<PathBuf>,
}

fn parse(args: impl IntoIterator<Item = OsString>) -> std::result::Result<Args, String> {
    let mut state = None;
    let mut disk = None;
    let mut read_only = false;
    let mut within = None;
    let mut token = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .map(PathBuf::from)
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.to_str() {
            Some("--state") => state = Some(value("--state")?),
            Some("--disk") => disk = Some(value("--disk")?),
            Some("--within") => within = Some(value("--within")?),
            Some("--token") => token = Some(value("--token")?.to_string_lossy().into_owned()),
            Some("--read-only") => read_only = true,
            _ => return Err(format!("unexpected argument {}", arg.to_string_lossy())),
        }
    }
    Ok(Args {
        state: state.ok_or("--state is required")?,
        disk: disk.ok_or("--disk is required")?,
        token: token.ok_or("--token is required")?,
        read_only,
        within,
    })
}

/// Serves one block view until told to stop: the body of the server process. `args` are
/// the ones [`Server`] appends (`--state DIR --disk PATH --token T [--read-only]
/// [--within DIR]`).
/// Returns the process's exit code; errors go to standard error (the server's log).
pub fn serve(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("block view server: {e}");
            return ExitCode::from(2);
        }
    };
    match serve_view(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("block view server: {}", storage_core::Report(&e));
            ExitCode::FAILURE
        }
    }
}

/// Takes the shared lock that says this server lives (see [`lock_file`]), and checks the
/// file is still the one its starter made for it: at the path, and holding `token`.
fn hold_alive_lock(state: &Path, token: &str) -> Result<std::fs::File> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let path = lock_file(state);
    let gone = || {
        Error::new(
            ErrorKind::Busy,
            "its attachment was torn down while the server was starting",
        )
        .with_path(state)
    };
    let mut file = std::fs::File::open(&path).map_err(|_| gone())?;
    rustix::fs::flock(&file, FlockOperation::LockShared)
        .map_err(|e| Error::io(&path, "locking", e.into()))?;
    let mut held_token = String::new();
    file.read_to_string(&mut held_token)
        .map_err(|e| Error::io(&path, "reading the lock's token", e))?;
    if held_token != token {
        return Err(gone());
    }
    let held = file
        .metadata()
        .map_err(|e| Error::io(&path, "reading the lock's identity", e))?;
    match std::fs::metadata(&path) {
        Ok(now) if (now.dev(), now.ino()) == (held.dev(), held.ino()) => Ok(file),
        _ => Err(gone()),
    }
}

/// Makes sure no server of the attachment in `state` runs or will start: a server that
/// holds its lock is stopped (SIGTERM; it unmounts its view and exits) and waited for,
/// then the lock file is removed while held, so a server still starting finds it gone.
/// `known` is the server the record names, for attachments made before servers took a
/// lock. Returns the server stopped, if one was.
pub(crate) fn quiesce(state: &Path, known: Option<ProcessId>) -> Result<Option<ProcessId>> {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    let path = lock_file(state);
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let Some(id) = known.filter(ProcessId::alive).or_else(|| recorded(state)) else {
                return Ok(None);
            };
            return stop(id, state, STOP_WAIT).map(|()| Some(id));
        }
        Err(e) => return Err(Error::io(&path, "opening the server's lock", e)),
    };
    let start = std::time::Instant::now();
    let mut stopped: Option<ProcessId> = None;
    loop {
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::WOULDBLOCK) => {
                // A server lives; its pid is recorded right after it took the lock.
                if stopped.is_none()
                    && let Some(id) = known.filter(ProcessId::alive).or_else(|| recorded(state))
                {
                    let _ = kill(Pid::from_raw(id.pid as i32), Signal::SIGTERM);
                    stopped = Some(id);
                }
                if start.elapsed() > STOP_WAIT {
                    if let Some(id) = stopped {
                        let _ = kill(Pid::from_raw(id.pid as i32), Signal::SIGKILL);
                    }
                    return Err(Error::new(
                        ErrorKind::Busy,
                        format!("its server did not stop within {} s", STOP_WAIT.as_secs()),
                    )
                    .with_path(state));
                }
                if let Some(id) = stopped {
                    reap(Pid::from_raw(id.pid as i32));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(Error::io(&path, "locking", e.into())),
        }
    }
    std::fs::remove_file(&path).map_err(|e| Error::io(&path, "removing the server's lock", e))?;
    Ok(stopped)
}

/// How long a teardown waits for a server to stop.
const STOP_WAIT: Duration = Duration::from_secs(30);

fn serve_view(args: &Args) -> Result<()> {
    let _alive = hold_alive_lock(&args.state, &args.token)?;
    if let Some(me) = ProcessId::current() {
        let file = pid_file(&args.state);
        std::fs::write(&file, format!("{} {}\n", me.pid, me.start))
            .map_err(|e| Error::io(&file, "recording the server's pid", e))?;
    }
    // Stop signals are taken by one thread, so blocked here before any thread starts.
    let stops = SigSet::from_iter([Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP]);
    stops
        .thread_block()
        .map_err(|e| Error::io(&args.state, "blocking stop signals", e.into()))?;
    let disk: Box<dyn Disk> = match &args.within {
        Some(root) => open_chain_within(&args.disk, args.read_only, root)?,
        None => open_chain(&args.disk, args.read_only)?,
    };
    let size = disk.size();
    let shared: SharedDisk = Arc::new(Mutex::new(disk));
    let mnt = mountpoint(&args.state);
    let view = BlockView::new(shared.clone(), args.read_only, size);
    let options = block_view::mount_options(args.read_only);
    let mut session = fuser::Session::new(view, &mnt, &options)
        .map_err(|e| Error::io(&mnt, "mounting the block view", e))?;
    let stop_at = mnt.clone();
    std::thread::spawn(move || {
        loop {
            match stops.wait() {
                // A hang-up is no reason to stop serving.
                Ok(Signal::SIGHUP) => continue,
                // The view goes once nothing holds its file; the session ends with it.
                _ => {
                    let _ = crate::attach::unmount(&stop_at);
                    return;
                }
            }
        }
    });
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{READY}").and_then(|()| out.flush()).is_err() {
        // Whoever started it is gone before it could record it: nobody will use it.
        let _ = crate::attach::unmount(&mnt);
    }
    drop(out);
    let served = session
        .run()
        .map_err(|e| Error::io(&mnt, "serving the block view", e));
    drop(session);
    let flushed = if args.read_only {
        Ok(())
    } else {
        shared.lock().unwrap_or_else(|p| p.into_inner()).flush()
    };
    let result = served.and(flushed);
    let exit = exit_file(&args.state);
    let said = match &result {
        Ok(()) => "ok\n".to_string(),
        Err(e) => format!("error: {}\n", storage_core::Report(e)),
    };
    std::fs::write(&exit, said).map_err(|e| Error::io(&exit, "recording how it ended", e))?;
    result
}

/// Stops the server `id` serving the view in `state` and waits until it is gone; returns
/// what it recorded about its last flush. Asks with SIGTERM; one that does not end within
/// `patience` is killed, and that is an error (its last writes may not be on disk).
pub(crate) fn stop(id: ProcessId, state: &Path, patience: Duration) -> Result<()> {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    let pid = Pid::from_raw(id.pid as i32);
    if id.alive() {
        let _ = kill(pid, Signal::SIGTERM);
    }
    let start = std::time::Instant::now();
    while id.alive() {
        if start.elapsed() > patience {
            let _ = kill(pid, Signal::SIGKILL);
            reap(pid);
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "the block view server (pid {}) did not stop within {} s and was killed",
                    id.pid,
                    patience.as_secs()
                ),
            )
            .with_path(state));
        }
        reap(pid);
        std::thread::sleep(Duration::from_millis(10));
    }
    reap(pid);
    let exit = exit_file(state);
    match std::fs::read_to_string(&exit) {
        Ok(text) if text.trim() == "ok" => Ok(()),
        Ok(text) => Err(Error::new(
            ErrorKind::Io,
            format!("the block view server ended with {}", text.trim()),
        )
        .with_path(state)),
        Err(_) => Err(Error::new(
            ErrorKind::Io,
            format!(
                "the block view server (pid {}) ended without saying how its last flush went",
                id.pid
            ),
        )
        .with_path(state)),
    }
}

/// Reaps `pid` if it is this process's exited child (a server started from a process that
/// lives on); anything else is left alone.
fn reap(pid: nix::unistd::Pid) {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_keeps_only_the_lock_made_for_its_own_start() {
        let state = tempfile::tempdir().unwrap();
        // No lock: the attachment was torn down before the server took it.
        let gone = hold_alive_lock(state.path(), "mine").unwrap_err();
        assert_eq!(gone.kind(), ErrorKind::Busy);
        // A later start's lock at the same path: not this server's.
        std::fs::write(lock_file(state.path()), "a later start").unwrap();
        let taken = hold_alive_lock(state.path(), "mine").unwrap_err();
        assert_eq!(taken.kind(), ErrorKind::Busy);
        // Its own.
        std::fs::write(lock_file(state.path()), "mine").unwrap();
        assert!(hold_alive_lock(state.path(), "mine").is_ok());
    }

    #[test]
    fn the_server_is_given_its_start_token() {
        let a = start_token();
        let args = parse(
            [
                "--state",
                "/s",
                "--disk",
                "/d",
                "--token",
                &a,
                "--read-only",
            ]
            .map(OsString::from),
        )
        .unwrap();
        assert_eq!(args.token, a);
        assert!(parse(["--state", "/s", "--disk", "/d"].map(OsString::from)).is_err());
    }
}
