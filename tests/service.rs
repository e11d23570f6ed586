//! swp as a NATS service, over real nats-servers (one, and a 3-node
//! cluster): many clients at once through one `Service`, every byte
//! verified; the session limit refuses at once; a subject nobody serves
//! fails at once; a queue group spreads clients over members and a dead
//! member's clients learn it within the budget, and a retry lands on a
//! live member.

mod common;

use common::nats_server;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swp::proto::{CloseReason, ResetCode, Tuning};
use swp::server::NatsServer;
use swp::transport::{NatsOptions, NatsTransport, TransportError};
use swp::{Service, ServiceConfig, Session, SessionError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Deterministic bytes for client `id`: a wrong, missing or misplaced byte
/// shows.
fn payload(id: u64, len: usize) -> Vec<u8> {
    let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The sizes the clients use: the edges of a packet (63 KiB) and of
/// nothing, then a spread.
fn size_of(id: u64) -> usize {
    const P: usize = 63 * 1024;
    match id % 8 {
        0 => 0,
        1 => 1,
        2 => P - 1,
        3 => P,
        4 => P + 1,
        5 => 3 * P,
        _ => (id as usize * 7919) % (256 * 1024),
    }
}

/// Session timings short enough for a test: a dead peer is found within
/// about 1.5 s, a missing listener within a second or two.
fn tuning() -> Tuning {
    Tuning::new()
        .keepalive(Duration::from_millis(250), 6)
        .connect(Duration::from_millis(500), 4)
}

async fn connect(url: String) -> Arc<NatsTransport> {
    NatsTransport::connect(NatsOptions::new(url))
        .await
        .expect("connect to nats-server")
}

/// Echoes every session it accepts: reads to the end, writes it all back.
fn echo(service: Arc<Service>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok(s) = service.accept().await {
            tokio::spawn(echo_session(s));
        }
    })
}

/// Reads one session to the end and writes it all back.
async fn echo_session(s: Session) {
    let (mut rd, mut wr) = s.into_split();
    let mut got = Vec::new();
    if rd.read_to_end(&mut got).await.is_ok() && wr.write_all(&got).await.is_ok() {
        let _ = wr.shutdown().await;
    }
}

/// Echoes every message of every session it accepts.
fn echo_messages(service: Arc<Service>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sessions = tokio::task::JoinSet::new();
        while let Ok(s) = service.accept().await {
            sessions.spawn(async move {
                while let Ok(Some(m)) = s.recv().await {
                    if s.send(m).await.is_err() {
                        break;
                    }
                }
            });
        }
    })
}

/// One client: connects to `subject`, sends its payload, reads the echo,
/// and checks it byte for byte.
async fn client(t: Arc<NatsTransport>, subject: &str, id: u64) -> Result<(), String> {
    let data = payload(id, size_of(id));
    let mut s = Session::connect_to(t, subject, tuning())
        .await
        .map_err(|e| format!("client {id}: connect: {e}"))?;
    let (mut rd, mut wr) = tokio::io::split(&mut s);
    let send = async {
        wr.write_all(&data).await?;
        wr.shutdown().await
    };
    let mut back = Vec::new();
    let (sent, read) = tokio::join!(send, rd.read_to_end(&mut back));
    sent.map_err(|e| format!("client {id}: send: {e}"))?;
    read.map_err(|e| format!("client {id}: read: {e}"))?;
    if back != data {
        return Err(format!(
            "client {id}: echo differs ({} bytes back for {} sent)",
            back.len(),
            data.len()
        ));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_at_once_through_one_service_every_byte_verified() {
    // Every wait in the test has a bound: a hang fails with a message.
    tokio::time::timeout(
        Duration::from_secs(180),
        two_hundred_clients_at_once_through_one_service_every_byte_verified_body(),
    )
    .await
    .expect("the test finishes within 180 s");
}

async fn two_hundred_clients_at_once_through_one_service_every_byte_verified_body() {
    let server = nats_server();
    let service = Arc::new(
        Service::bind(
            connect(server.url()).await,
            ServiceConfig::new("svc.echo").tuning(tuning()),
        )
        .await
        .unwrap(),
    );
    let _echo = echo(service.clone());
    // 200 clients over 10 connections (20 sessions share each).
    let conns: Vec<_> = futures::future::join_all((0..10).map(|_| connect(server.url()))).await;
    let clients = (0..200u64).map(|id| client(conns[id as usize % 10].clone(), "svc.echo", id));
    let results =
        tokio::time::timeout(Duration::from_secs(120), futures::future::join_all(clients))
            .await
            .expect("200 clients finish within 120 s");
    let failures: Vec<_> = results.into_iter().filter_map(Result::err).collect();
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    let st = service.stats();
    assert_eq!(st.accepted, 200, "{st:?}");
    assert_eq!((st.refused_busy, st.handshakes_failed), (0, 0), "{st:?}");
    // Once every session has closed, the service counted their bytes.
    let closed = async {
        while service.stats().active > 0 {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), closed)
        .await
        .expect("every served session closes within 30 s");
    let st = service.stats();
    let echoed: u64 = (0..200u64).map(|id| size_of(id) as u64).sum();
    assert_eq!(
        (st.bytes_received, st.bytes_sent),
        (echoed, echoed),
        "{st:?}"
    );
    assert_eq!(st.sessions_failed, 0, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_max_sessions_is_refused_at_once_and_a_slot_frees_when_a_session_ends() {
    // Every wait in the test has a bound: a hang fails with a message.
    tokio::time::timeout(
        Duration::from_secs(180),
        a_client_over_max_sessions_is_refused_at_once_and_a_slot_frees_when_a_session_ends_body(),
    )
    .await
    .expect("the test finishes within 180 s");
}

async fn a_client_over_max_sessions_is_refused_at_once_and_a_slot_frees_when_a_session_ends_body() {
    let server = nats_server();
    let t = connect(server.url()).await;
    // A limit of 0 could take no client: refused when binding, not at
    // every client.
    let zero = Service::bind(t.clone(), ServiceConfig::new("svc.zero").max_sessions(0))
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(zero.to_string().contains("max_sessions is 0"), "{zero}");
    let service = Service::bind(
        t.clone(),
        ServiceConfig::new("svc.small")
            .max_sessions(2)
            .tuning(tuning()),
    )
    .await
    .unwrap();
    // One at a time, so each client is paired with the session it talks to.
    let (c1, s1) = tokio::join!(
        Session::connect_to(t.clone(), "svc.small", tuning()),
        service.accept()
    );
    let (c2, _s2) = tokio::join!(
        Session::connect_to(t.clone(), "svc.small", tuning()),
        service.accept()
    );
    let (c1, s1, _c2) = (c1.unwrap(), s1.unwrap(), c2.unwrap());
    assert_eq!(service.stats().active, 2);
    let started = Instant::now();
    let err = Session::connect_to(t.clone(), "svc.small", tuning())
        .await
        .unwrap_err();
    let took = started.elapsed();
    match &err {
        SessionError::Closed(CloseReason::Reset { code, message }) => {
            assert_eq!(*code, ResetCode::Busy);
            assert!(message.contains("limit of 2 sessions"), "{message}");
        }
        other => panic!("expected a Busy refusal, got {other}"),
    }
    // At once: far less than one handshake retry (500 ms) would take.
    assert!(took < Duration::from_millis(400), "refused after {took:?}");
    assert_eq!(service.stats().refused_busy, 1);
    // A session ends: its slot is free again.
    let (r1, r2) = tokio::join!(c1.close(), s1.close());
    r1.unwrap();
    r2.unwrap();
    // The closed session gives its slot back as its driver sees it closed
    // (not after its linger): no network, a few scheduler turns.
    let freed = async {
        while service.stats().active >= 2 {
            tokio::task::yield_now().await;
        }
        Session::connect_to(t.clone(), "svc.small", tuning()).await
    };
    let both = async { tokio::join!(freed, service.accept()) };
    let (c3, s3) = tokio::time::timeout(Duration::from_secs(10), both)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "a freed slot takes a new client within 10 s: {:?}",
                service.stats()
            )
        });
    c3.unwrap();
    s3.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_subject_nobody_serves_fails_at_once_saying_so() {
    // Every wait in the test has a bound: a hang fails with a message.
    tokio::time::timeout(
        Duration::from_secs(180),
        connecting_to_a_subject_nobody_serves_fails_at_once_saying_so_body(),
    )
    .await
    .expect("the test finishes within 180 s");
}

async fn connecting_to_a_subject_nobody_serves_fails_at_once_saying_so_body() {
    let server = nats_server();
    let t = connect(server.url()).await;
    let started = Instant::now();
    let err = Session::connect_to(t, "svc.nobody.here", tuning())
        .await
        .unwrap_err();
    let took = started.elapsed();
    match &err {
        SessionError::Transport(TransportError::NoResponders { subject }) => {
            assert_eq!(subject, "svc.nobody.here")
        }
        other => panic!("expected no responders, got {other}"),
    }
    assert!(err.to_string().contains("nobody is listening"), "{err}");
    assert!(
        took < Duration::from_millis(400),
        "failed after {took:?}, not at once"
    );
}

/// Waits until a message published on `from` reaches a subscriber on
/// `to`: the cluster's routes carry interest between them.
async fn wait_routed(from: &NatsServer, to: &NatsServer) {
    let sub_client = async_nats::connect(to.url()).await.unwrap();
    let pub_client = async_nats::connect(from.url()).await.unwrap();
    let mut sub = sub_client.subscribe("swp.route.probe").await.unwrap();
    sub_client.flush().await.unwrap();
    let probe = async {
        loop {
            pub_client
                .publish("swp.route.probe", "x".into())
                .await
                .unwrap();
            pub_client.flush().await.unwrap();
            if tokio::time::timeout(
                Duration::from_millis(50),
                futures::StreamExt::next(&mut sub),
            )
            .await
            .is_ok()
            {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), probe)
        .await
        .expect("the cluster's routes form within 15 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_group_over_a_cluster_spreads_clients_and_a_dead_members_clients_fail_clearly_then_retry_elsewhere()
 {
    // Every wait in the test has a bound: a hang fails with a message.
    tokio::time::timeout(Duration::from_secs(180), a_queue_group_over_a_cluster_spreads_clients_and_a_dead_members_clients_fail_clearly_then_retry_elsewhere_body())
        .await
        .expect("the test finishes within 180 s");
}

async fn a_queue_group_over_a_cluster_spreads_clients_and_a_dead_members_clients_fail_clearly_then_retry_elsewhere_body()
 {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let nodes = NatsServer::start_cluster(3).unwrap();
    for (i, j) in [(0, 1), (1, 2), (2, 0), (1, 0), (2, 1), (0, 2)] {
        wait_routed(&nodes[i], &nodes[j]).await;
    }
    let member_conns: Vec<_> =
        futures::future::join_all(nodes.iter().map(|n| connect(n.url()))).await;
    let mut members = Vec::new();
    for c in &member_conns {
        let cfg = ServiceConfig::new("svc.cluster")
            .queue_group("workers")
            .tuning(tuning());
        let s = Arc::new(Service::bind(c.clone(), cfg).await.unwrap());
        let cfg = ServiceConfig::new("svc.msgs")
            .queue_group("workers")
            .tuning(tuning());
        let m = Arc::new(Service::bind(c.clone(), cfg).await.unwrap());
        let tasks = vec![echo(s.clone()), echo_messages(m.clone())];
        members.push((s, (), m, tasks));
    }
    // Interest of all three members reaches every node.
    for i in 0..3 {
        for j in 0..3 {
            if i != j {
                wait_routed(&nodes[i], &nodes[j]).await;
            }
        }
    }
    let client_conns: Vec<_> =
        futures::future::join_all(nodes.iter().map(|n| connect(n.url()))).await;
    // Round one: 60 clients spread over the nodes, all verified, and every
    // member served some (NATS prefers a queue member on the client's node).
    let round =
        (0..60u64).map(|id| client(client_conns[id as usize % 3].clone(), "svc.cluster", id));
    let results = tokio::time::timeout(Duration::from_secs(120), futures::future::join_all(round))
        .await
        .expect("round one within 120 s");
    let failures: Vec<_> = results.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "{failures:?}");
    for (i, m) in members.iter().enumerate() {
        assert!(
            m.0.stats().accepted > 0,
            "member {i} served nobody: {:?}",
            m.0.stats()
        );
    }
    // Round two: sessions to member 0 (clients on node 0) are established,
    // then member 0 dies (its NATS connection drains and closes).
    // Round two: 15 message sessions, spread over the nodes, each proven
    // live; then member 0 dies (its NATS connection drains and closes).
    let clients2 = (0..15usize)
        .map(|i| Session::connect_to(client_conns[i % 3].clone(), "svc.msgs", tuning()));
    let mut live = Vec::new();
    for c in futures::future::join_all(clients2).await {
        let c = c.unwrap();
        c.send("before the fall").await.unwrap();
        assert_eq!(c.recv().await.unwrap().unwrap(), "before the fall");
        live.push(c);
    }
    let on_member_0 = members[0].2.stats().accepted;
    assert!(
        on_member_0 > 0,
        "member 0 holds some of round two's sessions"
    );
    member_conns[0].client().drain().await.unwrap();
    let started = Instant::now();
    let outcomes = futures::future::join_all(live.iter().map(|c| async move {
        tokio::time::timeout(Duration::from_secs(10), async {
            c.send("after the fall").await?;
            c.recv().await
        })
        .await
        .expect("every client learns within 10 s whether its member lives")
    }))
    .await;
    let dead: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(
        dead.len() as u64,
        on_member_0,
        "exactly member 0's clients fail: {outcomes:?}"
    );
    for e in &dead {
        let text = e.to_string();
        assert!(
            text.contains("unreachable")
                || text.contains("not acknowledging")
                || text.contains("reset"),
            "a clear error, not {text:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // The same clients retry from the same nodes: they land on live members.
    let before: u64 = members[1..].iter().map(|m| m.2.stats().accepted).sum();
    for i in 0..dead.len() {
        let c = Session::connect_to(client_conns[i % 3].clone(), "svc.msgs", tuning())
            .await
            .expect("a retry lands on a live member");
        c.send("again").await.unwrap();
        assert_eq!(c.recv().await.unwrap().unwrap(), "again");
    }
    let after: u64 = members[1..].iter().map(|m| m.2.stats().accepted).sum();
    assert_eq!(after - before, dead.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_is_discoverable_with_the_nats_service_api() {
    tokio::time::timeout(Duration::from_secs(60), discoverable_body())
        .await
        .expect("the test finishes within 60 s");
}

async fn discoverable_body() {
    let server = nats_server();
    let t = connect(server.url()).await;
    let service = Arc::new(
        Service::bind(t.clone(), ServiceConfig::new("svc.found").tuning(tuning()))
            .await
            .unwrap(),
    );
    let _echo = echo(service.clone());
    let _announced = service.announce(t.client(), "swp-files").await.unwrap();
    // A session, so the counters say something.
    client(t.clone(), "svc.found", 3).await.unwrap();
    let nats = async_nats::connect(server.url()).await.unwrap();
    let ask = |subject: String| {
        let nats = nats.clone();
        async move {
            let m = nats
                .request(subject.clone(), "".into())
                .await
                .unwrap_or_else(|e| panic!("{subject}: {e}"));
            serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()
        }
    };
    let ping = ask("$SRV.PING.swp-files".into()).await;
    assert_eq!(ping["type"], "io.nats.micro.v1.ping_response");
    assert_eq!(ping["name"], "swp-files");
    let info = ask("$SRV.INFO.swp-files".into()).await;
    assert_eq!(info["type"], "io.nats.micro.v1.info_response");
    assert_eq!(info["metadata"]["swp.subject"], "svc.found");
    assert_eq!(info["endpoints"][0]["subject"], "svc.found.info");
    let stats = ask("$SRV.STATS.swp-files".into()).await;
    assert_eq!(stats["type"], "io.nats.micro.v1.stats_response");
    assert_eq!(
        stats["endpoints"][0]["data"]["sessions_accepted"], 1,
        "{stats}"
    );
    // The info endpoint answers with the same counters.
    let direct = ask("svc.found.info".into()).await;
    assert_eq!(direct["sessions_accepted"], 1);
    assert_eq!(direct["refused_busy"], 0);
}

/// A hand-made client: its Syn (the client's inbox `from`, nonce `nonce`).
fn raw_syn(from: &str, subject: &str, nonce: &str) -> bytes::Bytes {
    use swp::proto::{Kind, Packet, codec};
    let mut syn = Packet::new(Kind::Syn);
    syn.from = from.into();
    syn.dest = subject.into();
    syn.from_nonce = nonce.into();
    syn.wnd_seq = 64;
    syn.wnd_bytes = 1 << 20;
    codec::encode(&syn)
}

/// The next `n` SynAcks a raw client's inbox hears (bounded).
async fn synacks(sub: &mut async_nats::Subscriber, n: usize) -> Vec<swp::proto::Packet> {
    use futures::StreamExt;
    let mut got = Vec::new();
    while got.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("a SynAck within 5 s")
            .unwrap();
        let p = swp::proto::codec::decode(&m.payload).unwrap();
        if p.kind == swp::proto::Kind::SynAck {
            got.push(p);
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmitted_syn_reaches_the_session_answering_it_not_a_new_one() {
    let server = nats_server();
    let service = Service::bind(connect(server.url()).await, ServiceConfig::new("svc.retx"))
        .await
        .unwrap();
    let raw = async_nats::connect(server.url()).await.unwrap();
    let mut inbox = raw.subscribe("raw.client.1").await.unwrap();
    raw.flush().await.unwrap();
    let syn = raw_syn("raw.client.1", "svc.retx", "nonce-1");
    raw.publish("svc.retx", syn.clone()).await.unwrap();
    raw.publish("svc.retx", syn).await.unwrap(); // "our SynAck was lost"
    raw.flush().await.unwrap();
    let answers = synacks(&mut inbox, 2).await;
    // Both from the same private inbox, the same session (same nonce),
    // addressed to us; not from the service subject.
    assert_eq!(answers[0].from, answers[1].from);
    assert_eq!(answers[0].from_nonce, answers[1].from_nonce);
    assert_ne!(answers[0].from.as_str(), "svc.retx");
    assert!(answers.iter().all(|p| p.dest_nonce.as_str() == "nonce-1"));
    let st = service.stats();
    assert_eq!((st.syn_retransmits, st.active), (1, 1), "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_queue_members_may_both_answer_one_client_and_the_client_keeps_the_first() {
    // A Syn retransmitted into a queue group may reach another member
    // (docs/PROTOCOL.md §4.1). 20 hand-made clients send theirs twice: every
    // copy is answered, by one member or both; a real client meanwhile
    // connects and moves data as usual.
    let server = nats_server();
    let mut members = Vec::new();
    for _ in 0..2 {
        members.push(
            Service::bind(
                connect(server.url()).await,
                ServiceConfig::new("svc.twice").queue_group("g"),
            )
            .await
            .unwrap(),
        );
    }
    let raw = async_nats::connect(server.url()).await.unwrap();
    let mut both = 0;
    for i in 0..20 {
        let me = format!("raw.twice.{i}");
        let mut inbox = raw.subscribe(me.clone()).await.unwrap();
        raw.flush().await.unwrap();
        let syn = raw_syn(&me, "svc.twice", &format!("n{i}"));
        raw.publish("svc.twice", syn.clone()).await.unwrap();
        raw.publish("svc.twice", syn).await.unwrap();
        raw.flush().await.unwrap();
        let answers = synacks(&mut inbox, 2).await;
        if answers[0].from != answers[1].from {
            assert_ne!(answers[0].from_nonce, answers[1].from_nonce);
            both += 1;
        }
    }
    assert!(both > 0, "in 20 tries no Syn copy reached the other member");
    // A handshake that a hand-made client never completes may have given
    // up by now (a loaded machine): it still counts as one.
    let handshakes: u64 = members
        .iter()
        .map(|m| m.stats())
        .map(|st| st.active + st.handshakes_failed)
        .sum();
    let retx: u64 = members.iter().map(|m| m.stats().syn_retransmits).sum();
    assert_eq!(
        handshakes + retx,
        40,
        "every copy is a handshake or a retransmission"
    );
    // A real client is unaffected.
    let t = connect(server.url()).await;
    let mut s = Session::connect_to(t, "svc.twice", tuning()).await.unwrap();
    let accepted = tokio::select! {
        a = members[0].accept() => a,
        a = members[1].accept() => a,
    };
    let mut peer = accepted.unwrap();
    s.write_all(b"still one session").await.unwrap();
    s.shutdown().await.unwrap();
    let mut got = Vec::new();
    peer.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"still one session");
}

/// A NATS transport whose first `refuse` Syns to a service get the answer
/// nats-server gives when it delivered a request to nobody (503, "no
/// responders") instead of going out: what a burst of connects met now
/// and then from a subscribed service (docs/PROTOCOL.md §4.1).
struct Refusing {
    inner: Arc<NatsTransport>,
    refuse: std::sync::atomic::AtomicUsize,
    /// Syns handed to `publish_request`, refused or not.
    syns: std::sync::atomic::AtomicUsize,
    /// Inboxes with a 503 not yet reported.
    refused: std::sync::Mutex<Vec<(String, String)>>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Refusing {
    fn new(inner: Arc<NatsTransport>, refuse: usize) -> Arc<Refusing> {
        Arc::new(Refusing {
            inner,
            refuse: refuse.into(),
            syns: 0.into(),
            refused: Default::default(),
            changed: tokio::sync::watch::channel(0).0,
        })
    }
    /// Reports a 503 for `reply` as the transport would on its own.
    fn answer_503(&self, reply: &str, subject: &str) {
        self.refused
            .lock()
            .unwrap()
            .push((reply.to_string(), subject.to_string()));
        self.changed.send_modify(|n| *n += 1);
    }
}

impl swp::transport::Transport for Refusing {
    fn subscribe(
        &self,
        inbox: &str,
    ) -> futures::future::BoxFuture<'_, Result<swp::transport::Incoming, TransportError>> {
        self.inner.subscribe(inbox)
    }
    fn publish(
        &self,
        subject: &str,
        payload: bytes::Bytes,
    ) -> futures::future::BoxFuture<'_, Result<(), TransportError>> {
        self.inner.publish(subject, payload)
    }
    fn publish_request(
        &self,
        subject: &str,
        reply: &str,
        payload: bytes::Bytes,
    ) -> futures::future::BoxFuture<'_, Result<(), TransportError>> {
        use std::sync::atomic::Ordering::SeqCst;
        self.syns.fetch_add(1, SeqCst);
        let refuse = self
            .refuse
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            self.answer_503(reply, subject);
            Box::pin(async { Ok(()) })
        } else {
            self.inner.publish_request(subject, reply, payload)
        }
    }
    fn new_inbox(&self) -> Option<String> {
        self.inner.new_inbox()
    }
    fn max_payload(&self) -> usize {
        self.inner.max_payload()
    }
    fn capacity(&self) -> swp::transport::Capacity {
        self.inner.capacity()
    }
    fn denied(&self, subject: &str) -> Option<TransportError> {
        let mut refused = self.refused.lock().unwrap();
        if let Some(i) = refused.iter().position(|(r, _)| r == subject) {
            let (_, service) = refused.remove(i);
            return Some(TransportError::NoResponders { subject: service });
        }
        drop(refused);
        self.inner.denied(subject)
    }
    fn failures(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.changed.subscribe())
    }
}

/// nats-server answers "no responders" also when it dropped a request for
/// a subscriber it could not deliver to, so a connecting client sends its
/// Syn again (at once, after 25 ms, after 75 ms) and believes only the
/// fourth 503: up to three spurious answers cost nothing but time; four
/// fail clearly, within about 100 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spurious_no_responders_answer_is_retried_and_only_a_lasting_one_fails() {
    tokio::time::timeout(Duration::from_secs(120), spurious_no_responders_body())
        .await
        .expect("the test finishes within 120 s");
}

async fn spurious_no_responders_body() {
    use std::sync::atomic::Ordering::SeqCst;
    let server = nats_server();
    let service = Arc::new(
        Service::bind(connect(server.url()).await, ServiceConfig::new("svc.flaky"))
            .await
            .unwrap(),
    );
    let _echo = echo_messages(service.clone());
    let inner = connect(server.url()).await;
    for refuse in 0..=3 {
        let t = Refusing::new(inner.clone(), refuse);
        let started = Instant::now();
        let s = Session::connect_to(t.clone(), "svc.flaky", tuning())
            .await
            .unwrap_or_else(|e| panic!("{refuse} spurious 503s: {e}"));
        assert_eq!(t.syns.load(SeqCst), refuse + 1, "one Syn per 503, plus one");
        let least: Duration = swp::session::SYN_RETRY_BACKOFF.iter().take(refuse).sum();
        assert!(started.elapsed() >= least, "backed off {least:?}");
        s.send(format!("after {refuse}")).await.unwrap();
        assert_eq!(s.recv().await.unwrap().unwrap(), format!("after {refuse}"));
        // A late 503 (for a Syn sent before the one that got through)
        // says nothing about an established session.
        t.answer_503(&s.local_inbox(), "svc.flaky");
        s.send("still here").await.unwrap();
        assert_eq!(s.recv().await.unwrap().unwrap(), "still here");
        s.close().await.unwrap();
    }
    // Four in a row: believed, within the backoff and a few round trips.
    let t = Refusing::new(inner.clone(), usize::MAX);
    let started = Instant::now();
    let err = Session::connect_to(t.clone(), "svc.flaky", tuning())
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, SessionError::Transport(TransportError::NoResponders { subject }) if subject == "svc.flaky"),
        "{err}"
    );
    assert_eq!(t.syns.load(SeqCst), 4, "the fourth 503 is believed");
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(400),
        "failed after {took:?}"
    );
}

/// A burst of connects through one service, as the benchmark makes them:
/// every one gets through, and each session then carries a message both
/// ways. (The benchmark once saw 8 of 300 such connects told "nobody is
/// listening"; this test did not reproduce that without the Syn retry on
/// this machine, so the retry itself is pinned by the test above.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_connects_through_one_service_all_get_through() {
    tokio::time::timeout(Duration::from_secs(180), burst_body())
        .await
        .expect("the test finishes within 180 s");
}

async fn burst_body() {
    const N: usize = 300;
    let server = nats_server();
    let service = Arc::new(
        Service::bind(
            connect(server.url()).await,
            ServiceConfig::new("svc.burst").max_sessions(N + 16),
        )
        .await
        .unwrap(),
    );
    let _echo = echo_messages(service.clone());
    let tc = connect(server.url()).await;
    for round in 0..3 {
        let connects: Vec<_> = (0..N)
            .map(|_| {
                let tc = tc.clone();
                tokio::spawn(async move { Session::connect_to(tc, "svc.burst", tuning()).await })
            })
            .collect();
        let mut sessions = Vec::new();
        let mut failed = Vec::new();
        for c in connects {
            match c.await.unwrap() {
                Ok(s) => sessions.push(s),
                Err(e) => failed.push(e.to_string()),
            }
        }
        assert!(
            failed.is_empty(),
            "round {round}: {} of {N} connects failed, first: {}",
            failed.len(),
            failed[0]
        );
        for (i, s) in sessions.iter().enumerate() {
            s.send(format!("{round}.{i}")).await.unwrap();
        }
        for (i, s) in sessions.iter().enumerate() {
            assert_eq!(s.recv().await.unwrap().unwrap(), format!("{round}.{i}"));
        }
        for s in sessions {
            s.close().await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_service_serves_its_allowed_clients_and_refuses_the_rest_without_leaking_slots() {
    tokio::time::timeout(Duration::from_secs(120), sealed_service_body())
        .await
        .expect("the test finishes within 120 s");
}

async fn sealed_service_body() {
    use swp::proto::seal::{Keypair, Seal};
    let server = nats_server();
    let service_key = Keypair::generate();
    let allowed: Vec<Keypair> = (0..40).map(|_| Keypair::generate()).collect();
    let seal = Seal::keys(service_key.clone()).allow(allowed.iter().map(|k| *k.public()));
    let service = Arc::new(
        Service::bind(
            connect(server.url()).await,
            ServiceConfig::new("svc.sealed").tuning(tuning().seal(seal)),
        )
        .await
        .unwrap(),
    );
    // Echoes, and checks that each session is sealed by an allowed key.
    let keys: Vec<_> = allowed.iter().map(|k| *k.public()).collect();
    let svc = service.clone();
    let _echo = tokio::spawn(async move {
        while let Ok(s) = svc.accept().await {
            assert!(s.is_sealed());
            assert!(keys.contains(&s.peer_public_key().expect("a proved key")));
            tokio::spawn(echo_session(s));
        }
    });
    let t = connect(server.url()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (id, k) in allowed.iter().enumerate() {
        let (t, pin, k) = (t.clone(), *service_key.public(), k.clone());
        tasks.spawn(async move {
            let id = id as u64;
            let data = payload(id, size_of(id));
            let tuning = tuning().seal(Seal::keys(k).peer(pin));
            let mut s = Session::connect_to(t, "svc.sealed", tuning)
                .await
                .map_err(|e| format!("client {id}: connect: {e}"))?;
            assert_eq!(s.peer_public_key(), Some(pin));
            let (mut rd, mut wr) = tokio::io::split(&mut s);
            let send = async {
                wr.write_all(&data).await?;
                wr.shutdown().await
            };
            let mut back = Vec::new();
            let (sent, read) = tokio::join!(send, rd.read_to_end(&mut back));
            sent.and(read).map_err(|e| format!("client {id}: {e}"))?;
            if back != data {
                return Err(format!("client {id}: the echo differs"));
            }
            Ok(())
        });
    }
    // Strangers (a key not allowed), the wrong pin, and plain clients.
    for i in 0..15u64 {
        let t = t.clone();
        let pin = *service_key.public();
        tasks.spawn(async move {
            let (tuning, expect) = match i % 3 {
                0 => (
                    tuning().seal(Seal::keys(Keypair::generate()).peer(pin)),
                    "not allowed",
                ),
                1 => (
                    tuning()
                        .seal(Seal::keys(Keypair::generate()).peer(*Keypair::generate().public())),
                    "does not verify",
                ),
                _ => (tuning(), "only sealed sessions"),
            };
            let t0 = Instant::now();
            match Session::connect_to(t, "svc.sealed", tuning).await {
                Ok(_) => Err(format!("stranger {i} got in")),
                Err(e)
                    if e.to_string().contains(expect) && t0.elapsed() < Duration::from_secs(8) =>
                {
                    Ok(())
                }
                Err(e) => Err(format!("stranger {i}: {e} after {:?}", t0.elapsed())),
            }
        });
    }
    let mut failures = Vec::new();
    while let Some(r) = tasks.join_next().await {
        if let Err(e) = r.unwrap() {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    let stats = service.stats();
    assert_eq!(stats.accepted, 40, "{stats:?}");
    assert!(stats.handshakes_failed >= 15, "{stats:?}");
    // Every refused or finished session gave its slot back.
    let deadline = Instant::now() + Duration::from_secs(20);
    while service.stats().active > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(service.stats().active, 0, "{:?}", service.stats());
}
