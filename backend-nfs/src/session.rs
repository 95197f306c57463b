//! A session with one NFS export: what `nfs3_client` lacks for a store.
//!
//! `nfs3_client` gives one RPC at a time per TCP connection and no timeouts. A [`Session`]
//! adds:
//! - a pool of connections, so that many RPCs are in flight at once (the writes of a
//!   file, and the files of an import, overlap);
//! - a timeout on every call, after which the connection is dropped and the call fails
//!   with [`NfsError::Timeout`]: a dead server is an error, never a hang;
//! - connections that failed are dropped and replaced on the next call, and errors that
//!   name the call and the object;
//! - the AUTH_UNIX credentials of the store URL on every call.
//!
//! It does not retry: a call that failed because the server went away fails the operation,
//! which the caller may run again.

use std::sync::{Arc, Mutex};

use nfs3_client::nfs3_types::nfs3::{
    COMMIT3args, CREATE3args, FSINFO3args, GETATTR3args, LINK3args, LOOKUP3args, MKDIR3args,
    MKNOD3args, Nfs3Option, Nfs3Result, READ3args, READDIRPLUS3args, READLINK3args, REMOVE3args,
    RMDIR3args, SETATTR3args, SYMLINK3args, WRITE3args, cookieverf3, createhow3, diropargs3,
    fattr3, filename3, mknoddata3, nfs_fh3, nfspath3, sattr3, stable_how, symlinkdata3, writeverf3,
};
use nfs3_client::nfs3_types::rpc::{auth_unix, opaque_auth};
use nfs3_client::nfs3_types::xdr_codec::Opaque;
use nfs3_client::tokio::{TokioConnector, TokioIo};
use nfs3_client::{Nfs3Client, Nfs3ConnectionBuilder};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use storage_core::Report;

use crate::error::NfsError;
use crate::url::NfsUrl;

type Client = Nfs3Client<TokioIo<TcpStream>>;

/// A file handle.
pub type Fh = nfs_fh3;

/// One directory entry as READDIRPLUS returns it.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// The name.
    pub name: Vec<u8>,
    /// Its handle.
    pub fh: Fh,
    /// Its attributes.
    pub attr: fattr3,
}

/// An open session with an NFS export.
pub struct Session {
    url: NfsUrl,
    server: String,
    nfs_port: u16,
    root: Fh,
    auth: opaque_auth<'static>,
    idle: Mutex<Vec<Client>>,
    slots: Arc<Semaphore>,
    /// Largest WRITE the server takes.
    pub wsize: u32,
    /// Largest READ the server serves.
    pub rsize: u32,
}

/// A connection taken from the pool for one call.
struct Conn {
    client: Client,
    _slot: OwnedSemaphorePermit,
}

fn name3(name: &[u8]) -> filename3<'_> {
    filename3(Opaque::borrowed(name))
}

fn dirop<'a>(dir: &Fh, name: &'a [u8]) -> diropargs3<'a> {
    diropargs3 {
        dir: dir.clone(),
        name: name3(name),
    }
}

fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Runs one call on a pooled connection, with the session's timeout, and turns an NFS
/// error status into [`NfsError::Status`].
macro_rules! rpc {
    ($s:expr, $what:expr, $c:ident => $call:expr) => {{
        let mut conn = $s.checkout().await?;
        let reply = {
            let $c = &mut conn.client;
            tokio::time::timeout($s.url.timeout, $call).await
        };
        match $s.checkin(conn, reply, || $what)? {
            Nfs3Result::Ok(ok) => Ok::<_, NfsError>(ok),
            Nfs3Result::Err((status, _)) => Err(NfsError::Status {
                call: $what,
                status,
            }),
        }
    }};
}

impl Session {
    /// Mounts the export named by `url`.
    pub async fn open(url: &NfsUrl) -> Result<Session, NfsError> {
        let server = url.display();
        let auth = opaque_auth::auth_unix(&auth_unix {
            stamp: 0,
            machinename: Opaque::owned(b"strata".to_vec()),
            uid: url.uid,
            gid: url.gid,
            gids: vec![url.gid],
        });
        let mut builder = Nfs3ConnectionBuilder::new(TokioConnector, &url.host, &url.export)
            .connect_from_privileged_port(false)
            .credential(auth.clone());
        if let Some(p) = url.port {
            builder = builder.nfs3_port(p);
        }
        if let Some(p) = url.mount_port {
            builder = builder.mount_port(p);
        }
        let conn = match tokio::time::timeout(url.timeout, builder.mount()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(NfsError::Connect {
                    server,
                    reason: format!("mount {}: {}", url.export, Report(&e)),
                });
            }
            Err(_) => {
                return Err(NfsError::Timeout {
                    server,
                    call: format!("MOUNT {}", url.export),
                    timeout: url.timeout,
                });
            }
        };
        let root = conn.root_nfs_fh3();
        let nfs_port = conn.nfs3_port;
        let first = conn.into_nfs3_client();
        let mut session = Session {
            url: url.clone(),
            server,
            nfs_port,
            root,
            auth,
            idle: Mutex::new(vec![first]),
            slots: Arc::new(Semaphore::new(url.connections)),
            wsize: 1 << 20,
            rsize: 1 << 20,
        };
        let root = session.root.clone();
        let info =
            rpc!(session, "FSINFO /".to_owned(), c => c.fsinfo(&FSINFO3args { fsroot: root }))?;
        session.wsize = info.wtmax.clamp(4096, 1 << 20);
        session.rsize = info.rtmax.clamp(4096, 1 << 20);
        Ok(session)
    }

    /// The export's root handle.
    pub fn root(&self) -> &Fh {
        &self.root
    }

    /// `host:port/export`, for messages.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The uid and gid given to created files.
    pub fn owner(&self) -> (u32, u32) {
        (self.url.uid, self.url.gid)
    }

    async fn checkout(&self) -> Result<Conn, NfsError> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| self.rpc_error("take a connection", e.to_string()))?;
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        let client = match idle {
            Some(c) => c,
            None => self.connect().await?,
        };
        Ok(Conn {
            client,
            _slot: slot,
        })
    }

    async fn connect(&self) -> Result<Client, NfsError> {
        let addr = (self.url.host.as_str(), self.nfs_port);
        let stream = match tokio::time::timeout(self.url.timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(NfsError::Connect {
                    server: self.server.clone(),
                    reason: format!("connect to port {}: {}", self.nfs_port, Report(&e)),
                });
            }
            Err(_) => {
                return Err(NfsError::Timeout {
                    server: self.server.clone(),
                    call: format!("connect to port {}", self.nfs_port),
                    timeout: self.url.timeout,
                });
            }
        };
        let _ = stream.set_nodelay(true);
        Ok(Nfs3Client::new_with_auth(
            TokioIo::new(stream),
            self.auth.clone(),
            opaque_auth::default(),
        ))
    }

    fn rpc_error(&self, call: &str, reason: String) -> NfsError {
        NfsError::Rpc {
            server: self.server.clone(),
            call: call.to_owned(),
            reason,
        }
    }

    /// Puts a connection back after a call, or drops it when the call left it unusable.
    fn checkin<T>(
        &self,
        conn: Conn,
        reply: Result<Result<T, nfs3_client::RpcError>, tokio::time::error::Elapsed>,
        what: impl FnOnce() -> String,
    ) -> Result<T, NfsError> {
        match reply {
            Ok(Ok(v)) => {
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(conn.client);
                }
                Ok(v)
            }
            Ok(Err(e)) => {
                if e.is_connection_reusable()
                    && let Ok(mut idle) = self.idle.lock()
                {
                    idle.push(conn.client);
                }
                Err(self.rpc_error(&what(), Report(&e).to_string()))
            }
            // A timed-out connection may still deliver the late reply: never reuse it.
            Err(_) => Err(NfsError::Timeout {
                server: self.server.clone(),
                call: what(),
                timeout: self.url.timeout,
            }),
        }
    }

    /// The attributes of `fh`.
    pub async fn getattr(&self, fh: &Fh, what: &[u8]) -> Result<fattr3, NfsError> {
        let args = GETATTR3args { object: fh.clone() };
        let ok = rpc!(self, format!("GETATTR {}", show(what)), c => c.getattr(&args))?;
        Ok(ok.obj_attributes)
    }

    /// Looks `name` up in `dir`; `None` when it does not exist. Never follows a symlink.
    pub async fn lookup(&self, dir: &Fh, name: &[u8]) -> Result<Option<(Fh, fattr3)>, NfsError> {
        let args = LOOKUP3args {
            what: dirop(dir, name),
        };
        let ok = match rpc!(self, format!("LOOKUP {}", show(name)), c => c.lookup(&args)) {
            Ok(ok) => ok,
            Err(e) if e.is(nfsstat3_noent()) => return Ok(None),
            Err(e) => return Err(e),
        };
        let attr = match ok.obj_attributes {
            Nfs3Option::Some(a) => a,
            Nfs3Option::None => self.getattr(&ok.object, name).await?,
        };
        Ok(Some((ok.object, attr)))
    }

    /// Creates a directory.
    pub async fn mkdir(&self, dir: &Fh, name: &[u8], attr: sattr3) -> Result<Fh, NfsError> {
        let args = MKDIR3args {
            where_: dirop(dir, name),
            attributes: attr,
        };
        let what = || format!("MKDIR {}", show(name));
        let ok = rpc!(self, what(), c => c.mkdir(&args))?;
        self.made(ok.obj, dir, name, what).await
    }

    /// The handle a create returned, or looked up when the server left it out.
    async fn made(
        &self,
        fh: Nfs3Option<Fh>,
        dir: &Fh,
        name: &[u8],
        what: impl FnOnce() -> String,
    ) -> Result<Fh, NfsError> {
        match fh {
            Nfs3Option::Some(fh) => Ok(fh),
            Nfs3Option::None => match self.lookup(dir, name).await? {
                Some((fh, _)) => Ok(fh),
                None => Err(NfsError::Status {
                    call: what(),
                    status: nfsstat3_noent(),
                }),
            },
        }
    }

    /// Creates a regular file (`how` says guarded, unchecked or exclusive).
    pub async fn create(&self, dir: &Fh, name: &[u8], how: createhow3) -> Result<Fh, NfsError> {
        let args = CREATE3args {
            where_: dirop(dir, name),
            how,
        };
        let what = || format!("CREATE {}", show(name));
        let ok = rpc!(self, what(), c => c.create(&args))?;
        self.made(ok.obj, dir, name, what).await
    }

    /// Writes `data` at `offset`, which must fit in one WRITE (`wsize`). Returns the
    /// server's write verifier.
    pub async fn write(
        &self,
        fh: &Fh,
        offset: u64,
        data: &[u8],
        stable: stable_how,
        what: &[u8],
    ) -> Result<writeverf3, NfsError> {
        let mut done = 0usize;
        let mut verf = writeverf3([0; 8]);
        // A server may write less than asked; send the rest.
        while done < data.len() {
            let chunk = &data[done..];
            let args = WRITE3args {
                file: fh.clone(),
                offset: offset + done as u64,
                count: chunk.len() as u32,
                stable,
                data: Opaque::borrowed(chunk),
            };
            let ok = rpc!(self, format!("WRITE {} at {}", show(what), offset + done as u64), c => c.write(&args))?;
            if ok.count == 0 {
                return Err(self.rpc_error(
                    &format!("WRITE {}", show(what)),
                    "the server wrote nothing".into(),
                ));
            }
            done += ok.count as usize;
            verf = ok.verf;
        }
        Ok(verf)
    }

    /// Makes the unstable writes to `fh` durable; returns the write verifier.
    pub async fn commit(&self, fh: &Fh, what: &[u8]) -> Result<writeverf3, NfsError> {
        let args = COMMIT3args {
            file: fh.clone(),
            offset: 0,
            count: 0,
        };
        let ok = rpc!(self, format!("COMMIT {}", show(what)), c => c.commit(&args))?;
        Ok(ok.verf)
    }

    /// Reads up to `count` bytes at `offset`; returns the data and whether it ends the file.
    pub async fn read(
        &self,
        fh: &Fh,
        offset: u64,
        count: u32,
        what: &[u8],
    ) -> Result<(Vec<u8>, bool), NfsError> {
        let args = READ3args {
            file: fh.clone(),
            offset,
            count,
        };
        let ok = rpc!(self, format!("READ {} at {offset}", show(what)), c => c.read(&args))?;
        Ok((ok.data.into_owned(), ok.eof))
    }

    /// Sets attributes.
    pub async fn setattr(&self, fh: &Fh, attr: sattr3, what: &[u8]) -> Result<(), NfsError> {
        let args = SETATTR3args {
            object: fh.clone(),
            new_attributes: attr,
            guard: Nfs3Option::None,
        };
        rpc!(self, format!("SETATTR {}", show(what)), c => c.setattr(&args))?;
        Ok(())
    }

    /// Removes a non-directory.
    pub async fn remove(&self, dir: &Fh, name: &[u8]) -> Result<(), NfsError> {
        let args = REMOVE3args {
            object: dirop(dir, name),
        };
        rpc!(self, format!("REMOVE {}", show(name)), c => c.remove(&args))?;
        Ok(())
    }

    /// Removes an empty directory.
    pub async fn rmdir(&self, dir: &Fh, name: &[u8]) -> Result<(), NfsError> {
        let args = RMDIR3args {
            object: dirop(dir, name),
        };
        rpc!(self, format!("RMDIR {}", show(name)), c => c.rmdir(&args))?;
        Ok(())
    }

    /// Creates a symlink holding `target` (never interpreted here).
    pub async fn symlink(
        &self,
        dir: &Fh,
        name: &[u8],
        target: &[u8],
        attr: sattr3,
    ) -> Result<Fh, NfsError> {
        let args = SYMLINK3args {
            where_: dirop(dir, name),
            symlink: symlinkdata3 {
                symlink_attributes: attr,
                symlink_data: nfspath3(Opaque::borrowed(target)),
            },
        };
        let what = || format!("SYMLINK {}", show(name));
        let ok = rpc!(self, what(), c => c.symlink(&args))?;
        self.made(ok.obj, dir, name, what).await
    }

    /// The target of a symlink.
    pub async fn readlink(&self, fh: &Fh, what: &[u8]) -> Result<Vec<u8>, NfsError> {
        let args = READLINK3args {
            symlink: fh.clone(),
        };
        let ok = rpc!(self, format!("READLINK {}", show(what)), c => c.readlink(&args))?;
        Ok(ok.data.0.into_owned())
    }

    /// Makes `name` in `dir` a hard link to `fh`.
    pub async fn link(&self, fh: &Fh, dir: &Fh, name: &[u8]) -> Result<(), NfsError> {
        let args = LINK3args {
            file: fh.clone(),
            link: dirop(dir, name),
        };
        rpc!(self, format!("LINK {}", show(name)), c => c.link(&args))?;
        Ok(())
    }

    /// Creates a device node or FIFO.
    pub async fn mknod(&self, dir: &Fh, name: &[u8], what: mknoddata3) -> Result<Fh, NfsError> {
        let args = MKNOD3args {
            where_: dirop(dir, name),
            what,
        };
        let call = || format!("MKNOD {}", show(name));
        let ok = rpc!(self, call(), c => c.mknod(&args))?;
        self.made(ok.obj, dir, name, call).await
    }

    /// Every entry of a directory but `.` and `..`, in the server's order.
    pub async fn readdir(&self, dir: &Fh, what: &[u8]) -> Result<Vec<DirEntry>, NfsError> {
        let mut out = Vec::new();
        let mut cookie = 0;
        let mut verf = cookieverf3([0; 8]);
        loop {
            let args = READDIRPLUS3args {
                dir: dir.clone(),
                cookie,
                cookieverf: verf,
                dircount: 64 << 10,
                maxcount: 256 << 10,
            };
            let ok = rpc!(self, format!("READDIRPLUS {}", show(what)), c => c.readdirplus(&args))?;
            verf = ok.cookieverf;
            for e in ok.reply.entries.0 {
                cookie = e.cookie;
                let name = e.name.0.into_owned();
                if name == b"." || name == b".." {
                    continue;
                }
                let (fh, attr) = match (e.name_handle, e.name_attributes) {
                    (Nfs3Option::Some(fh), Nfs3Option::Some(a)) => (fh, a),
                    _ => match self.lookup(dir, &name).await? {
                        Some(found) => found,
                        None => continue, // removed meanwhile
                    },
                };
                out.push(DirEntry { name, fh, attr });
            }
            if ok.reply.eof {
                return Ok(out);
            }
        }
    }
}

fn nfsstat3_noent() -> nfs3_client::nfs3_types::nfs3::nfsstat3 {
    nfs3_client::nfs3_types::nfs3::nfsstat3::NFS3ERR_NOENT
}

/// `sattr3` giving the owner and permission bits.
pub fn owner_mode(uid: u32, gid: u32, mode: u32) -> sattr3 {
    sattr3 {
        mode: Nfs3Option::Some(mode & 0o7777),
        uid: Nfs3Option::Some(uid),
        gid: Nfs3Option::Some(gid),
        ..sattr3::default()
    }
}

/// Guarded create with owner and mode: fails with EXIST when the name is taken.
pub fn guarded(uid: u32, gid: u32, mode: u32) -> createhow3 {
    createhow3::GUARDED(owner_mode(uid, gid, mode))
}
