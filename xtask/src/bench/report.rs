//! The `BENCHMARKS.md` being assembled: the machine, then one table per comparison.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Result;

use super::sh_output;

/// One measured command.
pub struct Row {
    /// Who ran (strata, GNU tar, containers-storage, …).
    pub tool: String,
    /// The command, as a person would type it.
    pub command: String,
    /// The median wall time, or why there is none.
    pub time: Result<Duration, String>,
}

/// A comparison: rows on the same input, with ratios to the first row.
pub struct Table {
    /// Heading.
    pub title: String,
    /// What the input was.
    pub input: String,
    /// The rows; the first is strata.
    pub rows: Vec<Row>,
}

/// The whole report.
pub struct Report {
    machine: String,
    runs: usize,
    tables: Vec<Table>,
    notes: Vec<String>,
}

impl Report {
    /// A report describing this machine.
    pub fn new() -> Result<Self> {
        let machine = [
            ("kernel", "uname -sr"),
            ("cpus", "nproc"),
            ("cpu", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
            ("memory", "free -h | awk '/Mem:/ {print $2}'"),
            ("rustc", "rustc --version"),
            (
                "containers-storage",
                "dpkg-query -W -f='${Version}' containers-storage",
            ),
            ("GNU tar", "tar --version | head -1"),
            ("date", "date -u +%Y-%m-%d"),
        ]
        .iter()
        .map(|(k, cmd)| format!("- {k}: {}", sh_output(cmd).unwrap_or_else(|_| "?".into())))
        .collect::<Vec<_>>()
        .join("\n");
        Ok(Report {
            machine,
            runs: 0,
            tables: Vec::new(),
            notes: Vec::new(),
        })
    }

    /// Records how many runs each median is of.
    pub fn set_runs(&mut self, runs: usize) {
        self.runs = runs;
    }

    /// Adds a table.
    pub fn table(&mut self, t: Table) {
        self.tables.push(t);
    }

    /// Adds a note under the tables.
    pub fn note(&mut self, n: String) {
        self.notes.push(n);
    }

    /// The Markdown text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# Benchmarks\n\nWritten by `cargo xtask bench`; do not edit by hand. Every figure is the median of {} runs, \
             measured in the same run as its peers, on the same input. Ratios are the peer's time over strata's \
             (above 1: strata is faster).\n\n## Machine\n\n{}\n",
            self.runs, self.machine
        );
        for t in &self.tables {
            let _ = writeln!(s, "## {}\n\n{}\n", t.title, t.input);
            let _ = writeln!(
                s,
                "| tool | median | peer / strata | command |\n|---|---|---|---|"
            );
            let base = t.rows.first().and_then(|r| r.time.as_ref().ok()).copied();
            for r in &t.rows {
                let (time, ratio) = match (&r.time, base) {
                    (Ok(d), Some(b)) => (
                        seconds(*d),
                        format!("{:.2}", d.as_secs_f64() / b.as_secs_f64().max(1e-9)),
                    ),
                    (Ok(d), None) => (seconds(*d), "-".into()),
                    (Err(e), _) => (format!("failed: {e}"), "-".into()),
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | `{}` |",
                    r.tool,
                    time,
                    ratio,
                    r.command.replace('|', "\\|")
                );
            }
            s.push('\n');
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s, "## Notes\n");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        s
    }
}

/// A duration as a reader compares it: milliseconds below a second.
fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}
