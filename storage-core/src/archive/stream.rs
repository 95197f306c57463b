//! Tar streams crossing between blocking producers and async consumers.
//!
//! An export walks a filesystem and writes a tar, which is blocking work; the contract
//! hands the caller an async stream. [`ArchiveStream`] joins the two through an OS pipe: the
//! producer runs on the blocking pool and writes into the pipe (so file data can be spliced
//! rather than copied), and the reader gets the other end. A producer that fails
//! mid-stream turns the end of the stream into that error, so a truncated export is never
//! mistaken for a complete one.

use std::fs::File;
use std::io::{self, Write};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

use crate::error::{Error, IoContext, Result};

/// The pipe capacity asked for (the kernel's default `pipe-max-size`).
const PIPE_SIZE: i32 = 1 << 20;

/// A tar stream produced by a blocking task.
pub struct ArchiveStream {
    pipe: pipe::Receiver,
    producer: Option<JoinHandle<Result<()>>>,
}

impl ArchiveStream {
    /// Runs `produce` on the blocking pool with the pipe's write end, and returns the read
    /// end as a stream. Must be called inside a tokio runtime.
    pub fn spawn<F>(produce: F) -> Result<Self>
    where
        F: FnOnce(File) -> Result<()> + Send + 'static,
    {
        let (rx, tx) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .ctx(|| "create a pipe for a tar stream")?;
        // A 64 KiB pipe makes producer and reader take turns every 64 KiB; a larger one
        // lets them run side by side. The limit (pipe-max-size) may refuse; then keep the
        // default.
        let _ = nix::fcntl::fcntl(&tx, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
        let pipe = pipe::Receiver::from_owned_fd(rx).ctx(|| "register a tar stream pipe")?;
        let writer = File::from(tx);
        let producer = tokio::task::spawn_blocking(move || produce(writer));
        Ok(ArchiveStream {
            pipe,
            producer: Some(producer),
        })
    }

    /// Copies the whole stream into `out` on the calling (blocking) thread, then reports
    /// the producer's result. Use from `spawn_blocking`; the copy uses `splice` where `out`
    /// is a file or pipe.
    pub fn copy_to_blocking(self, out: &mut impl Write) -> Result<u64> {
        let ArchiveStream { pipe, producer } = self;
        let fd = pipe
            .into_blocking_fd()
            .ctx(|| "make the tar stream pipe blocking")?;
        let mut reader = File::from(fd);
        let copied = io::copy(&mut reader, out);
        // A copy that failed on `out` leaves the producer blocked on a full pipe until the
        // pipe's read end closes.
        drop(reader);
        let produced = match producer {
            Some(p) => tokio::runtime::Handle::current()
                .block_on(p)
                .map_err(|e| Error::io("tar stream producer", io::Error::other(e)))?,
            None => Ok(()),
        };
        // The copy's own failure is the cause; the producer's is then only its echo.
        let copied = copied.ctx(|| "write the tar stream")?;
        produced?;
        Ok(copied)
    }
}

impl AsyncRead for ArchiveStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.pipe).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            return Poll::Ready(Ok(()));
        }
        // End of the pipe: the stream is complete only if the producer succeeded.
        let Some(producer) = self.producer.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let result = ready!(Pin::new(producer).poll(cx));
        self.producer = None;
        Poll::Ready(match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(io::Error::other(e)),
            Err(join) => Err(io::Error::other(join)),
        })
    }
}

use std::future::Future;

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_failing_producer_turns_the_end_of_stream_into_an_error() {
        let mut ok = ArchiveStream::spawn(|mut w| {
            w.write_all(b"complete").ctx(|| "write")?;
            Ok(())
        })
        .unwrap();
        let mut got = Vec::new();
        ok.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"complete");

        let mut bad = ArchiveStream::spawn(|mut w| {
            w.write_all(b"partial").ctx(|| "write")?;
            Err(Error::io(
                "export layer x",
                io::Error::from(io::ErrorKind::NotFound),
            ))
        })
        .unwrap();
        let mut got = Vec::new();
        let err = bad.read_to_end(&mut got).await.unwrap_err();
        assert!(err.to_string().contains("export layer x"), "{err}");
        // The producer's cause reaches the reader once, through the chain.
        let printed = crate::error::Report(&err).to_string();
        let cause = io::Error::from(io::ErrorKind::NotFound).to_string();
        assert_eq!(printed, format!("export layer x: {cause}"));
    }
}
