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

    /// `existing` (a `BENCHMARKS.md` from a full run) with this report's tables put in
    /// place of the tables of the same title, new ones after the table they follow here (or
    /// before the notes), and a note saying
    /// which section was measured again, and when: for `--only SECTION`.
    pub fn merge_into(&self, existing: &str, section: &str) -> String {
        let mut blocks = split_blocks(existing);
        let rendered = self.render();
        let mine = split_blocks(&rendered);
        // A new table goes after the one it follows in this report (or before the notes).
        let mut after: Option<usize> = None;
        for (title, body) in mine {
            if !title.starts_with("## ") || title == "## Machine" || title == "## Notes" {
                continue;
            }
            match blocks.iter().position(|(t, _)| *t == title) {
                Some(i) => {
                    blocks[i].1 = body;
                    after = Some(i);
                }
                None => {
                    let at = after.map(|i| i + 1).unwrap_or_else(|| {
                        blocks
                            .iter()
                            .position(|(t, _)| t == "## Notes")
                            .unwrap_or(blocks.len())
                    });
                    blocks.insert(at, (title, body));
                    after = Some(at);
                }
            }
        }
        let date = sh_output("date -u +%Y-%m-%d").unwrap_or_else(|_| "?".into());
        // The machine above is the full run's; a section measured again may be on another.
        let cpu = sh_output("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2")
            .map(|c| c.trim().to_owned())
            .unwrap_or_else(|_| "?".into());
        let note = format!(
            "- The {section} tables were measured again on {date} with `cargo xtask bench --only {section} --runs {}` ({cpu}, {} cpus).\n",
            self.runs,
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        let prefix = format!("- The {section} tables were measured again on ");
        match blocks.iter_mut().find(|(t, _)| t == "## Notes") {
            Some((_, body)) => {
                let kept: String = body
                    .lines()
                    .filter(|l| !l.starts_with(&prefix))
                    .map(|l| format!("{l}\n"))
                    .collect();
                *body = format!("{}{note}", kept.trim_end_matches('\n').to_string() + "\n");
            }
            None => blocks.push(("## Notes".into(), format!("\n{note}"))),
        }
        let mut out = String::new();
        for (title, body) in blocks {
            if !title.is_empty() {
                out.push_str(&title);
                out.push('\n');
            }
            out.push_str(&body);
        }
        out
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

/// Markdown split at its `## ` headings: (heading line, or empty for what comes before
/// the first; the text up to the next heading).
fn split_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = vec![(String::new(), String::new())];
    for line in text.split_inclusive('\n') {
        if line.starts_with("## ") {
            blocks.push((line.trim_end().to_string(), String::new()));
        } else if let Some(last) = blocks.last_mut() {
            last.1.push_str(line);
        }
    }
    blocks
}

/// A duration as a reader compares it: milliseconds below a second.
fn seconds(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_run_again_replaces_its_tables_and_keeps_the_rest() {
        let existing = "# Benchmarks\n\nintro\n\n## Machine\n\n- cpus: 2\n\n## A\n\nold a\n\n## B\n\nold b\n\n## Z\n\nold z\n\n## Notes\n\n- reproduce\n";
        let mut report = Report {
            machine: "- cpus: 2".into(),
            runs: 3,
            tables: Vec::new(),
            notes: Vec::new(),
        };
        for title in ["B", "C"] {
            report.table(Table {
                title: title.into(),
                input: format!("new {title}"),
                rows: Vec::new(),
            });
        }
        let merged = report.merge_into(existing, "disks");
        let titles: Vec<&str> = merged.lines().filter(|l| l.starts_with("## ")).collect();
        // The new table C lands after B, which it follows in the report.
        assert_eq!(
            titles,
            ["## Machine", "## A", "## B", "## C", "## Z", "## Notes"]
        );
        assert!(
            merged.contains("old a") && !merged.contains("old b"),
            "{merged}"
        );
        assert!(
            merged.contains("new B") && merged.contains("new C"),
            "{merged}"
        );
        assert!(
            merged.contains("- reproduce\n- The disks tables were measured again on "),
            "{merged}"
        );
        // Running the section again keeps one such note.
        let again = report.merge_into(&merged, "disks");
        assert_eq!(
            again.matches("tables were measured again").count(),
            1,
            "{again}"
        );
    }
}
