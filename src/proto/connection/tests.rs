//! Scripted tests of the engine, one per state and rule (smoltcp style):
//! packets are written by hand, fed in, and what comes out is checked field
//! by field. The simulator tests (tests/) cover the same engine end to end.

use super::*;
use crate::proto::codec;

const A: &str = "a.inbox";
const B: &str = "b.inbox";
const PEER_NONCE: &str = "peer-nonce";

fn t0() -> Instant {
    crate::testkit::epoch()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Everything the engine wants to send now, decoded.
fn out(c: &mut Connection, now: Instant) -> Vec<Packet> {
    std::iter::from_fn(|| c.poll_transmit(now))
        .map(|t| codec::decode(&t.payload).expect("the engine's own packets decode"))
        .collect()
}

fn kinds(ps: &[Packet]) -> Vec<Kind> {
    ps.iter().map(|p| p.kind).collect()
}

fn feed(c: &mut Connection, now: Instant, p: &Packet) {
    c.handle_packet(now, codec::encode(p));
}

/// A packet from the peer (B) to `c` (A), after the handshake.
fn from_peer(c: &Connection, kind: Kind) -> Packet {
    let mut p = Packet::new(kind);
    p.from = B.into();
    p.dest = A.into();
    p.from_nonce = PEER_NONCE.into();
    p.dest_nonce = c.local_nonce().into();
    p.wnd_seq = 64;
    p.wnd_bytes = 1 << 20;
    p
}

/// A listener on B that heard a Syn from A.
fn syn_from(from: &str) -> Packet {
    let mut syn = Packet::new(Kind::Syn);
    syn.from = from.into();
    syn.dest = B.into();
    syn.from_nonce = PEER_NONCE.into();
    syn.wnd_seq = 64;
    syn.wnd_bytes = 1 << 20;
    syn
}

/// A connected to B (the peer scripted by hand): returns A established.
fn established() -> Connection {
    let mut a = Connection::connect(Config::new(A, B), t0(), 1).unwrap();
    let syn = out(&mut a, t0());
    assert_eq!(kinds(&syn), vec![Kind::Syn]);
    let mut synack = from_peer(&a, Kind::SynAck);
    synack.ts_echo = syn[0].ts;
    feed(&mut a, t0(), &synack);
    assert_eq!(a.state(), State::Established);
    assert_eq!(kinds(&out(&mut a, t0())), vec![Kind::EstabAck]);
    while a.poll_event().is_some() {}
    a
}

#[test]
fn listen_answers_only_a_syn_and_its_synack_carries_both_nonces() {
    let mut b = Connection::listen(Config::new(B, ""), t0(), 2).unwrap();
    let mut stray = syn_from(A);
    stray.kind = Kind::Data;
    feed(&mut b, t0(), &stray);
    assert_eq!(b.stats().dropped.unexpected, 1);
    assert!(
        out(&mut b, t0()).is_empty(),
        "a listener speaks when spoken to"
    );
    feed(&mut b, t0(), &syn_from(A));
    assert_eq!(b.state(), State::SynReceived);
    let sa = out(&mut b, t0());
    assert_eq!(kinds(&sa), vec![Kind::SynAck]);
    assert_eq!(
        (sa[0].dest.as_str(), sa[0].dest_nonce.as_str()),
        (A, PEER_NONCE)
    );
    assert_eq!(sa[0].from_nonce.as_str(), b.local_nonce());
    assert!(
        sa[0].has(flags::BATCH_OK),
        "a native listener reads batches"
    );
    assert!(
        sa[0].wnd_seq > 0 && sa[0].wnd_bytes > 0,
        "its window goes with it"
    );
}

#[test]
fn a_listener_for_one_peer_drops_a_syn_from_another_inbox() {
    let mut b = Connection::listen(Config::new(B, A), t0(), 2).unwrap();
    feed(&mut b, t0(), &syn_from("intruder"));
    assert_eq!((b.state(), b.stats().dropped.foreign), (State::Listen, 1));
    let mut wrong_dest = syn_from(A);
    wrong_dest.dest = "elsewhere".into();
    feed(&mut b, t0(), &wrong_dest);
    assert_eq!(b.stats().dropped.foreign, 2);
}

#[test]
fn syn_received_answers_a_retransmitted_syn_with_the_same_nonce() {
    let mut b = Connection::listen(Config::new(B, ""), t0(), 2).unwrap();
    feed(&mut b, t0(), &syn_from(A));
    let first = out(&mut b, t0());
    feed(&mut b, t0() + ms(500), &syn_from(A)); // our SynAck was lost
    let again = out(&mut b, t0() + ms(500));
    assert_eq!(kinds(&again), vec![Kind::SynAck]);
    assert_eq!(again[0].from_nonce, first[0].from_nonce);
    assert_eq!(b.state(), State::SynReceived);
    // Any packet with our nonce completes the handshake (a lost EstabAck
    // cannot stall it): here, data.
    let mut data = syn_from(A);
    data.kind = Kind::Data;
    data.dest_nonce = b.local_nonce().into();
    data.data = Bytes::from_static(b"early");
    data.cumul_bytes = 5;
    feed(&mut b, t0() + ms(501), &data);
    assert_eq!(b.state(), State::Established);
    assert_eq!(b.held(), (1, 5));
}

#[test]
fn syn_sent_ignores_a_synack_for_another_nonce() {
    let mut a = Connection::connect(Config::new(A, B), t0(), 1).unwrap();
    out(&mut a, t0());
    let mut forged = from_peer(&a, Kind::SynAck);
    forged.dest_nonce = "not-ours".into();
    feed(&mut a, t0(), &forged);
    assert_eq!(a.state(), State::SynSent);
    assert_eq!(a.stats().dropped.unexpected, 1);
    assert!(out(&mut a, t0()).is_empty());
}

#[test]
fn syn_sent_never_opens_a_session_with_its_own_syn() {
    // Our Syn, sent back to our inbox as if from the peer (a third party
    // replaying it, or a subject mapping): a simultaneous open with our own
    // nonce would make a session that acknowledges its own data.
    let mut a = Connection::connect(Config::new(A, B), t0(), 1).unwrap();
    let mut echo = out(&mut a, t0()).remove(0);
    assert_eq!(echo.kind, Kind::Syn);
    assert_eq!(echo.from_nonce.as_str(), a.local_nonce());
    (echo.from, echo.dest) = (echo.dest.clone(), echo.from.clone());
    feed(&mut a, t0(), &echo);
    assert_eq!(a.state(), State::SynSent);
    assert_eq!(a.stats().dropped.unexpected, 1);
    assert!(out(&mut a, t0()).is_empty(), "nothing answers it");
    // A peer's own Syn (another nonce) is still a simultaneous open.
    let mut syn = from_peer(&a, Kind::Syn);
    syn.dest_nonce = Str::default();
    feed(&mut a, t0(), &syn);
    assert_eq!(a.state(), State::SynReceived);
    // And a session cannot be configured to talk to its own inbox at all.
    let same = Connection::connect(Config::new(A, A), t0(), 1).unwrap_err();
    assert!(same.to_string().contains("own inbox"), "{same}");
}

/// Drives `c`'s timers until `done` holds or 60 virtual seconds pass;
/// returns everything it sent and when.
fn run_timers(
    c: &mut Connection,
    mut now: Instant,
    done: impl Fn(&Connection) -> bool,
) -> (Instant, Vec<Packet>) {
    let mut sent = out(c, now);
    while !done(c) && now < t0() + Duration::from_secs(60) {
        let Some(next) = c.poll_timeout() else { break };
        now = next.max(now);
        c.handle_timeout(now);
        sent.extend(out(c, now));
    }
    (now, sent)
}

/// Among `sent`, the Reset (code 2) that tells A's half-open handshake it
/// was let go, in that handshake's names (`nonce`: the listener's then).
fn assert_told_it_was_let_go(sent: &[Packet], nonce: &str) {
    let reset = sent
        .iter()
        .find(|p| p.kind == Kind::Reset)
        .expect("a Reset");
    assert_eq!(
        (
            reset.dest.as_str(),
            reset.dest_nonce.as_str(),
            reset.from_nonce.as_str()
        ),
        (A, PEER_NONCE, nonce)
    );
    assert_eq!(ResetCode::from_wire(reset.seq), ResetCode::Unreachable);
}

#[test]
fn a_listener_that_keeps_listening_lets_an_unanswered_handshake_go_and_takes_the_next_client() {
    let cfg = Config::new(B, "").connect(ms(100), 3);
    let mut b = Connection::listen(cfg.clone(), t0(), 2).unwrap();
    b.set_keep_listening(true);
    feed(&mut b, t0(), &syn_from(A)); // a client that then vanishes
    let first = b.local_nonce().to_string();
    let (now, sent) = run_timers(&mut b, t0(), |b| b.state() == State::Listen);
    assert_eq!(b.state(), State::Listen, "not closed: listening again");
    assert!(!b.is_closed() && b.close_reason().is_none());
    assert_ne!(b.local_nonce(), first);
    assert_eq!(b.stats().loss.handshakes_abandoned, 1);
    assert_eq!(b.stats().loss.handshake_retransmits, 2, "counters are kept");
    // The vanished client is told, in the old session's names.
    assert_told_it_was_let_go(&sent, &first);
    assert_eq!(sent.iter().filter(|p| p.kind == Kind::SynAck).count(), 3);
    // A late packet of the old handshake is somebody else's now.
    let mut late = syn_from(A);
    late.kind = Kind::Ack;
    late.dest_nonce = first.as_str().into();
    feed(&mut b, now, &late);
    assert_eq!(b.state(), State::Listen);
    // The next client gets a session as usual.
    let mut next = syn_from("c.inbox");
    next.from_nonce = "next-client".into();
    feed(&mut b, now, &next);
    assert_eq!(b.state(), State::SynReceived);
    let sa = out(&mut b, now);
    assert_eq!(kinds(&sa), vec![Kind::SynAck]);
    assert_eq!(sa[0].dest.as_str(), "c.inbox");
    let mut estab = syn_from("c.inbox");
    estab.kind = Kind::EstabAck;
    estab.from_nonce = "next-client".into();
    estab.dest_nonce = b.local_nonce().into();
    feed(&mut b, now, &estab);
    assert_eq!(b.state(), State::Established);
    // Without keep-listening (a service's session) the same silence ends it.
    let mut once = Connection::listen(cfg, t0(), 2).unwrap();
    feed(&mut once, t0(), &syn_from(A));
    run_timers(&mut once, t0(), |c| c.is_closed());
    assert!(matches!(
        once.close_reason(),
        Some(CloseReason::ConnectTimeout { attempts: 3, .. })
    ));
    assert_eq!(once.stats().loss.handshakes_abandoned, 0);
}

#[test]
fn a_half_open_handshake_silent_for_an_interval_yields_to_the_next_clients_syn() {
    // A stray or forged Syn (or a client that died after it) used to hold a
    // point-to-point listener for the whole handshake budget, dropping
    // every real client's Syn meanwhile.
    let mut b = Connection::listen(Config::new(B, ""), t0(), 2).unwrap();
    b.set_keep_listening(true);
    feed(&mut b, t0(), &syn_from(A)); // never heard again
    let held = b.local_nonce().to_string();
    out(&mut b, t0());
    let interval = ms(500); // the first SynAck's wait: the initial RTO
    let syn_of = |from: &str, nonce: &str| {
        let mut p = syn_from(from);
        p.from_nonce = nonce.into();
        p
    };
    // Within the interval the handshake holds; the newcomer gets a SYN
    // cookie (below, and the next test), nothing else changes.
    feed(
        &mut b,
        t0() + interval - ms(1),
        &syn_of("c.inbox", "client-c"),
    );
    assert_eq!(
        (b.state(), b.local_nonce()),
        (State::SynReceived, held.as_str())
    );
    assert_eq!(b.remote_inbox(), A);
    let cookie = out(&mut b, t0() + interval - ms(1));
    assert_eq!(kinds(&cookie), vec![Kind::SynAck]);
    assert_eq!(
        (cookie[0].dest.as_str(), cookie[0].dest_nonce.as_str()),
        ("c.inbox", "client-c")
    );
    assert_ne!(cookie[0].from_nonce.as_str(), held);
    // A Syn retransmitted by the client held proves it is there: the
    // interval runs again from it.
    let at = t0() + ms(400);
    feed(&mut b, at, &syn_from(A));
    out(&mut b, at);
    feed(
        &mut b,
        at + interval - ms(1),
        &syn_of("c.inbox", "client-c"),
    );
    assert_eq!(b.remote_inbox(), A);
    // Silent for a whole interval: the newcomer takes the listener, and the
    // silent client is told (in the old session's names).
    let now = at + interval;
    feed(&mut b, now, &syn_of("c.inbox", "client-c"));
    assert_eq!(b.state(), State::SynReceived);
    assert_eq!(b.remote_inbox(), "c.inbox");
    assert_ne!(b.local_nonce(), held);
    assert_eq!(b.stats().loss.handshakes_abandoned, 1);
    let sent = out(&mut b, now);
    let reset = sent
        .iter()
        .find(|p| p.kind == Kind::Reset)
        .expect("a Reset");
    assert_eq!(
        (reset.dest.as_str(), reset.dest_nonce.as_str()),
        (A, PEER_NONCE)
    );
    assert_eq!(reset.from_nonce.as_str(), held);
    let sa = sent
        .iter()
        .find(|p| p.kind == Kind::SynAck)
        .expect("a SynAck");
    assert_eq!(
        (sa.dest.as_str(), sa.dest_nonce.as_str()),
        ("c.inbox", "client-c")
    );
    // Not for a listener that takes one Syn (a service's session), nor for
    // one bound to a peer inbox the newcomer is not.
    let mut once = Connection::listen(Config::new(B, ""), t0(), 3).unwrap();
    feed(&mut once, t0(), &syn_from(A));
    feed(&mut once, t0() + ms(900), &syn_of("c.inbox", "client-c"));
    assert_eq!(once.remote_inbox(), A);
    let mut bound = Connection::listen(Config::new(B, A), t0(), 4).unwrap();
    bound.set_keep_listening(true);
    feed(&mut bound, t0(), &syn_from(A));
    feed(&mut bound, t0() + ms(900), &syn_of("c.inbox", "client-c"));
    assert_eq!(bound.remote_inbox(), A);
    assert_eq!(bound.stats().loss.handshakes_abandoned, 0);
}

/// Delivers everything `from` wants to send to `to` (its packets for
/// other inboxes go nowhere); what was sent.
fn pass(from: &mut Connection, to: &mut Connection, now: Instant) -> Vec<Packet> {
    let sent = out(from, now);
    let inbox = to.local_inbox.clone();
    for p in sent.iter().filter(|p| p.dest == inbox) {
        feed(to, now, p);
    }
    sent
}

/// A listener on B held by a half-open handshake (a Syn from A, never
/// heard again), that keeps listening.
fn held_listener(seed: u64) -> (Connection, String) {
    let mut b = Connection::listen(Config::new(B, ""), t0(), seed).unwrap();
    b.set_keep_listening(true);
    feed(&mut b, t0(), &syn_from(A));
    let held = b.local_nonce().to_string();
    assert_eq!(kinds(&out(&mut b, t0())), vec![Kind::SynAck]);
    (b, held)
}

#[test]
fn a_listener_held_by_a_half_open_handshake_answers_a_client_with_a_syn_cookie_and_takes_it() {
    // A forged Syn (or a client that died after it) used to keep every
    // other client out for an interval, and a flood of them for ever.
    {
        let (mut b, held) = held_listener(2);
        let now = t0() + ms(10); // well within the held handshake's interval
        let mut c = Connection::connect(Config::new("c.inbox", B), now, 5).unwrap();
        let syn = pass(&mut c, &mut b, now);
        // Nothing changed at the listener: the answer is all it made.
        assert_eq!(
            (b.state(), b.remote_inbox(), b.local_nonce()),
            (State::SynReceived, A, held.as_str())
        );
        let answer = pass(&mut b, &mut c, now);
        assert_eq!(kinds(&answer), vec![Kind::SynAck]);
        let cookie = answer[0].from_nonce.to_string();
        assert_ne!(cookie, held);
        assert_eq!(answer[0].ts_echo, syn[0].ts, "it echoes the Syn (§5.5)");
        assert_eq!(b.stats().wire.cookies_sent, 1);
        assert_eq!(c.state(), State::Established);
        assert_eq!(c.remote_nonce(), cookie);
        // The client's EstabAck carries the cookie: the half-open
        // handshake goes (its client told why), the client is taken.
        pass(&mut c, &mut b, now);
        assert_eq!(b.state(), State::Established);
        assert_eq!(
            (b.remote_inbox(), b.local_nonce()),
            ("c.inbox", cookie.as_str())
        );
        assert_eq!(b.stats().wire.cookies_taken, 1);
        assert_eq!(b.stats().loss.handshakes_abandoned, 1);
        assert!(b.snd.batching(), "the cookie carries what the Syn said");
        assert_told_it_was_let_go(&out(&mut b, now), &held);
        // A session like any other: data both ways.
        c.write(b"from the client").unwrap();
        b.write(b"from the listener").unwrap();
        for _ in 0..4 {
            pass(&mut c, &mut b, now);
            pass(&mut b, &mut c, now);
        }
        let mut buf = [0u8; 64];
        let Recv::Data(n) = b.read(&mut buf).unwrap() else {
            panic!("no data at the listener")
        };
        assert_eq!(&buf[..n], b"from the client");
        let Recv::Data(n) = c.read(&mut buf).unwrap() else {
            panic!("no data at the client")
        };
        assert_eq!(&buf[..n], b"from the listener");
    }
    // A client whose Syn does not say it reads batches gets none.
    let (mut b, _) = held_listener(3);
    let mut syn = syn_from("c.inbox");
    (syn.from_nonce, syn.flags) = ("client-c".into(), 0);
    feed(&mut b, t0(), &syn);
    let cookie = out(&mut b, t0())[0].from_nonce.clone();
    assert!(cookie.starts_with('n'));
    let mut estab = syn;
    (estab.kind, estab.dest_nonce) = (Kind::EstabAck, cookie);
    feed(&mut b, t0(), &estab);
    assert_eq!(
        (b.state(), b.remote_inbox()),
        (State::Established, "c.inbox")
    );
    assert!(!b.snd.batching());
}

#[test]
fn a_flood_of_forged_syns_gets_one_synack_each_keeps_no_state_and_a_real_client_gets_in() {
    let (mut b, held) = held_listener(3);
    let mut now = t0();
    let forged = |i: u32| {
        let mut s = syn_from(&format!("victim.{i}"));
        s.from_nonce = format!("forged-{i}").into();
        s
    };
    for i in 0..1000u32 {
        now += Duration::from_micros(200); // 5000 a second
        feed(&mut b, now, &forged(i));
        let answers = out(&mut b, now);
        assert_eq!(kinds(&answers), vec![Kind::SynAck], "Syn {i}");
        assert_eq!(answers[0].dest.as_str(), format!("victim.{i}"));
    }
    // Faster than the driver drains: at most four answers wait at once.
    for i in 1000..1010u32 {
        feed(&mut b, now, &forged(i));
    }
    assert_eq!(out(&mut b, now).len(), 4);
    assert!(b.stats().dropped.unexpected >= 6);
    // None of it changed the listener, and nothing is retransmitted.
    assert_eq!((b.remote_inbox(), b.local_nonce()), (A, held.as_str()));
    assert_eq!(b.stats().wire.cookies_sent, 1004);
    // Packets that carry no cookie of ours take nothing: a made-up one, a
    // real cookie from another inbox or with another nonce.
    let mut c = Connection::connect(Config::new("c.inbox", B), now, 5).unwrap();
    pass(&mut c, &mut b, now);
    let cookie = out(&mut b, now)[0].from_nonce.to_string();
    let probe = |from: &str, from_nonce: &str, dest_nonce: &str| {
        let mut p = syn_from(from);
        p.kind = Kind::Ack;
        p.from_nonce = from_nonce.into();
        p.dest_nonce = dest_nonce.into();
        p
    };
    let c_nonce = c.local_nonce().to_string();
    for p in [
        probe("c.inbox", &c_nonce, &format!("b{}", "x".repeat(29))),
        probe("d.inbox", &c_nonce, &cookie),
        probe("c.inbox", "another-nonce", &cookie),
        probe("c.inbox", &c_nonce, &cookie[..29]),
    ] {
        feed(&mut b, now, &p);
        assert_eq!(
            (b.state(), b.remote_inbox()),
            (State::SynReceived, A),
            "{p:?}"
        );
    }
    assert_eq!(b.stats().wire.cookies_taken, 0);
    // The real client, answered while the flood goes on, gets in.
    let mut c = Connection::connect(Config::new("c2.inbox", B), now, 6).unwrap();
    pass(&mut c, &mut b, now);
    feed(&mut b, now, &forged(5000));
    pass(&mut b, &mut c, now);
    assert_eq!(c.state(), State::Established);
    pass(&mut c, &mut b, now);
    assert_eq!(
        (b.state(), b.remote_inbox()),
        (State::Established, "c2.inbox")
    );
}

#[test]
fn a_client_that_answers_its_cookie_after_another_took_the_listener_is_told_busy_at_once() {
    let (mut b, _) = held_listener(4);
    let now = t0() + ms(10);
    let mut c1 = Connection::connect(Config::new("c1.inbox", B), now, 5).unwrap();
    let mut c2 = Connection::connect(Config::new("c2.inbox", B), now, 6).unwrap();
    pass(&mut c1, &mut b, now);
    pass(&mut c2, &mut b, now);
    for t in out(&mut b, now) {
        let to = if t.dest.as_str() == "c1.inbox" {
            &mut c1
        } else {
            &mut c2
        };
        feed(to, now, &t);
    }
    assert_eq!(
        (c1.state(), c2.state()),
        (State::Established, State::Established)
    );
    pass(&mut c1, &mut b, now);
    assert_eq!(b.remote_inbox(), "c1.inbox");
    out(&mut b, now); // the half-open client's Reset
    // The second believes it got in; it learns otherwise at once.
    pass(&mut c2, &mut b, now);
    assert_eq!(
        (b.state(), b.remote_inbox()),
        (State::Established, "c1.inbox")
    );
    let told = pass(&mut b, &mut c2, now);
    assert_eq!(kinds(&told), vec![Kind::Reset]);
    assert!(matches!(
        c2.close_reason(),
        Some(CloseReason::Reset {
            code: ResetCode::Busy,
            ..
        })
    ));
    assert_eq!(b.stats().wire.cookies_taken, 1);
}

#[test]
fn no_syn_cookies_from_a_one_syn_listener_or_one_bound_to_another_peer() {
    let syn_c = || {
        let mut s = syn_from("c.inbox");
        s.from_nonce = "client-c".into();
        s
    };
    // A service's session takes one Syn; a bound listener only its peer.
    let mut once = Connection::listen(Config::new(B, ""), t0(), 2).unwrap();
    let mut bound = Connection::listen(Config::new(B, A), t0(), 3).unwrap();
    bound.set_keep_listening(true);
    for c in [&mut once, &mut bound] {
        feed(c, t0(), &syn_from(A));
        out(c, t0());
        feed(c, t0() + ms(10), &syn_c());
        assert!(out(c, t0() + ms(10)).is_empty());
        assert_eq!(c.stats().wire.cookies_sent, 0);
    }
}

#[test]
fn a_client_tells_a_second_listener_at_once_and_that_listener_listens_again() {
    // Two listeners on one subject both answer a client's Syn.
    let mut a = Connection::connect(Config::new(A, B), t0(), 1).unwrap();
    let mut first = Connection::listen(Config::new(B, ""), t0(), 2).unwrap();
    let mut second = Connection::listen(Config::new(B, ""), t0(), 3).unwrap();
    second.set_keep_listening(true);
    let syn = a.poll_transmit(t0()).unwrap().payload;
    first.handle_packet(t0(), syn.clone());
    second.handle_packet(t0(), syn);
    let (sa1, sa2) = (
        first.poll_transmit(t0()).unwrap().payload,
        second.poll_transmit(t0()).unwrap().payload,
    );
    a.handle_packet(t0(), sa1);
    assert_eq!(a.state(), State::Established);
    a.handle_packet(t0(), sa2);
    assert_eq!(a.state(), State::Established, "the first answer is kept");
    assert_eq!(a.remote_nonce(), first.local_nonce());
    assert_eq!(a.stats().dropped.foreign, 1);
    let told = out(&mut a, t0());
    let reset = told
        .iter()
        .find(|p| p.kind == Kind::Reset)
        .expect("a Reset");
    assert_eq!(
        ResetCode::from_wire(reset.seq),
        ResetCode::AnsweredElsewhere
    );
    assert_eq!(reset.dest_nonce.as_str(), second.local_nonce());
    for p in &told {
        first.handle_packet(t0(), codec::encode(p));
        second.handle_packet(t0(), codec::encode(p));
    }
    assert_eq!(first.state(), State::Established, "the Reset is not for it");
    assert_eq!(second.state(), State::Listen);
    assert_eq!(second.stats().loss.handshakes_abandoned, 1);
    // A listener that takes one Syn only (a service's session) ends
    // instead, with the reason.
    let mut c = Connection::connect(Config::new(A, B), t0(), 5).unwrap();
    let mut won = Connection::listen(Config::new(B, ""), t0(), 6).unwrap();
    let mut once = Connection::listen(Config::new(B, ""), t0(), 7).unwrap();
    let syn = c.poll_transmit(t0()).unwrap().payload;
    won.handle_packet(t0(), syn.clone());
    once.handle_packet(t0(), syn);
    c.handle_packet(t0(), won.poll_transmit(t0()).unwrap().payload);
    c.handle_packet(t0(), once.poll_transmit(t0()).unwrap().payload);
    for p in out(&mut c, t0()) {
        once.handle_packet(t0(), codec::encode(&p));
    }
    assert!(matches!(
        once.close_reason(),
        Some(CloseReason::Reset {
            code: ResetCode::AnsweredElsewhere,
            ..
        })
    ));
}

#[test]
fn syn_sent_retries_with_backoff_then_ends_with_connect_timeout() {
    let cfg = Config::new(A, B)
        .connect(ms(100), 3)
        .rto(ms(100), ms(10), ms(400));
    let mut a = Connection::connect(cfg, t0(), 1).unwrap();
    let mut now = t0();
    let mut syns = kinds(&out(&mut a, now)).len();
    let mut gaps = Vec::new();
    while !a.is_closed() {
        let next = a.poll_timeout().expect("a handshake always has a deadline");
        gaps.push(next - now);
        now = next;
        a.handle_timeout(now);
        syns += out(&mut a, now)
            .iter()
            .filter(|p| p.kind == Kind::Syn)
            .count();
    }
    assert_eq!(syns, 3);
    assert!(
        gaps.windows(2).all(|w| w[1] >= w[0]),
        "backoff never shrinks: {gaps:?}"
    );
    assert!(matches!(
        a.close_reason(),
        Some(CloseReason::ConnectTimeout { attempts: 3, .. })
    ));
}

#[test]
fn established_data_is_acknowledged_within_the_ack_delay() {
    let mut a = established();
    let mut d = from_peer(&a, Kind::Data);
    d.data = Bytes::from_static(b"hello");
    d.cumul_bytes = 5;
    d.ts = 77;
    feed(&mut a, t0() + ms(1), &d);
    assert_eq!(a.poll_event(), Some(Event::Readable));
    // One packet: the ack may wait (every 2nd packet, or after 1 ms).
    assert!(out(&mut a, t0() + ms(1)).is_empty());
    let due = a.poll_timeout().unwrap();
    assert!(due <= t0() + ms(2));
    a.handle_timeout(due);
    let ack = out(&mut a, due);
    assert_eq!(kinds(&ack), vec![Kind::Ack]);
    assert_eq!((ack[0].ack, ack[0].ts_echo), (1, 77));
    assert!(ack[0].sack.is_empty());
}

#[test]
fn established_out_of_order_data_is_acked_at_once_with_its_sack_range() {
    let mut a = established();
    let mut d = from_peer(&a, Kind::Data);
    d.seq = 2;
    d.data = Bytes::from_static(b"x");
    d.cumul_bytes = 3;
    feed(&mut a, t0() + ms(1), &d);
    let ack = out(&mut a, t0() + ms(1));
    assert_eq!(kinds(&ack), vec![Kind::Ack]);
    assert_eq!((ack[0].ack, ack[0].sack.clone()), (0, vec![(2, 3)]));
    assert_eq!(a.stats().data.out_of_order, 1);
}

#[test]
fn an_ack_of_data_never_sent_is_dropped_unbelieved() {
    let mut a = established();
    a.write(b"abc").unwrap();
    let sent = out(&mut a, t0() + ms(1));
    assert_eq!(kinds(&sent), vec![Kind::Data]);
    let mut forged = from_peer(&a, Kind::Ack);
    forged.ack = 5;
    feed(&mut a, t0() + ms(2), &forged);
    assert_eq!(a.stats().dropped.impossible, 1);
    assert_eq!(a.bytes_acked(), 0);
    assert!(!a.is_closed());
}

#[test]
fn a_reset_ends_the_session_with_the_peers_reason_but_only_with_its_nonces() {
    let mut a = established();
    let mut r = from_peer(&a, Kind::Reset);
    r.from_nonce = "someone-else".into();
    r.data = Bytes::from_static(b"go away");
    feed(&mut a, t0() + ms(1), &r);
    assert_eq!(
        (a.state(), a.stats().dropped.foreign),
        (State::Established, 1)
    );
    let mut r = from_peer(&a, Kind::Reset);
    r.data = Bytes::from_static(b"disk full");
    feed(&mut a, t0() + ms(2), &r);
    assert_eq!(a.state(), State::Closed);
    match a.close_reason() {
        Some(CloseReason::Reset { message, .. }) => assert_eq!(message, "disk full"),
        other => panic!("closed with {other:?}"),
    }
}

#[test]
fn the_close_path_fin_wait_1_then_2_then_closed_after_the_peers_fin() {
    let mut a = established();
    a.close(t0() + ms(1));
    assert_eq!(a.state(), State::FinWait1);
    let fin = out(&mut a, t0() + ms(1));
    assert_eq!(kinds(&fin), vec![Kind::Fin]);
    assert_eq!(fin[0].seq, 0, "nothing was sent: the stream ends at seq 0");
    let mut finack = from_peer(&a, Kind::FinAck);
    finack.seq = 0;
    feed(&mut a, t0() + ms(2), &finack);
    assert_eq!(a.state(), State::FinWait2);
    assert!(!a.is_closed(), "the peer may still send");
    let mut peer_fin = from_peer(&a, Kind::Fin);
    peer_fin.seq = 0;
    feed(&mut a, t0() + ms(3), &peer_fin);
    assert_eq!(a.state(), State::Closed);
    assert_eq!(a.close_reason(), Some(&CloseReason::Normal));
    let last = out(&mut a, t0() + ms(3));
    assert_eq!(kinds(&last), vec![Kind::FinAck]);
    // Lingering: a retransmitted Fin is answered again, nothing else is.
    feed(&mut a, t0() + ms(4), &peer_fin);
    assert_eq!(kinds(&out(&mut a, t0() + ms(4))), vec![Kind::FinAck]);
    assert!(!a.is_drained());
}

#[test]
fn close_wait_the_peer_finished_first_and_we_may_still_send() {
    let mut a = established();
    let mut peer_fin = from_peer(&a, Kind::Fin);
    peer_fin.seq = 0;
    feed(&mut a, t0() + ms(1), &peer_fin);
    assert_eq!(a.state(), State::CloseWait);
    assert_eq!(kinds(&out(&mut a, t0() + ms(1))), vec![Kind::FinAck]);
    assert_eq!(a.write(b"still").unwrap(), 5);
    let data = out(&mut a, t0() + ms(2));
    assert_eq!(kinds(&data), vec![Kind::Data]);
    assert!(
        data[0].has(flags::FIN_SEEN),
        "it tells the peer its Fin arrived"
    );
    a.close(t0() + ms(3));
    assert_eq!(a.state(), State::LastAck);
}

#[test]
fn a_service_client_moves_to_the_private_inbox_that_answers_its_syn() {
    let mut a = Connection::connect(Config::to_service(A, "svc"), t0(), 1).unwrap();
    let syn = out(&mut a, t0());
    assert_eq!(syn[0].dest.as_str(), "svc");
    let mut synack = from_peer(&a, Kind::SynAck);
    synack.from = "svc.private.1".into();
    feed(&mut a, t0(), &synack);
    assert_eq!(a.state(), State::Established);
    assert_eq!(a.remote_inbox(), "svc.private.1");
    let estab = out(&mut a, t0());
    assert_eq!(kinds(&estab), vec![Kind::EstabAck]);
    assert_eq!(estab[0].dest.as_str(), "svc.private.1");
    // From now on only the private inbox counts: a second answer (another
    // queue member that heard a retransmitted Syn) is foreign.
    let mut other = from_peer(&a, Kind::SynAck);
    other.from = "svc.private.2".into();
    feed(&mut a, t0() + ms(1), &other);
    assert_eq!(a.stats().dropped.foreign, 1);
    assert_eq!(a.remote_inbox(), "svc.private.1");
}

#[test]
fn a_plain_client_does_not_follow_an_answer_from_another_inbox() {
    let mut a = Connection::connect(Config::new(A, B), t0(), 1).unwrap();
    out(&mut a, t0());
    let mut synack = from_peer(&a, Kind::SynAck);
    synack.from = "elsewhere".into();
    feed(&mut a, t0(), &synack);
    assert_eq!((a.state(), a.stats().dropped.foreign), (State::SynSent, 1));
}

#[test]
fn a_refused_handshake_ends_at_once_with_the_refusers_reason_if_it_carries_our_nonce() {
    let mut a = Connection::connect(Config::to_service(A, "svc"), t0(), 1).unwrap();
    out(&mut a, t0());
    let mut busy = from_peer(&a, Kind::Reset);
    busy.from = "svc".into();
    busy.seq = ResetCode::Busy.to_wire();
    busy.data = Bytes::from_static(b"at the limit");
    busy.dest_nonce = "not-ours".into();
    feed(&mut a, t0(), &busy);
    assert_eq!(
        a.state(),
        State::SynSent,
        "a Reset for another nonce is ignored"
    );
    busy.dest_nonce = a.local_nonce().into();
    feed(&mut a, t0(), &busy);
    assert_eq!(a.state(), State::Closed);
    assert_eq!(
        a.close_reason(),
        Some(&CloseReason::Reset {
            code: ResetCode::Busy,
            message: "at the limit".into()
        })
    );
    assert!(out(&mut a, t0()).is_empty(), "no Reset answers a Reset");
}

#[test]
fn go_format_has_no_services() {
    let cfg = Config::to_service(A, "svc").wire_format(WireFormat::Go);
    let err = Connection::connect(cfg, t0(), 1).unwrap_err();
    assert!(err.to_string().contains("no services"), "{err}");
}

#[test]
fn an_abort_repeats_its_reset_to_a_peer_that_talks_on_then_goes_quiet() {
    let mut a = established();
    a.abort_with(t0(), "disk full");
    let first = out(&mut a, t0());
    assert_eq!(kinds(&first), vec![Kind::Reset]); // lost on the way, say
    assert!(!a.is_drained(), "it lingers to repeat the Reset");
    // The peer did not hear it and keeps sending: each packet, at most one
    // per answer time, is answered with the same Reset.
    let mut t = t0();
    let mut repeats = 0;
    for i in 0..40u64 {
        t += ms(50);
        let mut p = from_peer(&a, Kind::Data);
        p.seq = i;
        p.data = Bytes::from_static(b"x");
        feed(&mut a, t, &p);
        for r in out(&mut a, t) {
            assert_eq!(r.kind, Kind::Reset);
            assert_eq!((r.seq, &r.data[..]), (first[0].seq, &b"disk full"[..]));
            repeats += 1;
        }
    }
    // 40 packets 50 ms apart: answered at most once per answer time.
    let most = (40 * 50) / a.answer_time().as_millis() as u32 + 1;
    assert!(repeats > 0 && repeats <= most, "{repeats} repeats");
    // A packet a moment after a Reset is not answered (no storm) ...
    let mut p = from_peer(&a, Kind::KeepAlive);
    feed(&mut a, t, &p);
    feed(&mut a, t, &p);
    assert!(out(&mut a, t).len() <= 1);
    // ... a foreign one never, nor a Reset from the peer.
    p.from_nonce = "someone-else".into();
    feed(&mut a, t + ms(5000), &p);
    assert!(out(&mut a, t + ms(5000)).is_empty());
    // A peer cut off by an outage shorter than the budget speaks again
    // just before the dead-peer timeout: it still hears why.
    let linger = a.dead_peer_timeout().unwrap();
    assert!(linger > a.cfg.tuning.close_linger);
    let late = t0() + linger - ms(1);
    a.handle_timeout(late);
    assert!(!a.is_drained(), "it lingers for the dead-peer timeout");
    let p = from_peer(&a, Kind::KeepAlive);
    feed(&mut a, late, &p);
    let told = out(&mut a, late);
    assert_eq!(kinds(&told), vec![Kind::Reset]);
    assert_eq!(&told[0].data[..], b"disk full");
    // The linger ends it: drained, silent for good.
    a.handle_timeout(t0() + linger);
    assert!(a.is_drained());
    let p = from_peer(&a, Kind::KeepAlive);
    feed(&mut a, t0() + linger + ms(10_000), &p);
    assert!(out(&mut a, t0() + linger + ms(10_000)).is_empty());
}

#[test]
fn an_abort_repeats_its_reset_unasked_to_a_silent_peer_until_the_linger_ends() {
    // A peer with nothing to send (a receiver waiting for data) never asks
    // again: one lost Reset must not cost it its dead-peer budget.
    let mut a = established();
    a.abort_with(t0(), "disk full");
    let mut sent = vec![(t0(), out(&mut a, t0()))];
    let mut t = t0();
    while let Some(next) = a.poll_timeout() {
        assert!(next >= t, "timers go forward");
        t = next;
        a.handle_timeout(t);
        let got = out(&mut a, t);
        if !got.is_empty() {
            sent.push((t, got));
        }
        if a.is_drained() {
            break;
        }
    }
    assert!(a.is_drained(), "the linger ends it");
    let linger = a
        .dead_peer_timeout()
        .unwrap()
        .max(a.cfg.tuning.close_linger);
    assert_eq!(t, t0() + linger, "at the end of the linger");
    assert_eq!(sent.len() as u32, UNASKED_RESETS, "{sent:?}");
    assert!(
        sent.last().unwrap().0 <= t0() + a.cfg.tuning.close_linger,
        "the unasked ones within the first {:?}",
        a.cfg.tuning.close_linger
    );
    for (i, (at, pkts)) in sent.iter().enumerate() {
        assert_eq!(kinds(pkts), vec![Kind::Reset]);
        assert_eq!(&pkts[0].data[..], b"disk full");
        if i > 0 {
            assert!(
                *at - sent[i - 1].0 >= a.answer_time(),
                "one answer time apart"
            );
        }
    }
}

#[test]
fn an_abort_answers_a_talking_peer_once_per_answer_time_for_its_whole_linger() {
    // A long linger and a peer that never stops (its packets reach us, our
    // answers do not reach it: a one-way outage): answered at most once
    // per answer time, and still answered at the end of the linger.
    let mut a = Connection::connect(
        Config::new(A, B).close_linger(Duration::from_secs(60)),
        t0(),
        1,
    )
    .unwrap();
    let syn = out(&mut a, t0());
    let mut synack = from_peer(&a, Kind::SynAck);
    synack.ts_echo = syn[0].ts;
    feed(&mut a, t0(), &synack);
    let _ = out(&mut a, t0());
    a.abort_with(t0(), "bye");
    let mut at = vec![t0(); out(&mut a, t0()).len()];
    let pace = a.answer_time();
    let mut t = t0();
    // Every 10 ms for 50 s.
    while t < t0() + Duration::from_secs(50) {
        t += ms(10);
        let p = from_peer(&a, Kind::KeepAlive);
        feed(&mut a, t, &p);
        for r in out(&mut a, t) {
            assert_eq!(r.kind, Kind::Reset);
            assert_eq!(&r.data[..], b"bye");
            at.push(t);
        }
    }
    for (i, w) in at.windows(2).enumerate() {
        assert!(
            w[1] - w[0] >= pace,
            "Reset {} came {:?} after the one before",
            i + 1,
            w[1] - w[0]
        );
    }
    // No fewer either: every answer time (to the 10 ms the peer's
    // packets come in), to the end.
    for w in at.windows(2) {
        assert!(w[1] - w[0] <= pace + ms(10), "a gap of {:?}", w[1] - w[0]);
    }
    assert!(
        t - *at.last().unwrap() <= pace + ms(10),
        "answered to the end"
    );
}

#[test]
fn the_packet_size_never_exceeds_what_the_transport_carries() {
    let mut c = established();
    c.set_payload_ceiling(1000);
    assert_eq!(c.config().max_payload_bytes(), 1000);
    // Asked for more (max, max + 1), one more than the ceiling is refused;
    // below it (max - 1, 1, 0 -> 1) the size is as asked.
    for (ask, got) in [
        (1000, 1000),
        (1001, 1000),
        (usize::MAX, 1000),
        (999, 999),
        (1, 1),
        (0, 1),
    ] {
        c.set_max_payload(ask);
        assert_eq!(c.config().max_payload_bytes(), got, "asked {ask}");
    }
    // A ceiling below the chosen size lowers it.
    c.set_max_payload(900);
    c.set_payload_ceiling(500);
    assert_eq!(c.config().max_payload_bytes(), 500);
}

#[test]
fn a_small_inbox_bounds_our_flight_as_well_as_our_window() {
    // The acks our flight brings back land in our own inbox beside the
    // peer's data: with an inbox of 100 and the reserve of 64, the 36
    // places left are split, 18 for the peer's data (our window) and 18
    // packets in flight, whatever window the peer offers (64 here).
    let mut a = Connection::connect(Config::new(A, B).max_payload(100), t0(), 1).unwrap();
    a.set_transport_capacity(Some(100), None);
    assert_eq!(a.receive_capacity().0, 18);
    let syn = out(&mut a, t0());
    assert_eq!(syn[0].wnd_seq, 18, "the window promised in the Syn");
    let mut synack = from_peer(&a, Kind::SynAck);
    synack.ts_echo = syn[0].ts;
    feed(&mut a, t0(), &synack);
    assert_eq!(a.state(), State::Established);
    out(&mut a, t0());
    assert_eq!(a.write(&[7u8; 100 * 100]).unwrap(), 100 * 100);
    let data = |ps: &[Packet]| ps.iter().filter(|p| p.kind == Kind::Data).count();
    let first = out(&mut a, t0());
    assert_eq!(data(&first), 18, "the flight stops at 18 of the peer's 64");
    // Five acknowledged: five more go, never more than 18 in flight.
    let mut ack = from_peer(&a, Kind::Ack);
    ack.ack = first.iter().find(|p| p.kind == Kind::Data).unwrap().seq + 5;
    feed(&mut a, t0() + ms(1), &ack);
    assert_eq!(data(&out(&mut a, t0() + ms(1))), 5);
    // An inbox smaller than the reserve still lets one packet go.
    let mut tiny = Connection::connect(Config::new(A, B), t0(), 2).unwrap();
    tiny.set_transport_capacity(Some(2), None);
    assert_eq!(tiny.receive_capacity().0, 1);
}

#[test]
fn the_window_and_the_flight_limit_grow_with_the_inbox_and_fit_it_beside_the_reserve() {
    // At every inbox size around the reserve (64) and beyond: neither the
    // window nor the flight limit shrinks as the inbox grows, each is at
    // least one packet, and from reserve + 2 up the peer's data, the acks
    // of our flight and the reserve fit the inbox together.
    let mut last = (0, 0);
    for t in [1u64, 2, 3, 63, 64, 65, 66, 67, 100, 128, 129, 1024, 65_536] {
        let mut c = Connection::connect(Config::new(A, B), t0(), 1).unwrap();
        c.set_transport_capacity(Some(t), None);
        let (window, flight) = (c.receive_capacity().0, c.snd.flight_limit);
        assert!(window >= 1 && flight >= 1, "inbox {t}");
        assert!(
            window >= last.0 && flight >= last.1,
            "inbox {t}: {window}/{flight} after {last:?}"
        );
        if t >= 66 {
            assert!(
                window + flight + 64 <= t,
                "inbox {t}: {window} + {flight} + 64"
            );
        }
        last = (window, flight);
    }
    assert_eq!(
        last.0, 1024,
        "the default subscription keeps the default window"
    );
}
