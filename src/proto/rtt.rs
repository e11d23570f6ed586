//! Round-trip time estimation and the retransmission timeout (RFC 6298).
//!
//! * §2.2: the first sample `R` sets `SRTT = R`, `RTTVAR = R/2`.
//! * §2.3: later samples: `RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|`, then
//!   `SRTT = 7/8 SRTT + 1/8 R`.
//! * `RTO = SRTT + max(G, 4 RTTVAR)`, clamped to `[min_rto, max_rto]` (§2.4).
//! * §5.5: each expiry of the retransmission timer doubles the RTO
//!   ("backoff"); a new sample or new acknowledgement resets it.
//! * Karn's rule (§3): the caller only feeds samples from segments that were
//!   never retransmitted; see `send.rs`.

use std::time::Duration;

/// Clock granularity `G` of RFC 6298 §2.
const GRANULARITY: Duration = Duration::from_millis(1);

/// Smoothed RTT, RTT variation and the resulting RTO.
///
/// ```
/// use swp::proto::RttEstimator;
/// use std::time::Duration;
/// let mut r = RttEstimator::new(Duration::from_millis(500), Duration::from_millis(10), Duration::from_secs(10));
/// r.on_sample(Duration::from_millis(100));
/// assert_eq!(r.srtt(), Some(Duration::from_millis(100)));
/// assert_eq!(r.rttvar(), Duration::from_millis(50));
/// assert_eq!(r.rto(), Duration::from_millis(300)); // 100 + 4 × 50
/// ```
#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    min_rtt: Option<Duration>,
    latest: Option<Duration>,
    samples: u64,
    initial_rto: Duration,
    min_rto: Duration,
    max_rto: Duration,
    backoff: u32,
}

impl RttEstimator {
    /// An estimator with no samples: the RTO is `initial_rto` until the first.
    ///
    /// ```
    /// # use swp::proto::RttEstimator;
    /// # use std::time::Duration;
    /// # let ms = Duration::from_millis;
    /// let r = RttEstimator::new(ms(200), ms(10), ms(10_000));
    /// assert_eq!(r.rto(), ms(200)); // no sample yet
    /// assert_eq!(r.srtt(), None);
    /// ```
    pub fn new(initial_rto: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            min_rtt: None,
            latest: None,
            samples: 0,
            initial_rto,
            min_rto,
            max_rto: max_rto.max(min_rto),
            backoff: 0,
        }
    }

    /// Adds one RTT measurement and resets the backoff.
    ///
    /// ```
    /// # use swp::proto::RttEstimator;
    /// # use std::time::Duration;
    /// # let ms = Duration::from_millis;
    /// let mut r = RttEstimator::new(ms(200), ms(10), ms(10_000));
    /// r.on_sample(ms(40));
    /// // RFC 6298: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4 RTTVAR.
    /// assert_eq!((r.srtt(), r.rttvar(), r.rto()), (Some(ms(40)), ms(20), ms(120)));
    /// r.on_sample(ms(40));
    /// assert_eq!(r.srtt(), Some(ms(40)));
    /// assert_eq!(r.rttvar(), ms(15)); // (3 * 20 + 0) / 4
    /// ```
    pub fn on_sample(&mut self, r: Duration) {
        self.samples += 1;
        self.latest = Some(r);
        self.min_rtt = Some(self.min_rtt.map_or(r, |m| m.min(r)));
        // A borrowed peer estimate does not count as history.
        let srtt = if self.samples == 1 { None } else { self.srtt };
        match srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
        self.backoff = 0;
    }

    /// Uses the peer's estimate (every packet carries the sender's SRTT and
    /// RTTVAR) until this side has a sample of its own: the path is the same
    /// both ways, and a side that only receives would otherwise retransmit
    /// its Fin at the initial RTO. The first real sample replaces it.
    ///
    /// ```
    /// # use swp::proto::RttEstimator;
    /// # use std::time::Duration;
    /// # let ms = Duration::from_millis;
    /// let mut r = RttEstimator::new(ms(200), ms(10), ms(10_000));
    /// r.seed_from_peer(ms(30), ms(5)); // what the peer measured
    /// assert_eq!(r.rto(), ms(50));
    /// assert_eq!(r.samples(), 0);
    /// r.on_sample(ms(60)); // our first sample replaces the borrowed one
    /// assert_eq!(r.srtt(), Some(ms(60)));
    /// ```
    pub fn seed_from_peer(&mut self, srtt: Duration, rttvar: Duration) {
        if self.samples == 0 && !srtt.is_zero() {
            self.srtt = Some(srtt);
            self.rttvar = rttvar;
        }
    }

    /// The timer expired: double the RTO (up to `max_rto`).
    ///
    /// ```
    /// # use swp::proto::RttEstimator;
    /// # use std::time::Duration;
    /// # let ms = Duration::from_millis;
    /// let mut r = RttEstimator::new(ms(200), ms(10), ms(1000));
    /// r.on_timeout();
    /// assert_eq!(r.rto(), ms(400)); // doubled
    /// for _ in 0..10 { r.on_timeout(); }
    /// assert_eq!(r.rto(), ms(1000)); // capped at max_rto
    /// ```
    pub fn on_timeout(&mut self) {
        self.backoff = (self.backoff + 1).min(31);
    }

    /// New data was acknowledged: stop backing off.
    ///
    /// ```
    /// # use swp::proto::RttEstimator;
    /// # use std::time::Duration;
    /// # let ms = Duration::from_millis;
    /// let mut r = RttEstimator::new(ms(200), ms(10), ms(10_000));
    /// r.on_timeout();
    /// r.on_timeout();
    /// assert_eq!(r.backoff(), 2);
    /// r.reset_backoff(); // new data was acknowledged
    /// assert_eq!(r.rto(), ms(200));
    /// ```
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    /// The RTO without backoff: `SRTT + max(G, 4 RTTVAR)` (the initial RTO
    /// before any estimate), clamped to `[min_rto, max_rto]`.
    ///
    /// ```
    /// use swp::proto::RttEstimator;
    /// use std::time::Duration;
    /// let mut r = RttEstimator::new(Duration::from_millis(500), Duration::from_millis(10), Duration::from_secs(10));
    /// r.on_sample(Duration::from_millis(40));
    /// r.on_timeout(); // backoff doubles rto(), not base_rto()
    /// // SRTT 40 ms + 4 x RTTVAR 20 ms
    /// assert_eq!(r.base_rto(), Duration::from_millis(120));
    /// assert_eq!(r.rto(), Duration::from_millis(240));
    /// ```
    pub fn base_rto(&self) -> Duration {
        let base = match self.srtt {
            None => self.initial_rto,
            Some(srtt) => srtt + GRANULARITY.max(self.rttvar * 4),
        };
        base.clamp(self.min_rto, self.max_rto)
    }

    /// The retransmission timeout to use now, backoff included.
    ///
    /// ```
    /// # use swp::proto::RttEstimator;
    /// # use std::time::Duration;
    /// # let ms = Duration::from_millis;
    /// let mut r = RttEstimator::new(ms(200), ms(10), ms(10_000));
    /// r.on_sample(Duration::from_micros(100));
    /// assert_eq!(r.rto(), ms(10)); // never below min_rto
    /// ```
    pub fn rto(&self) -> Duration {
        let base = self.base_rto();
        base.saturating_mul(1u32 << self.backoff.min(20))
            .min(self.max_rto)
    }

    /// Smoothed RTT, once there is a sample.
    ///
    /// ```
    /// # use swp::proto::RttEstimator;
    /// # use std::time::Duration;
    /// # let ms = Duration::from_millis;
    /// let mut r = RttEstimator::new(ms(200), ms(10), ms(10_000));
    /// r.on_sample(ms(80));
    /// r.on_sample(ms(16));
    /// assert_eq!(r.srtt(), Some(ms(72))); // 7/8 old + 1/8 new
    /// ```
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }
    /// RTT variation (zero before the first sample).
    ///
    /// ```
    /// # use swp::proto::RttEstimator;
    /// # use std::time::Duration;
    /// # let ms = Duration::from_millis;
    /// let mut r = RttEstimator::new(ms(200), ms(10), ms(10_000));
    /// assert_eq!(r.rttvar(), Duration::ZERO);
    /// r.on_sample(ms(50));
    /// assert_eq!(r.rttvar(), ms(25));
    /// ```
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }
    /// Smallest sample seen.
    ///
    /// ```
    /// # use swp::proto::RttEstimator;
    /// # use std::time::Duration;
    /// # let ms = Duration::from_millis;
    /// let mut r = RttEstimator::new(ms(200), ms(10), ms(10_000));
    /// for s in [30, 12, 45] { r.on_sample(ms(s)); }
    /// assert_eq!(r.min_rtt(), Some(ms(12)));
    /// ```
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }
    /// Most recent sample.
    ///
    /// ```
    /// # use swp::proto::RttEstimator;
    /// # use std::time::Duration;
    /// # let ms = Duration::from_millis;
    /// let mut r = RttEstimator::new(ms(200), ms(10), ms(10_000));
    /// for s in [30, 12, 45] { r.on_sample(ms(s)); }
    /// assert_eq!(r.latest(), Some(ms(45)));
    /// ```
    pub fn latest(&self) -> Option<Duration> {
        self.latest
    }
    /// Number of samples taken.
    ///
    /// ```
    /// # use swp::proto::RttEstimator;
    /// # use std::time::Duration;
    /// # let ms = Duration::from_millis;
    /// let mut r = RttEstimator::new(ms(200), ms(10), ms(10_000));
    /// r.on_sample(ms(5));
    /// r.on_sample(ms(6));
    /// assert_eq!(r.samples(), 2);
    /// ```
    pub fn samples(&self) -> u64 {
        self.samples
    }
    /// Consecutive timeouts since the last sample/progress.
    ///
    /// ```
    /// # use swp::proto::RttEstimator;
    /// # use std::time::Duration;
    /// # let ms = Duration::from_millis;
    /// let mut r = RttEstimator::new(ms(200), ms(10), ms(10_000));
    /// r.on_timeout();
    /// assert_eq!(r.backoff(), 1);
    /// r.on_sample(ms(20)); // a sample ends the backoff
    /// assert_eq!(r.backoff(), 0);
    /// ```
    pub fn backoff(&self) -> u32 {
        self.backoff
    }
}
