//! Progress on long imports: a bar on a terminal, after the first second; nothing when
//! stderr is piped.

use std::io::IsTerminal;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::io::{AsyncRead, ReadBuf};

/// Wraps a reader and reports the bytes read through it.
pub struct ProgressReader<R> {
    inner: R,
    bar: Option<ProgressBar>,
    started: Instant,
    shown: bool,
}

impl<R> ProgressReader<R> {
    /// `total` is the input's size when known.
    pub fn new(inner: R, total: Option<u64>, what: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::hidden());
            let style = if total.is_some() {
                "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
            } else {
                "{msg} {bytes} {binary_bytes_per_sec}"
            };
            if let Ok(s) = ProgressStyle::with_template(style) {
                bar.set_style(s.progress_chars("=> "));
            }
            bar.set_message(what.to_owned());
            bar
        });
        ProgressReader {
            inner,
            bar,
            started: Instant::now(),
            shown: false,
        }
    }

    /// A handle to clear the bar once the reader has been handed away.
    pub fn bar(&self) -> Option<ProgressBar> {
        self.bar.clone()
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for ProgressReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        let this = &mut *self;
        if let Some(bar) = &this.bar {
            bar.inc(n as u64);
            if !this.shown && this.started.elapsed() > Duration::from_secs(1) {
                bar.set_draw_target(ProgressDrawTarget::stderr());
                this.shown = true;
            }
        }
        result
    }
}
