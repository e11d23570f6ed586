//! The two halves of a session (`Session::into_split`): reading and
//! writing from different tasks, each with the message API.

use super::*;
use crate::proto::MessageId;
use bytes::Bytes;
use std::sync::Arc;

/// The reading half of a [`Session`] (from [`Session::into_split`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new());
/// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
/// let (rd, _wr) = b.into_split();
/// a.send("to the read half").await?;
/// assert_eq!(rd.read_chunk(usize::MAX).await?.unwrap(), "to the read half");
/// # Ok(()) }
/// ```
pub struct ReadHalf {
    pub(super) shared: Arc<Shared>,
    pub(super) _guard: Arc<HandleGuard>,
}

/// The writing half of a [`Session`] (from [`Session::into_split`]).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
/// # let net = SimNetwork::new(1, LinkConfig::new());
/// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
/// use tokio::io::AsyncWriteExt;
/// let (_rd, mut wr) = a.into_split();
/// wr.write_all(b"from the write half").await?;
/// wr.shutdown().await?;
/// assert_eq!(b.recv().await?.unwrap(), "from the write half");
/// # Ok(()) }
/// ```
pub struct WriteHalf {
    pub(super) shared: Arc<Shared>,
    pub(super) _guard: Arc<HandleGuard>,
}

impl std::fmt::Debug for ReadHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadHalf")
    }
}
impl std::fmt::Debug for WriteHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteHalf")
    }
}

impl ReadHalf {
    /// Counters of the session.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (rd, _wr) = b.into_split();
    /// a.send_and_wait("x").await?;
    /// assert_eq!(rd.stats().protocol.data.packets_received, 1);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> SessionStats {
        stats(&self.shared)
    }

    /// As [`Session::close_reason`]: why the session closed, once it has.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// use swp::proto::CloseReason;
    /// let (rd, _wr) = b.into_split();
    /// assert_eq!(rd.close_reason(), None);
    /// a.abort_with("done here");
    /// assert_eq!(rd.recv().await.ok(), None); // the Reset arrived
    /// assert!(matches!(rd.close_reason(), Some(CloseReason::Reset { .. })));
    /// # Ok(()) }
    /// ```
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.lock().conn.close_reason().cloned()
    }

    /// As [`Session::read_chunk`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (rd, _wr) = b.into_split();
    /// a.send("chunk").await?;
    /// assert_eq!(rd.read_chunk(3).await?.unwrap(), "chu");
    /// # Ok(()) }
    /// ```
    pub async fn read_chunk(&self, max: usize) -> Result<Option<Bytes>, SessionError> {
        self.shared.read_chunk(max).await
    }

    /// As [`Session::recv`]: the next whole message, `None` at the peer's
    /// end of stream.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (rd, _wr) = b.into_split();
    /// a.send("").await?; // a 0-byte message is a message
    /// a.send("two").await?;
    /// assert_eq!(rd.recv().await?.unwrap(), "");
    /// assert_eq!(rd.recv().await?.unwrap(), "two");
    /// a.close().await?;
    /// assert_eq!(rd.recv().await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn recv(&self) -> Result<Option<Bytes>, SessionError> {
        self.shared.recv().await
    }

    /// As [`Session::recv_asap`]: the next message of the peer's
    /// unreliable side channel, `None` once the session has ended.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "").asap(Some(8))).await?;
    /// let (rd, _wr) = b.into_split();
    /// a.close().await?;
    /// assert_eq!(rd.recv_asap().await, None); // ended, nothing was sent
    /// # Ok(()) }
    /// ```
    pub async fn recv_asap(&self) -> Option<Bytes> {
        self.shared.recv_asap().await
    }

    /// As [`Session::abort_with`]: ends the session at once and tells the
    /// peer why (a Reset carrying `reason`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (rd, _wr) = b.into_split();
    /// rd.abort_with("reader gave up");
    /// let err = a.recv().await.unwrap_err();
    /// assert!(err.to_string().contains("reader gave up"), "{err}");
    /// # Ok(()) }
    /// ```
    pub fn abort_with(&self, reason: impl AsRef<str>) {
        abort_with(&self.shared, reason.as_ref());
    }
}

impl WriteHalf {
    /// Counters of the session.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// use tokio::io::AsyncWriteExt;
    /// let (_rd, mut wr) = a.into_split();
    /// wr.write_all(b"x").await?;
    /// wr.flush().await?; // waits for the peer's acknowledgement
    /// assert_eq!(wr.stats().protocol.app.bytes_acked, 1);
    /// # drop(b);
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> SessionStats {
        stats(&self.shared)
    }

    /// As [`Session::close_reason`]: why the session closed, once it has.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// use swp::proto::CloseReason;
    /// let (_rd, wr) = a.into_split();
    /// wr.abort_with("changed my mind");
    /// let reason = "changed my mind".to_string();
    /// assert_eq!(wr.close_reason(), Some(CloseReason::Aborted { reason }));
    /// # drop(b);
    /// # Ok(()) }
    /// ```
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.shared.lock().conn.close_reason().cloned()
    }

    /// As [`Session::send`]: queues one message, boundaries preserved.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (_rd, wr) = a.into_split();
    /// let id = wr.send("one").await?;
    /// wr.wait_acked(id).await?;
    /// assert!(wr.is_acked(id));
    /// assert_eq!(b.recv().await?.unwrap(), "one");
    /// # Ok(()) }
    /// ```
    pub async fn send(&self, msg: impl Into<Bytes>) -> Result<MessageId, SessionError> {
        self.shared.send(msg.into()).await
    }

    /// As [`Session::send_and_wait`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (_rd, wr) = a.into_split();
    /// wr.send_and_wait("acked").await?;
    /// assert_eq!(b.recv().await?.unwrap(), "acked");
    /// # Ok(()) }
    /// ```
    pub async fn send_and_wait(&self, msg: impl Into<Bytes>) -> Result<(), SessionError> {
        self.shared.send_and_wait(msg.into()).await
    }

    /// As [`Session::wait_acked`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (_rd, wr) = a.into_split();
    /// let id = wr.send("x").await?;
    /// wr.wait_acked(id).await?;
    /// # drop(b);
    /// # Ok(()) }
    /// ```
    pub async fn wait_acked(&self, id: MessageId) -> Result<(), SessionError> {
        self.shared.wait_acked(id).await
    }

    /// As [`Session::is_acked`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (_rd, wr) = a.into_split();
    /// let id = wr.send("x").await?;
    /// wr.flush_acked().await?;
    /// assert!(wr.is_acked(id));
    /// # drop(b);
    /// # Ok(()) }
    /// ```
    pub fn is_acked(&self, id: MessageId) -> bool {
        self.shared.lock().conn.is_acked(id)
    }

    /// As [`Session::flush_acked`]: waits until every byte and message
    /// written so far is acknowledged.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (_rd, wr) = a.into_split();
    /// wr.send("a").await?;
    /// wr.send("b").await?;
    /// wr.flush_acked().await?;
    /// assert_eq!(wr.stats().protocol.app.bytes_acked, 2);
    /// # drop(b);
    /// # Ok(()) }
    /// ```
    pub async fn flush_acked(&self) -> Result<(), SessionError> {
        self.shared.flush_acked().await
    }

    /// As [`Session::abort_with`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use swp::{proto::Config, simnet::LinkConfig, transport::SimNetwork};
    /// # let net = SimNetwork::new(1, LinkConfig::new());
    /// # let (a, b) = swp::testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
    /// let (_rd, wr) = a.into_split();
    /// wr.abort_with("writer gave up");
    /// let err = b.recv().await.unwrap_err();
    /// assert!(err.to_string().contains("writer gave up"), "{err}");
    /// # Ok(()) }
    /// ```
    pub fn abort_with(&self, reason: impl AsRef<str>) {
        abort_with(&self.shared, reason.as_ref());
    }
}
