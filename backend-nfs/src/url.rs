//! The store URL: `nfs://host[:port]/export/path?uid=U&gid=G[&mountport=N][&timeout=S][&conns=N]`.

use std::time::Duration;

use storage_core::{Error, Result};

/// The options a store URL takes (`?uid=1000&timeout=10`), which a config file may also
/// give as the store's `options`.
pub const OPTIONS: &[&str] = &["uid", "gid", "mountport", "timeout", "conns"];

/// VIC's default credentials for files created on an NFS volume store.
pub const DEFAULT_ID: u32 = 1000;
/// How long one RPC may take before the server is declared unreachable.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How many TCP connections (and so RPCs in flight) a session keeps.
pub const DEFAULT_CONNECTIONS: usize = 8;

/// A parsed `nfs://` store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfsUrl {
    /// Server address (an IP address: the client does no name resolution).
    pub host: String,
    /// The NFS port; `None` asks rpcbind.
    pub port: Option<u16>,
    /// The mount protocol's port; `None` asks rpcbind.
    pub mount_port: Option<u16>,
    /// The exported path to mount.
    pub export: String,
    /// The AUTH_UNIX uid sent with every call and given to created files.
    pub uid: u32,
    /// The AUTH_UNIX gid sent with every call and given to created files.
    pub gid: u32,
    /// Timeout of one RPC.
    pub timeout: Duration,
    /// Connections kept open, each carrying one RPC at a time.
    pub connections: usize,
}

impl NfsUrl {
    /// Parses and checks a store URL.
    pub fn parse(url: &url::Url) -> Result<Self> {
        let bad = |reason: String| Error::InvalidUrl {
            url: url.to_string(),
            reason,
        };
        if url.scheme() != "nfs" {
            return Err(bad("the scheme must be nfs".into()));
        }
        let host = match url.host() {
            Some(url::Host::Ipv4(a)) => a.to_string(),
            Some(url::Host::Ipv6(a)) => a.to_string(),
            Some(url::Host::Domain("localhost")) => "127.0.0.1".into(),
            // For a scheme the url crate does not know, an address is an opaque host.
            Some(url::Host::Domain(d)) if d.parse::<std::net::IpAddr>().is_ok() => d.to_owned(),
            Some(url::Host::Domain(d)) => {
                return Err(bad(format!(
                    "the host must be an IP address (the NFS client resolves no names), not {d:?}"
                )));
            }
            None => return Err(bad("no server: nfs://host[:port]/export".into())),
        };
        let export = url.path().trim_end_matches('/').to_owned();
        if export.is_empty() {
            return Err(bad("no export path: nfs://host[:port]/export".into()));
        }
        let mut parsed = NfsUrl {
            host,
            port: url.port(),
            mount_port: None,
            export,
            uid: DEFAULT_ID,
            gid: DEFAULT_ID,
            timeout: DEFAULT_TIMEOUT,
            connections: DEFAULT_CONNECTIONS,
        };
        for (k, v) in url.query_pairs() {
            let num = |what: &str| -> Result<u64> {
                v.parse::<u64>()
                    .map_err(|_| bad(format!("{what}={v:?} is not a number")))
            };
            match &*k {
                "uid" => parsed.uid = u32::try_from(num("uid")?).map_err(|e| bad(e.to_string()))?,
                "gid" => parsed.gid = u32::try_from(num("gid")?).map_err(|e| bad(e.to_string()))?,
                "mountport" => {
                    parsed.mount_port =
                        Some(u16::try_from(num("mountport")?).map_err(|e| bad(e.to_string()))?)
                }
                "timeout" => {
                    // Seconds, with or without an `s`.
                    let secs = v
                        .strip_suffix('s')
                        .unwrap_or(&v)
                        .parse::<u64>()
                        .map_err(|_| bad(format!("timeout={v:?} is not a number of seconds")))?;
                    if secs == 0 {
                        return Err(bad("timeout must be at least 1 second".into()));
                    }
                    parsed.timeout = Duration::from_secs(secs);
                }
                "conns" => {
                    let n = num("conns")?;
                    if !(1..=64).contains(&n) {
                        return Err(bad("conns must be between 1 and 64".into()));
                    }
                    parsed.connections = n as usize;
                }
                other => {
                    return Err(bad(format!(
                        "unknown option {other:?} (known: {})",
                        OPTIONS.join(", ")
                    )));
                }
            }
        }
        Ok(parsed)
    }

    /// `host:port/export` for messages.
    pub fn display(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}{}", self.host, self.export),
            None => format!("{}{}", self.host, self.export),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(s: &str) -> Result<NfsUrl> {
        NfsUrl::parse(&url::Url::parse(s).unwrap())
    }

    #[test]
    fn credentials_default_to_vics_1000_and_ports_to_rpcbind() {
        let u = parse("nfs://127.0.0.1/srv/vols").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.port, u.mount_port),
            (1000, 1000, None, None)
        );
        assert_eq!(u.export, "/srv/vols");
        let u = parse("nfs://10.0.0.2:2049/x/?uid=0&gid=5&mountport=20048&timeout=3").unwrap();
        assert_eq!((u.uid, u.gid), (0, 5));
        assert_eq!((u.port, u.mount_port), (Some(2049), Some(20048)));
        assert_eq!(u.export, "/x");
        assert_eq!(u.timeout, Duration::from_secs(3));
    }

    #[test]
    fn names_bad_urls_and_why() {
        for (url, why) in [
            ("nfs://127.0.0.1/", "export"),
            ("nfs://nas.example/x", "IP address"),
            ("nfs://127.0.0.1/x?uid=me", "not a number"),
            ("nfs://127.0.0.1/x?color=red", "unknown option"),
        ] {
            let err = parse(url).unwrap_err().to_string();
            assert!(err.contains(why), "{url}: {err}");
        }
    }
}
