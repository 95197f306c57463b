//! Tar archives written byte by byte, for cases no well-behaved archiver writes: names and
//! link targets holding NUL, odd PAX values, whiteouts of `.` and `..`.
//!
//! Headers are ustar, with a PAX extended header (`x`) before an entry when it carries PAX
//! records, and a GNU long-name entry (`L`) when asked. Nothing is checked: the point is
//! to write what a hostile producer would.
//!
//! ```
//! use testkit::tarball::{Tarball, Kind};
//! let mut t = Tarball::new();
//! t.entry(Kind::File(b"hi".to_vec()), b"a/b", &[("mtime", b"-1.5")]);
//! let bytes = t.finish();
//! assert_eq!(bytes.len() % 512, 0);
//! ```

/// What an entry is.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A regular file and its data.
    File(Vec<u8>),
    /// A directory.
    Dir,
    /// A symlink to the target.
    Symlink(Vec<u8>),
    /// A hard link to the target.
    HardLink(Vec<u8>),
}

/// An archive being written.
#[derive(Debug, Default)]
pub struct Tarball {
    out: Vec<u8>,
}

const BLOCK: usize = 512;

impl Tarball {
    /// An empty archive.
    pub fn new() -> Self {
        Tarball::default()
    }

    /// Appends an entry named `name` (the ustar name field takes its first 100 bytes; give
    /// a `path` PAX record for the whole name), owned by 0:0, mode 0644 (0755 for a
    /// directory), mtime 1600000000, with the PAX records `pax` before it.
    pub fn entry(&mut self, kind: Kind, name: &[u8], pax: &[(&str, &[u8])]) -> &mut Self {
        if !pax.is_empty() {
            let mut records = Vec::new();
            for (key, value) in pax {
                records.extend_from_slice(&pax_record(key, value));
            }
            self.raw(b'x', b"PaxHeaders/entry", b"", &records);
        }
        let (flag, link, data): (u8, &[u8], &[u8]) = match &kind {
            Kind::File(d) => (b'0', b"", d),
            Kind::Dir => (b'5', b"", b""),
            Kind::Symlink(t) => (b'2', t, b""),
            Kind::HardLink(t) => (b'1', t, b""),
        };
        self.raw(flag, name, link, data);
        self
    }

    /// Appends a GNU long-name entry (`L`) whose data is `name` followed by a NUL, as GNU
    /// tar writes it; the next entry takes that name.
    pub fn gnu_long_name(&mut self, name: &[u8]) -> &mut Self {
        let mut data = name.to_vec();
        data.push(0);
        self.raw(b'L', b"././@LongLink", b"", &data);
        self
    }

    /// Appends one header of type `flag` and its data, padded to a block.
    pub fn raw(&mut self, flag: u8, name: &[u8], link: &[u8], data: &[u8]) -> &mut Self {
        let mut h = [0u8; BLOCK];
        put(&mut h[0..100], name);
        let mode: &[u8] = if flag == b'5' { b"0000755" } else { b"0000644" };
        put(&mut h[100..108], mode);
        put(&mut h[108..116], b"0000000");
        put(&mut h[116..124], b"0000000");
        put(&mut h[124..136], format!("{:011o}", data.len()).as_bytes());
        put(
            &mut h[136..148],
            format!("{:011o}", 1_600_000_000u64).as_bytes(),
        );
        h[156] = flag;
        put(&mut h[157..257], link);
        put(&mut h[257..265], b"ustar\x0000");
        h[148..156].fill(b' ');
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        put(&mut h[148..156], format!("{sum:06o}\0 ").as_bytes());
        self.out.extend_from_slice(&h);
        self.out.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.out.resize(self.out.len() + pad, 0);
        self
    }

    /// The archive with its two closing zero blocks.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.out);
        out.resize(out.len() + 2 * BLOCK, 0);
        out
    }
}

/// Archives that hold a NUL in a name or link target, one way each (PAX `path`, PAX
/// `linkpath` of a symlink, a GNU long name, a hard link's PAX `linkpath`), named. Every
/// writer must refuse them as invalid.
pub fn nul_names() -> Vec<(&'static str, Vec<u8>)> {
    let file = || Kind::File(b"x".to_vec());
    let mut pax_path = Tarball::new();
    pax_path.entry(file(), b"plain", &[("path", b"a\0b")]);
    let mut pax_link = Tarball::new();
    pax_link.entry(
        Kind::Symlink(b"t".to_vec()),
        b"l",
        &[("linkpath", b"/etc\0x")],
    );
    let mut gnu = Tarball::new();
    gnu.gnu_long_name(b"dir/na\0me")
        .entry(file(), b"short", &[]);
    let mut hard = Tarball::new();
    hard.entry(file(), b"f", &[]).entry(
        Kind::HardLink(b"f".to_vec()),
        b"h",
        &[("linkpath", b"f\0g")],
    );
    vec![
        ("pax path", pax_path.finish()),
        ("pax linkpath", pax_link.finish()),
        ("gnu long name", gnu.finish()),
        ("hard link target", hard.finish()),
    ]
}

/// A directory `d` carrying overlay markers in `trusted.` and `user.` (which never enter)
/// and `user.kept=v` (which does).
pub fn overlay_marker_xattrs() -> Vec<u8> {
    let mut t = Tarball::new();
    t.entry(
        Kind::Dir,
        b"d",
        &[
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("SCHILY.xattr.user.overlay.opaque", b"y"),
            ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
            ("SCHILY.xattr.user.kept", b"v"),
        ],
    );
    t.finish()
}

/// One layer whose whiteouts meet what it wrote itself: `x` then `.wh.x`; `d/`, `d/new`
/// then `.wh.d`; `.wh.y` then `y/`; and `.wh.gone` for something it never wrote. As
/// overlay markers it must leave the file `x`, `d/new` in an opaque `d`, an opaque `y`,
/// and a whiteout `gone`.
pub fn same_layer_whiteouts() -> Vec<u8> {
    let file = |d: &[u8]| Kind::File(d.to_vec());
    let mut t = Tarball::new();
    t.entry(file(b"upper"), b"x", &[])
        .entry(file(b""), b".wh.x", &[])
        .entry(Kind::Dir, b"d", &[])
        .entry(file(b"new"), b"d/new", &[])
        .entry(file(b""), b".wh.d", &[])
        .entry(file(b""), b".wh.y", &[])
        .entry(Kind::Dir, b"y", &[])
        .entry(file(b""), b".wh.gone", &[]);
    t.finish()
}

/// A tree far deeper than its names are long: `hops` symlinks, each leading `per_hop`
/// directories below the one before (`h1 -> h0/d/d/…`, `h2 -> h1/d/d/…`), and under each
/// hop `per_hop` directories `d` made through it. Every name stays under `2 * per_hop + 8`
/// bytes while the tree reaches `hops * per_hop` levels. Names past 100 bytes go in PAX
/// `path` records.
pub fn deep_through_symlinks(hops: usize, per_hop: usize) -> Vec<u8> {
    let mut t = Tarball::new();
    t.entry(Kind::Dir, b"h0", &[]);
    for h in 0..hops {
        let mut name = format!("h{h}").into_bytes();
        for _ in 0..per_hop {
            name.extend_from_slice(b"/d");
            if name.len() > 100 {
                t.entry(Kind::Dir, b"long", &[("path", &name)]);
            } else {
                t.entry(Kind::Dir, &name, &[]);
            }
        }
        let link = format!("h{}", h + 1).into_bytes();
        t.entry(Kind::Symlink(Vec::new()), &link, &[("linkpath", &name)]);
    }
    t.finish()
}

/// Copies as much of `value` as fits into `field`.
fn put(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
}

/// One PAX record, `LEN KEY=VALUE\n`, where LEN counts the whole record including itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + 1 + value.len() + 1;
    let mut len = body + 1;
    while len != body + 1 + len.to_string().len() {
        len = body + 1 + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        for (k, v) in [("path", &b"a"[..]), ("mtime", &[b'1'; 95][..])] {
            let r = pax_record(k, v);
            let (len, _) = r.split_at(r.iter().position(|&b| b == b' ').unwrap_or(0));
            assert_eq!(
                std::str::from_utf8(len).unwrap_or("").parse::<usize>().ok(),
                Some(r.len())
            );
        }
    }
}
