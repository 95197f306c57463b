//! Volume import over loopback NFS (strata's user-space client to nfs-ganesha) against the
//! floor: GNU tar extracting the same tar straight into the export directory, which is the
//! server's own disk work.

use std::path::Path;

use anyhow::{Context, Result};
use testkit::ganesha::Ganesha;

use super::report::Table;
use super::{Options, Report, measure, row, strata, time_sh};

/// Where the input tars are made and kept (on disk, where Ganesha's export is too).
const DIR: &str = "/var/tmp/strata-bench/nfs";

/// Makes the two inputs once: 2,000 files of 100 kB (200 MB) in 20 directories, and one
/// 200 MB file, both of incompressible bytes.
fn inputs() -> Result<(String, String)> {
    std::fs::create_dir_all(DIR).with_context(|| format!("create {DIR}"))?;
    let many = format!("{DIR}/many-files.tar");
    if !Path::new(&many).exists() {
        eprintln!("bench: making {many}");
        time_sh(&format!(
            "rm -rf {DIR}/src && mkdir -p {DIR}/src && cd {DIR}/src && \
             for d in $(seq 0 19); do mkdir d$d; done && \
             head -c 200000000 /dev/urandom | split -b 100000 -a 4 -d - f && \
             i=0; for f in f*; do mv $f d$((i % 20))/; i=$((i+1)); done && \
             tar -cf {many}.tmp . && mv {many}.tmp {many} && rm -rf {DIR}/src"
        ))?;
    }
    let one = format!("{DIR}/one-file.tar");
    if !Path::new(&one).exists() {
        eprintln!("bench: making {one}");
        time_sh(&format!(
            "rm -rf {DIR}/one && mkdir -p {DIR}/one && head -c 200000000 /dev/urandom > {DIR}/one/big && \
             tar -cf {one}.tmp -C {DIR}/one big && mv {one}.tmp {one} && rm -rf {DIR}/one"
        ))?;
    }
    Ok((many, one))
}

/// Runs the NFS benchmarks against a private Ganesha (rpcbind must be running).
pub fn run(opts: &Options, report: &mut Report) -> Result<()> {
    let (many, one) = inputs()?;
    let _servers = crate::nfs::Servers::start()?;
    let g = Ganesha::start(1000, 1000);
    let url = g.url(1000, 1000);
    let export = g.export_dir().display().to_string();
    let st = format!("{} --store '{url}'", strata().display());
    // Makes the store's top directories, so that every run starts the same way.
    time_sh(&format!("{st} volume ls >/dev/null"))?;
    let mut met = Vec::new();
    for (what, tar, target) in [
        ("one 200 MB file", &one, 0.50),
        ("2,000 files of 100 kB (200 MB)", &many, 0.25),
    ] {
        eprintln!("bench: NFS import of {what}");
        let reset = format!(
            "{st} volume rm v >/dev/null 2>&1; {st} volume create v >/dev/null && \
             rm -rf {export}/floor && mkdir {export}/floor && sync"
        );
        let strata_time = measure(
            opts.runs,
            &reset,
            &format!("{st} volume import v {tar} 2>/dev/null"),
        );
        let floor = measure(
            opts.runs,
            &reset,
            &format!("tar -xf {tar} -C {export}/floor"),
        );
        let floor_synced = measure(
            opts.runs,
            &reset,
            &format!("tar -xf {tar} -C {export}/floor && sync -f {export}/floor"),
        );
        if let (Ok(s), Ok(f)) = (&strata_time, &floor) {
            let share = f.as_secs_f64() / s.as_secs_f64().max(1e-9);
            met.push(format!(
                "{what}: strata reaches {:.0}% of the floor's throughput (target {:.0}%: {})",
                share * 100.0,
                target * 100.0,
                if share >= target { "met" } else { "NOT met" }
            ));
        }
        report.table(Table {
            title: format!("Import a volume over loopback NFS: {what}"),
            input: format!(
                "An uncompressed tar of {what}, imported into a volume of an nfs store served by nfs-ganesha (VFS) on 127.0.0.1, \
                 against GNU tar extracting it into the export directory (the floor: the server's own disk work). \
                 strata's import ends with an NFS COMMIT of every file (the data is durable); `tar -xf` does not sync, so the \
                 synced row is shown too."
            ),
            rows: vec![
                row("strata (nfs)", "strata --store nfs://… volume import ID TAR", strata_time),
                row("GNU tar (floor)", "tar -xf TAR -C EXPORT/DIR", floor),
                row(
                    "GNU tar + sync",
                    "tar -xf TAR -C EXPORT/DIR && sync -f EXPORT/DIR",
                    floor_synced,
                ),
            ],
        });
    }
    for m in met {
        report.note(m);
    }
    drop(g);
    Ok(())
}
