//! `diskimg`: a small script-friendly front end to the `disk-image` crate.
//!
//! ```text
//! diskimg create --format F (--size BYTES | --parent PATH) OUT
//! diskimg write PATH --offset N [--unsynced] < data
//! diskimg read PATH --offset N --length L > data
//! diskimg convert --format F IN OUT
//! diskimg info PATH [--json]
//! diskimg attach [--read-only] [--within DIR] [--run-dir DIR] PATH...
//! diskimg detach [--run-dir DIR] PATH...
//! diskimg attachments [--run-dir DIR] [--json]
//! diskimg check [--repair] [--run-dir DIR] [--json]
//! ```
//! F is one of raw, vmdk, vmdk-flat, vmdk-stream, vhd-fixed, vhd-dynamic, vhdx.
//!
//! `attach` makes each chain named a block device that lasts after `diskimg` exits (a
//! block view is served by `diskimg serve`, started in the background) and prints its
//! device, one line each; attaching an attached chain again takes one more reference, and `detach`
//! drops one (the last detaches). The registry is `--run-dir`, by default strata's
//! (`/run/strata/disks`), so `strata status` lists these too. Every registry command
//! first sets right what crashed or killed processes left, and says so on standard error.

use std::error::Error;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use disk_image::attach::{AttachOptions, Attachments, Released, Server};
use disk_image::{Disk, Format};

type Res<T> = Result<T, Box<dyn Error>>;

const USAGE: &str = "usage:
  diskimg create --format F (--size BYTES | --parent PATH) OUT
  diskimg write PATH --offset N [--unsynced] < data
  diskimg read PATH --offset N --length L > data
  diskimg convert --format F IN OUT
  diskimg info PATH [--json]
  diskimg attach [--read-only] [--within DIR] [--run-dir DIR] PATH...
  diskimg detach [--run-dir DIR] PATH...
  diskimg attachments [--run-dir DIR] [--json]
  diskimg check [--repair] [--run-dir DIR] [--json]
F: raw, vmdk, vmdk-flat, vmdk-stream, vhd-fixed, vhd-dynamic, vhdx";

/// Formats `create` and `convert` accept.
const FORMATS: [Format; 7] = [
    Format::Raw,
    Format::VmdkSparse,
    Format::VmdkFlat,
    Format::VmdkStream,
    Format::VhdFixed,
    Format::VhdDynamic,
    Format::Vhdx,
];
/// Bytes read or written at once: big enough to amortise calls, small enough to stay
/// in the cache between the two copies.
const CHUNK: usize = 1 << 20;

/// One command, resolved from the flags.
enum Mode {
    Create {
        format: Format,
        size: Option<u64>,
        parent: Option<PathBuf>,
        out: PathBuf,
    },
    Write {
        path: PathBuf,
        offset: u64,
        /// Flush without waiting for the disk (qemu's cache=unsafe).
        unsynced: bool,
    },
    Read {
        path: PathBuf,
        offset: u64,
        length: u64,
    },
    Convert {
        format: Format,
        input: PathBuf,
        out: PathBuf,
    },
    Info {
        path: PathBuf,
        json: bool,
    },
    Attach {
        paths: Vec<PathBuf>,
        read_only: bool,
        within: Option<PathBuf>,
        run_dir: PathBuf,
    },
    Detach {
        paths: Vec<PathBuf>,
        run_dir: PathBuf,
    },
    Attachments {
        run_dir: PathBuf,
        json: bool,
    },
    Check {
        run_dir: PathBuf,
        repair: bool,
        json: bool,
    },
}

/// The attachment registry of strata's default run root.
const DEFAULT_RUN_DIR: &str = "/run/strata/disks";

/// Raw flags: `--name value` pairs, bare switches and positionals.
struct Flags {
    values: Vec<(String, String)>,
    switches: Vec<String>,
    positional: Vec<String>,
}

impl Flags {
    fn parse(args: &[String], switches: &[&str]) -> Res<Self> {
        let mut flags = Flags {
            values: Vec::new(),
            switches: Vec::new(),
            positional: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                if switches.contains(&name) {
                    flags.switches.push(name.to_string());
                } else {
                    let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                    flags.values.push((name.to_string(), v.clone()));
                }
            } else {
                flags.positional.push(a.clone());
            }
        }
        Ok(flags)
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let i = self.values.iter().position(|(n, _)| n == name)?;
        Some(self.values.remove(i).1)
    }

    fn number(&mut self, name: &str) -> Res<Option<u64>> {
        self.take(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|e| format!("--{name} {v}: {e}").into())
            })
            .transpose()
    }

    fn format(&mut self) -> Res<Format> {
        let name = self.take("format").ok_or("--format is required")?;
        let format: Format = name.parse()?;
        if !FORMATS.contains(&format) {
            return Err(format!("--format {name}: not one of the creatable formats").into());
        }
        Ok(format)
    }

    fn run_dir(&mut self) -> PathBuf {
        PathBuf::from(
            self.take("run-dir")
                .unwrap_or_else(|| DEFAULT_RUN_DIR.into()),
        )
    }

    fn at_least_one(self) -> Res<Vec<PathBuf>> {
        let want = self.positional.len().max(1);
        self.done(want)
    }

    fn done(self, want: usize) -> Res<Vec<PathBuf>> {
        if let Some((name, _)) = self.values.first() {
            return Err(format!("unexpected --{name}").into());
        }
        if self.positional.len() != want {
            return Err(format!("expected {want} path(s), got {}", self.positional.len()).into());
        }
        Ok(self.positional.into_iter().map(PathBuf::from).collect())
    }
}

fn parse(args: &[String]) -> Res<Mode> {
    let (cmd, rest) = args.split_first().ok_or(USAGE)?;
    let mut f = Flags::parse(rest, &["json", "read-only", "unsynced", "repair"])?;
    let has = |f: &Flags, s: &str| f.switches.iter().any(|x| x == s);
    Ok(match cmd.as_str() {
        "create" => {
            let format = f.format()?;
            let size = f.number("size")?;
            let parent = f.take("parent").map(PathBuf::from);
            if size.is_some() == parent.is_some() {
                return Err("give exactly one of --size and --parent".into());
            }
            let mut p = f.done(1)?;
            Mode::Create {
                format,
                size,
                parent,
                out: p.remove(0),
            }
        }
        "write" => {
            let offset = f.number("offset")?.ok_or("--offset is required")?;
            let unsynced = has(&f, "unsynced");
            Mode::Write {
                path: f.done(1)?.remove(0),
                offset,
                unsynced,
            }
        }
        "read" => {
            let offset = f.number("offset")?.ok_or("--offset is required")?;
            let length = f.number("length")?.ok_or("--length is required")?;
            Mode::Read {
                path: f.done(1)?.remove(0),
                offset,
                length,
            }
        }
        "convert" => {
            let format = f.format()?;
            let mut p = f.done(2)?;
            let out = p.remove(1);
            Mode::Convert {
                format,
                input: p.remove(0),
                out,
            }
        }
        "info" => {
            let json = has(&f, "json");
            Mode::Info {
                path: f.done(1)?.remove(0),
                json,
            }
        }
        "attach" => {
            let read_only = has(&f, "read-only");
            let within = f.take("within").map(PathBuf::from);
            let run_dir = f.run_dir();
            Mode::Attach {
                paths: f.at_least_one()?,
                read_only,
                within,
                run_dir,
            }
        }
        "detach" => {
            let run_dir = f.run_dir();
            Mode::Detach {
                paths: f.at_least_one()?,
                run_dir,
            }
        }
        "attachments" => {
            let json = has(&f, "json");
            let run_dir = f.run_dir();
            f.done(0)?;
            Mode::Attachments { run_dir, json }
        }
        "check" => {
            let (json, repair) = (has(&f, "json"), has(&f, "repair"));
            let run_dir = f.run_dir();
            f.done(0)?;
            Mode::Check {
                run_dir,
                repair,
                json,
            }
        }
        other => return Err(format!("unknown command {other:?}\n{USAGE}").into()),
    })
}

/// The family a child of `parent` is created in.
fn family(format: Format) -> &'static str {
    match format {
        Format::VmdkSparse | Format::VmdkFlat | Format::VmdkStream => "vmdk",
        Format::VhdFixed | Format::VhdDynamic | Format::VhdDifferencing => "vhd",
        Format::Vhdx | Format::VhdxDifferencing => "vhdx",
        _ => "raw",
    }
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if (c as u32) < 0x20 => out += &format!("\\u{:04x}", c as u32),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn info(path: &std::path::Path, json: bool) -> Res<()> {
    let disk = disk_image::open_chain(path, true)?;
    let mut levels = Vec::new();
    let mut level: Option<&dyn Disk> = Some(disk.as_ref());
    while let Some(d) = level {
        let allocated: u64 = d.allocated_ranges()?.iter().map(|r| r.end - r.start).sum();
        levels.push((
            d.path().display().to_string(),
            d.format(),
            d.size(),
            allocated,
            d.id(),
        ));
        level = d.parent();
    }
    let mut out = std::io::stdout().lock();
    if json {
        let items: Vec<String> = levels
            .iter()
            .map(|(p, f, size, alloc, id)| {
                format!(
                    "{{\"path\":{},\"format\":{},\"virtual_size\":{size},\"allocated_bytes\":{alloc},\"id\":{}}}",
                    json_str(p),
                    json_str(f.name()),
                    id.map_or("null".to_string(), |id| json_str(&id.to_string()))
                )
            })
            .collect();
        writeln!(out, "{{\"chain\":[{}]}}", items.join(","))?;
    } else {
        for (depth, (p, f, size, alloc, id)) in levels.iter().enumerate() {
            let indent = "  ".repeat(depth);
            writeln!(out, "{indent}image: {p}")?;
            writeln!(out, "{indent}format: {f}")?;
            writeln!(out, "{indent}virtual size: {size}")?;
            writeln!(out, "{indent}allocated: {alloc}")?;
            if let Some(id) = id {
                writeln!(out, "{indent}id: {id}")?;
            }
        }
    }
    Ok(())
}

fn run(mode: Mode) -> Res<()> {
    match mode {
        Mode::Create {
            format,
            size,
            parent,
            out,
        } => {
            let mut disk = match (size, parent) {
                (Some(size), _) => disk_image::create(&out, format, size)?,
                (None, Some(parent)) => {
                    let parent_format = disk_image::open(&parent, true)?.format();
                    if family(parent_format) != family(format) || family(format) == "raw" {
                        return Err(format!(
                            "a child of a {parent_format} disk is a {} disk, not {format}",
                            family(parent_format)
                        )
                        .into());
                    }
                    disk_image::create_child(&out, &parent)?
                }
                (None, None) => return Err(USAGE.into()),
            };
            disk.flush()?;
        }
        Mode::Write {
            path,
            offset,
            unsynced,
        } => {
            let mut disk = disk_image::open_chain(&path, false)?;
            if unsynced {
                disk.set_durability(disk_image::Durability::Unsynced);
            }
            // Reading standard input and writing the disk are two copies of every byte:
            // a reader thread makes the first while this one makes the second.
            let (full, filled) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(2);
            let (empty, emptied) = std::sync::mpsc::channel::<Vec<u8>>();
            let reader = std::thread::spawn(move || {
                let mut stdin = std::io::stdin().lock();
                let mut buf = vec![0u8; CHUNK];
                loop {
                    buf.resize(CHUNK, 0);
                    let mut n = 0;
                    while n < buf.len() {
                        match stdin.read(&mut buf[n..]) {
                            Ok(0) => break,
                            Ok(k) => n += k,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                let _ = full.send(Err(e));
                                return;
                            }
                        }
                    }
                    if n == 0 {
                        return;
                    }
                    buf.truncate(n);
                    if full.send(Ok(buf)).is_err() {
                        return; // the writer stopped on an error of its own
                    }
                    buf = emptied.recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
                }
            });
            let mut at = offset;
            for buf in filled {
                let buf = buf.map_err(|e| format!("read standard input: {e}"))?;
                disk.write_at(&buf, at)?;
                at += buf.len() as u64;
                let _ = empty.send(buf);
            }
            reader
                .join()
                .map_err(|_| "the standard input reader panicked")?;
            disk.flush()?;
        }
        Mode::Read {
            path,
            offset,
            length,
        } => {
            let disk = disk_image::open_chain(&path, true)?;
            let mut stdout = std::io::stdout().lock();
            let mut buf = vec![0u8; CHUNK];
            let mut done = 0;
            while done < length {
                let n = (length - done).min(CHUNK as u64) as usize;
                disk.read_at(&mut buf[..n], offset + done)?;
                stdout.write_all(&buf[..n])?;
                done += n as u64;
            }
            stdout.flush()?;
        }
        Mode::Convert { format, input, out } => {
            let src = disk_image::open_chain(&input, true)?;
            disk_image::convert(src.as_ref(), &out, format)?;
        }
        Mode::Info { path, json } => info(&path, json)?,
        Mode::Attach {
            paths,
            read_only,
            within,
            run_dir,
        } => {
            let registry = open_registry(&run_dir)?;
            let options = AttachOptions {
                read_only,
                within: within.as_deref(),
            };
            let server = Server::this_program(["serve"])?;
            for path in paths {
                let attached = registry.attach(&path, &options, &server);
                report_found(&registry);
                println!("{}", attached?.device.display());
            }
        }
        Mode::Detach { paths, run_dir } => {
            let registry = open_registry(&run_dir)?;
            for path in paths {
                let released = registry.release(&path);
                report_found(&registry);
                match released? {
                    Released::Detached => println!("detached {}", path.display()),
                    Released::Kept(n) => {
                        println!("{} still attached for {n} user(s)", path.display())
                    }
                }
            }
        }
        Mode::Attachments { run_dir, json } => {
            let list = Attachments::list_in(&run_dir)?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &list)?;
                writeln!(out)?;
            } else {
                for a in &list {
                    let served = a
                        .server
                        .map_or("loop only".to_string(), |s| format!("server {}", s.pid));
                    let mode = if a.read_only { "ro" } else { "rw" };
                    writeln!(
                        out,
                        "{}\t{}\t{mode}\t{} user(s)\t{served}\t{}{}",
                        a.device.display(),
                        a.format,
                        a.refs,
                        a.top.display(),
                        a.problem
                            .as_ref()
                            .map_or(String::new(), |p| format!("\t({p})"))
                    )?;
                }
            }
        }
        Mode::Check {
            run_dir,
            repair,
            json,
        } => {
            let problems = Attachments::check_in(&run_dir, repair)?;
            let mut out = std::io::stdout().lock();
            if json {
                serde_json::to_writer_pretty(&mut out, &problems)?;
                writeln!(out)?;
            } else {
                for p in &problems {
                    let state = if p.repaired { "repaired" } else { "found" };
                    writeln!(out, "{state}: {}: {}", p.disk.display(), p.detail)?;
                }
            }
            if !repair && !problems.is_empty() {
                return Err(format!("{} broken attachment(s)", problems.len()).into());
            }
        }
    }
    Ok(())
}

/// Opens the registry, setting right what crashes left (and saying so).
fn open_registry(dir: &Path) -> Res<Attachments> {
    let registry = Attachments::open(dir)?;
    report_found(&registry);
    Ok(registry)
}

/// Says on standard error what the registry found broken and tore down.
fn report_found(registry: &Attachments) {
    for p in registry.found() {
        let state = if p.repaired { "set right" } else { "found" };
        eprintln!("diskimg: {state}: {}: {}", p.disk.display(), p.detail);
    }
}

fn main() -> ExitCode {
    // `serve` takes the registry's arguments as they are, so it comes before the flags.
    let mut raw = std::env::args_os().skip(1);
    if raw.next().is_some_and(|c| c == "serve") {
        return disk_image::attach::serve(raw);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse(&args).and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("diskimg: {}", storage_core::Report(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}
