//! Sessions (the async stack) over a [`SimNetwork`], in tokio's virtual clock.

use crate::proto::Config;
use crate::transport::SimNetwork;
use crate::{Session, SessionError};

/// Two established sessions over `net`: `a` connects from `a_cfg`'s inbox
/// to `b_cfg`'s, whose listener accepts it. Each inbox holds 65,536
/// messages (NATS's default subscription capacity). For tests and examples
/// of code that uses swp, in virtual time.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), swp::SessionError> {
/// use swp::{proto::Config, simnet::LinkConfig, testkit, transport::SimNetwork};
/// let net = SimNetwork::new(7, LinkConfig::new().loss(0.1));
/// let (a, b) = testkit::session_pair(&net, Config::new("a", "b"), Config::new("b", "")).await?;
/// a.send("over a lossy network").await?;
/// assert_eq!(b.recv().await?.unwrap(), "over a lossy network");
/// # Ok(()) }
/// ```
pub async fn session_pair(
    net: &SimNetwork,
    a_cfg: Config,
    b_cfg: Config,
) -> Result<(Session, Session), SessionError> {
    const CAPACITY: usize = 65_536;
    let tb = net.transport(b_cfg.local_inbox(), CAPACITY);
    let ta = net.transport(a_cfg.local_inbox(), CAPACITY);
    let listener = Session::listen(tb, b_cfg).await?;
    let (a, b) = tokio::join!(Session::connect(ta, a_cfg), listener.accept());
    Ok((a?, b?))
}
