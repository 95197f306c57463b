//! Processes named so that a recycled pid is never taken for the one recorded: the pid
//! together with the process's start time (in clock ticks since boot, field 22 of
//! `/proc/<pid>/stat`), as `ps` and systemd identify them.

use std::path::Path;

/// One process, as long as it lives: a pid and when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessId {
    /// The process id.
    pub pid: u32,
    /// When it started, in clock ticks since boot.
    pub start: u64,
}

/// The state letter and start time of `pid` from `/proc/<pid>/stat`.
fn stat(pid: u32) -> Option<(char, u64)> {
    let text =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    // The command name is in parentheses and may hold spaces or parentheses itself: the
    // fields that follow start after the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?.chars().next()?;
    // `rest` starts at field 3 (state); the start time is field 22.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

impl ProcessId {
    /// The process with id `pid`, if it is running now.
    pub fn of(pid: u32) -> Option<ProcessId> {
        let (state, start) = stat(pid)?;
        is_running(state).then_some(ProcessId { pid, start })
    }

    /// This process.
    pub fn current() -> Option<ProcessId> {
        ProcessId::of(std::process::id())
    }

    /// True while this very process runs: its pid exists, is not a zombie, and started
    /// when recorded (a pid reused by a later process does not count).
    pub fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|(state, start)| is_running(state) && start == self.start)
    }
}

/// A zombie (`Z`) or dead (`X`) process has exited; only its parent has not reaped it.
fn is_running(state: char) -> bool {
    !matches!(state, 'Z' | 'X' | 'x')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_another_process() {
        let me = ProcessId::current().unwrap();
        assert!(me.alive());
        let recycled = ProcessId {
            start: me.start + 1,
            ..me
        };
        assert!(!recycled.alive());
    }

    #[test]
    fn a_reaped_child_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = ProcessId::of(child.id());
        child.wait().unwrap();
        if let Some(id) = id {
            assert!(!id.alive());
        }
    }

    #[test]
    fn an_exited_child_not_yet_reaped_is_not_alive() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let id = ProcessId::of(child.id()).unwrap();
        assert!(id.alive());
        std::thread::sleep(std::time::Duration::from_millis(600));
        // A zombie until waited for.
        assert!(!id.alive());
        child.wait().unwrap();
    }
}
