//! The byte-stream view: `AsyncRead` / `AsyncWrite` for a session and its
//! halves, one implementation on the shared state.

use super::*;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub(super) fn poll_read_impl(
    shared: &Shared,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    match shared.poll_read_with(cx, |c| c.read(buf.initialize_unfilled())) {
        Poll::Ready(Ok(Some(n))) => {
            buf.advance(n);
            shared.nudge();
            Poll::Ready(Ok(()))
        }
        Poll::Ready(Ok(None)) => Poll::Ready(Ok(())),
        Poll::Ready(Err(e)) => Poll::Ready(Err(e.into())),
        Poll::Pending => Poll::Pending,
    }
}

pub(super) fn poll_write_impl(
    shared: &Shared,
    cx: &mut Context<'_>,
    buf: &[u8],
) -> Poll<io::Result<usize>> {
    if buf.is_empty() {
        return Poll::Ready(Ok(0));
    }
    let mut g = shared.lock();
    let idle = g.conn.bytes_acked() >= g.conn.bytes_written();
    match g.conn.write(buf) {
        Ok(n) if n > 0 && idle => {
            shared.send_now(&mut g);
            drop(g);
            shared.nudge();
            Poll::Ready(Ok(n))
        }
        Ok(0) => match g.failure() {
            Some(e) => Poll::Ready(Err(e.into())),
            None => {
                g.park(cx.waker());
                Poll::Pending
            }
        },
        Ok(n) => {
            drop(g);
            shared.nudge();
            Poll::Ready(Ok(n))
        }
        Err(e) => Poll::Ready(Err(g.refused(e).into())),
    }
}

pub(super) fn poll_flush_impl(shared: &Shared, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    let mut g = shared.lock();
    if let Some(e) = g.failure() {
        return Poll::Ready(Err(e.into()));
    }
    if g.conn.bytes_acked() >= g.conn.bytes_written() {
        return Poll::Ready(Ok(()));
    }
    g.park(cx.waker());
    Poll::Pending
}

pub(super) fn poll_shutdown_impl(shared: &Shared, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    let mut g = shared.lock();
    if !g.shutdown_requested {
        g.shutdown_requested = true;
        g.conn.close(now());
        drop(g);
        shared.nudge();
        g = shared.lock();
    }
    if let Some(e) = g.failure() {
        return Poll::Ready(Err(e.into()));
    }
    if g.close_done() {
        return Poll::Ready(Ok(()));
    }
    g.park(cx.waker());
    Poll::Pending
}

impl AsyncRead for Session {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        poll_read_impl(&self.shared, cx, buf)
    }
}

impl AsyncWrite for Session {
    /// Returns once the bytes are accepted into the send buffer; waits (never
    /// spins) while it is full.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_write_impl(&self.shared, cx, buf)
    }
    /// Completes when everything written has been acknowledged by the peer.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_flush_impl(&self.shared, cx)
    }
    /// Sends our Fin (after all data is acknowledged) and completes when the
    /// peer has acknowledged it. Reading goes on until the peer's Fin.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_shutdown_impl(&self.shared, cx)
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        poll_read_impl(&self.shared, cx, buf)
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        poll_write_impl(&self.shared, cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_flush_impl(&self.shared, cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_shutdown_impl(&self.shared, cx)
    }
}
