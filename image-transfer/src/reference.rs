//! Transport references, as skopeo spells them: `oci:DIR[:TAG|@DIGEST]`,
//! `oci-archive:FILE[:TAG]`, `docker-archive:FILE[:REF]`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::Error;

/// Where an image is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceRef {
    /// An OCI layout directory, and the image in it: by tag (`ref.name` annotation), by
    /// digest, or the only one.
    Oci {
        /// The layout's directory.
        dir: PathBuf,
        /// `TAG` or `@sha256:<hex>`.
        image: Option<String>,
    },
    /// An OCI layout in a tar file.
    OciArchive {
        /// The tar file.
        file: PathBuf,
        /// The tag, or the only image.
        image: Option<String>,
    },
    /// What `docker save` writes: `manifest.json`, configs and layer tars, in a tar.
    DockerArchive {
        /// The tar file.
        file: PathBuf,
        /// `NAME:TAG` among its `RepoTags`, `@N` for the N-th image, or the only one.
        image: Option<String>,
    },
}

/// Where an image is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestRef {
    /// An OCI layout directory (created, or added to), with the tag to give the image.
    Oci {
        /// The layout's directory.
        dir: PathBuf,
        /// The `ref.name` annotation.
        tag: Option<String>,
    },
    /// A new tar file holding an OCI layout of the one image.
    OciArchive {
        /// The tar file.
        file: PathBuf,
        /// The `ref.name` annotation.
        tag: Option<String>,
    },
}

fn bad(reference: &str, reason: &str) -> Error {
    Error::BadReference {
        reference: reference.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Splits `PATH[:REST]` (or `PATH@DIGEST` when `digest` is allowed): the path is
/// everything up to the last `:` or `@` that is followed by no `/`.
fn split_path(body: &str, digest: bool) -> (String, Option<String>) {
    if digest && let Some(at) = body.rfind("@sha256:") {
        return (body[..at].to_owned(), Some(body[at..].to_owned()));
    }
    match body.rfind(':') {
        Some(i) if !body[i + 1..].contains('/') && i > 0 => (
            body[..i].to_owned(),
            Some(body[i + 1..].to_owned()).filter(|s| !s.is_empty()),
        ),
        _ => (body.to_owned(), None),
    }
}

impl FromStr for SourceRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let (transport, body) = s.split_once(':').ok_or_else(|| {
            bad(
                s,
                "expected TRANSPORT:PATH (oci:, oci-archive:, docker-archive:)",
            )
        })?;
        if body.is_empty() {
            return Err(bad(s, "the path is empty"));
        }
        Ok(match transport {
            "oci" => {
                let (dir, image) = split_path(body, true);
                SourceRef::Oci {
                    dir: dir.into(),
                    image,
                }
            }
            "oci-archive" => {
                let (file, image) = split_path(body, false);
                SourceRef::OciArchive {
                    file: file.into(),
                    image,
                }
            }
            "docker-archive" => {
                // A docker reference has a `:` of its own (`busybox:latest`): the file is
                // the longest prefix that exists, else everything before the first `:`.
                let (file, image) = match body.split_once(':') {
                    Some((f, r)) if !std::path::Path::new(body).exists() => {
                        (f.to_owned(), Some(r.to_owned()).filter(|r| !r.is_empty()))
                    }
                    _ => (body.to_owned(), None),
                };
                SourceRef::DockerArchive {
                    file: file.into(),
                    image,
                }
            }
            other => {
                return Err(bad(
                    s,
                    &format!("unknown transport {other:?} (oci:, oci-archive:, docker-archive:)"),
                ));
            }
        })
    }
}

impl fmt::Display for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (t, p, i) = match self {
            SourceRef::Oci { dir, image } => ("oci", dir, image),
            SourceRef::OciArchive { file, image } => ("oci-archive", file, image),
            SourceRef::DockerArchive { file, image } => ("docker-archive", file, image),
        };
        write!(f, "{t}:{}", p.display())?;
        match i {
            Some(d) if d.starts_with('@') => write!(f, "{d}"),
            Some(tag) => write!(f, ":{tag}"),
            None => Ok(()),
        }
    }
}

impl FromStr for DestRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let (transport, body) = s
            .split_once(':')
            .ok_or_else(|| bad(s, "expected TRANSPORT:PATH (oci:, oci-archive:)"))?;
        if body.is_empty() {
            return Err(bad(s, "the path is empty"));
        }
        let (path, tag) = split_path(body, false);
        match transport {
            "oci" => Ok(DestRef::Oci {
                dir: path.into(),
                tag,
            }),
            "oci-archive" => Ok(DestRef::OciArchive {
                file: path.into(),
                tag,
            }),
            other => Err(bad(
                s,
                &format!("cannot push to transport {other:?} (oci:, oci-archive:)"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_path_from_tag_and_digest() {
        let d = format!("@sha256:{}", "a".repeat(64));
        assert_eq!(
            format!("oci:/x/y{d}").parse::<SourceRef>().unwrap(),
            SourceRef::Oci {
                dir: "/x/y".into(),
                image: Some(d.clone())
            }
        );
        assert_eq!(
            "oci:rel/dir".parse::<SourceRef>().unwrap(),
            SourceRef::Oci {
                dir: "rel/dir".into(),
                image: None
            }
        );
        assert_eq!(
            "oci-archive:/a.tar:v2".parse::<SourceRef>().unwrap(),
            SourceRef::OciArchive {
                file: "/a.tar".into(),
                image: Some("v2".into())
            }
        );
        assert_eq!(
            "docker-archive:/nonexistent/b.tar:busybox:latest"
                .parse::<SourceRef>()
                .unwrap(),
            SourceRef::DockerArchive {
                file: "/nonexistent/b.tar".into(),
                image: Some("busybox:latest".into())
            }
        );
        assert_eq!(
            "oci:/out:t".parse::<DestRef>().unwrap(),
            DestRef::Oci {
                dir: "/out".into(),
                tag: Some("t".into())
            }
        );
    }

    #[test]
    fn unknown_transports_and_empty_paths_are_refused() {
        for s in ["docker://busybox", "oci:", "nothing", "dir:/x"] {
            assert!(
                matches!(s.parse::<SourceRef>(), Err(Error::BadReference { .. })),
                "{s}"
            );
        }
        assert!("docker-archive:/x".parse::<DestRef>().is_err());
    }
}
