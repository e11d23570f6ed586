//! The session's inbox subscription, which two tasks take packets from: the
//! driver, always, and a reader that waits for data, itself.
//!
//! Without the second, a packet that a waiting reader wants crosses two
//! tasks: the NATS client's connection task wakes the driver, the driver
//! feeds the engine and wakes the reader. A request/reply round trip pays
//! that extra wake-up on both sides. So a reader that finds nothing to read
//! feeds the engine from the subscription itself, under the same lock the
//! driver uses, so the engine sees every packet once and in arrival order
//! whichever task took it.
//!
//! A stream remembers only one waker, so the subscription is always polled
//! with one constant *fan-out* waker that wakes both: the driver (whose
//! waker it holds from the driver's last poll) and the waiting reader (if
//! one waits). The driver therefore runs after every arrival, even when
//! the reader took the packets, and does what follows input (acks, timers,
//! waking writers): [`Inbox::taken_by_reader`] tells it that there was
//! input.

use crate::proto::Connection;
use crate::transport::Incoming;
use futures::StreamExt;
use futures::task::AtomicWaker;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;

/// The two tasks to wake when a packet arrives.
#[derive(Default)]
struct Fanout {
    driver: AtomicWaker,
    reader: AtomicWaker,
    /// Wake the reader before the driver. The aim is that a waiting reader
    /// runs first: tokio's multi-thread runtime runs the task woken last
    /// next on this worker (its LIFO slot), so there the driver is woken
    /// first (paired runs: ping-pong p50 1.13x raw against 1.18x the other
    /// way round); a current-thread runtime runs tasks in the order woken,
    /// so there the reader is. (Which also makes the simulated tests,
    /// which run on one thread, take this path.)
    reader_first: bool,
}

impl Wake for Fanout {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if self.reader_first {
            self.reader.wake();
            self.driver.wake();
        } else {
            self.driver.wake();
            self.reader.wake();
        }
    }
}

/// What a pull from the subscription found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pulled {
    /// Nothing has arrived.
    Nothing,
    /// This many packets went to the engine.
    Packets(usize),
    /// The subscription ended (the NATS connection closed or drained).
    Ended,
}

pub(super) struct Inbox {
    /// `None` once it has ended: an ended stream answers at once, for ever,
    /// so it is not polled again.
    stream: Option<Incoming>,
    fanout: Arc<Fanout>,
    /// The fan-out waker, made once (a subscription keeps a waker it
    /// already has without cloning it again).
    waker: Waker,
    /// A reader took packets since the driver last looked.
    pub(super) taken_by_reader: bool,
}

impl Inbox {
    pub(super) fn new(stream: Incoming) -> Self {
        let current_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread);
        let fanout = Arc::new(Fanout {
            reader_first: current_thread,
            ..Fanout::default()
        });
        Self {
            stream: Some(stream),
            waker: Waker::from(fanout.clone()),
            fanout,
            taken_by_reader: false,
        }
    }

    /// The driver's pull: remembers its waker for the next arrival, then
    /// feeds the engine up to `max` packets.
    pub(super) fn pull_for_driver(
        &mut self,
        driver: &Waker,
        conn: &mut Connection,
        now: Instant,
        max: usize,
    ) -> Pulled {
        self.fanout.driver.register(driver);
        self.pull(conn, now, max)
    }

    /// A waiting reader's pull: remembers its waker for the next arrival,
    /// then feeds the engine up to `max` packets.
    pub(super) fn pull_for_reader(
        &mut self,
        reader: &Waker,
        conn: &mut Connection,
        now: Instant,
        max: usize,
    ) -> Pulled {
        self.fanout.reader.register(reader);
        let p = self.pull(conn, now, max);
        if p != Pulled::Nothing {
            self.taken_by_reader = true;
        }
        p
    }

    fn pull(&mut self, conn: &mut Connection, now: Instant, max: usize) -> Pulled {
        let Some(stream) = self.stream.as_mut() else {
            return Pulled::Nothing;
        };
        let mut cx = Context::from_waker(&self.waker);
        let mut n = 0;
        while n < max {
            match stream.poll_next_unpin(&mut cx) {
                Poll::Ready(Some(b)) => {
                    conn.handle_packet(now, b);
                    n += 1;
                }
                Poll::Ready(None) => {
                    self.stream = None;
                    return Pulled::Ended;
                }
                Poll::Pending => break,
            }
        }
        if n == 0 {
            Pulled::Nothing
        } else {
            Pulled::Packets(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Config;
    use futures::channel::mpsc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A waker that counts its wakes.
    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn counter() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count::default());
        (c.clone(), Waker::from(c))
    }
    fn woken(c: &Count) -> usize {
        c.0.load(Ordering::SeqCst)
    }

    fn setup() -> (
        mpsc::UnboundedSender<bytes::Bytes>,
        Inbox,
        Connection,
        Instant,
    ) {
        let (tx, rx) = mpsc::unbounded();
        let t0 = crate::testkit::epoch();
        let conn = Connection::listen(Config::new("b", ""), t0, 2).unwrap();
        (tx, Inbox::new(Box::pin(rx)), conn, t0)
    }

    #[test]
    fn an_arrival_wakes_the_driver_and_the_waiting_reader_and_either_may_take_it() {
        let (tx, mut inbox, mut conn, t0) = setup();
        let (d, dw) = counter();
        let (r, rw) = counter();
        assert_eq!(
            inbox.pull_for_driver(&dw, &mut conn, t0, 8),
            Pulled::Nothing
        );
        assert_eq!(
            inbox.pull_for_reader(&rw, &mut conn, t0, 8),
            Pulled::Nothing
        );
        assert!(!inbox.taken_by_reader);
        tx.unbounded_send(bytes::Bytes::from_static(b"not a packet"))
            .unwrap();
        // The subscription holds one waker, the fan-out: both tasks learn.
        assert_eq!((woken(&d), woken(&r)), (1, 1));
        // The reader takes it; the driver is told there was input.
        assert_eq!(
            inbox.pull_for_reader(&rw, &mut conn, t0, 8),
            Pulled::Packets(1)
        );
        assert!(inbox.taken_by_reader);
        assert_eq!(conn.stats().dropped.invalid, 1, "the engine saw it once");
        // The driver's next pull finds nothing more, yet was woken above.
        assert_eq!(
            inbox.pull_for_driver(&dw, &mut conn, t0, 8),
            Pulled::Nothing
        );
        // Taken by whoever pulls first, at most `max` at a time, in order.
        for _ in 0..3 {
            tx.unbounded_send(bytes::Bytes::from_static(b"x")).unwrap();
        }
        assert_eq!(
            inbox.pull_for_driver(&dw, &mut conn, t0, 2),
            Pulled::Packets(2)
        );
        assert_eq!(
            inbox.pull_for_reader(&rw, &mut conn, t0, 8),
            Pulled::Packets(1)
        );
        assert_eq!(conn.stats().dropped.invalid, 4);
    }

    #[test]
    fn a_reader_that_gave_up_waiting_does_not_take_the_drivers_wake() {
        let (tx, mut inbox, mut conn, t0) = setup();
        let (d, dw) = counter();
        let (r, rw) = counter();
        inbox.pull_for_driver(&dw, &mut conn, t0, 8);
        // A reader waits, then its future is dropped (a timeout, a select).
        inbox.pull_for_reader(&rw, &mut conn, t0, 8);
        tx.unbounded_send(bytes::Bytes::from_static(b"x")).unwrap();
        assert_eq!(woken(&d), 1, "the driver must still learn of arrivals");
        assert_eq!(woken(&r), 1);
        assert_eq!(
            inbox.pull_for_driver(&dw, &mut conn, t0, 8),
            Pulled::Packets(1)
        );
        // Later arrivals wake the driver only.
        tx.unbounded_send(bytes::Bytes::from_static(b"y")).unwrap();
        assert_eq!((woken(&d), woken(&r)), (2, 1));
    }

    #[test]
    fn an_ended_subscription_is_reported_once_and_never_polled_again() {
        let (tx, mut inbox, mut conn, t0) = setup();
        let (_r, rw) = counter();
        drop(tx);
        assert_eq!(inbox.pull_for_reader(&rw, &mut conn, t0, 8), Pulled::Ended);
        assert_eq!(
            inbox.pull_for_reader(&rw, &mut conn, t0, 8),
            Pulled::Nothing
        );
        let (_d, dw) = counter();
        assert_eq!(
            inbox.pull_for_driver(&dw, &mut conn, t0, 8),
            Pulled::Nothing
        );
    }
}
