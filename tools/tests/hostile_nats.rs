//! A hostile third party on a real nats-server: a plain NATS client that
//! subscribes to `>`, copies the session nonces from the traffic, and
//! publishes acknowledgements the receiver never sent, while `swp send` and
//! `swp recv` run as real processes. Whatever it does, both processes end
//! within a bound: with the file byte-exact, or with an explicit error on
//! both sides; and a flood of every forgery a plain session promises not
//! to believe leaves a transfer byte-exact. (Authenticating packets, so
//! that forgeries cannot even end a session, is the sealed-sessions work;
//! here: no hang, no silent loss.)

#[path = "../../tests/common/mod.rs"]
mod common;

use common::wait_bounded;

use futures::StreamExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use swp::proto::{Kind, Packet, codec};

const SWP: &str = env!("CARGO_BIN_EXE_swp");

/// What the injector forges from each data packet it sees go by.
#[derive(Clone, Copy, Debug)]
enum Forgery {
    /// An ack of everything sent so far, before the receiver has it.
    AckAllSeen,
    /// An ack one past everything sent: impossible, must be dropped.
    AckBeyond,
}

/// Watches all traffic; for every data packet A -> B, publishes to A a
/// forged ack "from B" with the nonces it has seen. Returns how many.
async fn inject(url: String, forgery: Forgery, stop: Arc<AtomicU64>) -> u64 {
    let client = async_nats::connect(url).await.unwrap();
    let mut sub = client.subscribe(">").await.unwrap();
    client.flush().await.unwrap();
    stop.store(1, Ordering::SeqCst); // ready
    let mut forged = 0u64;
    // The receiver's nonce and last window, learnt from its own packets.
    let mut receiver: Option<(String, u64, u64)> = None;
    while stop.load(Ordering::SeqCst) == 1 {
        let msg = match tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(_) => continue,
        };
        let Ok(p) = codec::decode(&msg.payload) else {
            continue;
        };
        if p.kind != Kind::Data && !p.from.as_str().starts_with("swp.send.") {
            // A packet from the receiver: its nonce and window.
            receiver = Some((p.from_nonce.to_string(), p.wnd_seq, p.wnd_bytes));
            continue;
        }
        if p.kind != Kind::Data || p.dest_nonce.is_empty() {
            continue;
        }
        let Some((r_nonce, wnd_seq, wnd_bytes)) = receiver.clone() else {
            continue;
        };
        let mut f = Packet::new(Kind::Ack);
        f.from = p.dest.clone();
        f.dest = p.from.clone();
        f.from_nonce = r_nonce.as_str().into();
        f.dest_nonce = p.from_nonce.clone();
        f.ack = match forgery {
            Forgery::AckAllSeen => p.seq + 1,
            Forgery::AckBeyond => p.seq + 2,
        };
        f.wnd_seq = wnd_seq;
        f.wnd_bytes = wnd_bytes;
        client
            .publish(p.from.to_string(), codec::encode(&f))
            .await
            .unwrap();
        forged += 1;
    }
    forged
}

/// `swp recv --inbox to` into `out`, then `swp send --to to` of `src`
/// (with `send_args`), as real processes; waits for both, each within
/// `limit_s` seconds: (send's output, recv's output).
fn transfer(
    url: &str,
    to: &str,
    send_args: &[&str],
    src: &std::path::Path,
    out: &std::path::Path,
    limit_s: u64,
) -> (std::process::Output, std::process::Output) {
    let recv = Command::new(SWP)
        .args(["recv", "--inbox", to, "--timeout", "30", "--server", url])
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let send = Command::new(SWP)
        .args(["send", "--to", to, "--server", url])
        .args(send_args)
        .arg(src)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let limit = Duration::from_secs(limit_s);
    let send = wait_bounded(send, limit, "swp send");
    let recv = wait_bounded(recv, limit, "swp recv");
    (send, recv)
}

fn run(forgery: Forgery) {
    let server = common::nats_server();
    let dir = common::TempDir::new(&format!("hostile-{forgery:?}"));
    let src = dir.0.join("data.bin");
    let data: Vec<u8> = (0..(48u64 << 20)).map(swp::testkit::pattern_byte).collect();
    std::fs::write(&src, &data).unwrap();
    let rt = common::background_runtime();
    let stop = Arc::new(AtomicU64::new(0));
    let injector = rt.spawn(inject(server.url(), forgery, stop.clone()));
    while stop.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let inbox = common::inbox("hostile", &format!("{forgery:?}"));
    let out = dir.0.join("out");
    // Each side's dead-peer timeout is ~11 s; a hang is anything beyond.
    let (send, recv) = transfer(&server.url(), &inbox, &[], &src, &out, 40);
    stop.store(2, Ordering::SeqCst);
    let forged = rt.block_on(injector).unwrap();
    assert!(forged > 0, "{forgery:?}: the injector forged nothing");
    let (serr, rerr) = (
        String::from_utf8_lossy(&send.stderr).into_owned(),
        String::from_utf8_lossy(&recv.stderr).into_owned(),
    );
    match (send.status.success(), recv.status.success()) {
        (true, true) => {
            // Completed: then byte-exact (the digest was verified too).
            assert_eq!(std::fs::read(out.join("data.bin")).unwrap(), data);
        }
        (false, false) => {
            // Both sides told: neither claims success, nothing was saved.
            assert!(
                !out.join("data.bin").exists(),
                "{forgery:?}: a failed transfer saved a file"
            );
            assert!(
                serr.starts_with("swp: ") && rerr.contains("swp: "),
                "{serr}\n{rerr}"
            );
        }
        (s, r) => panic!(
            "{forgery:?}: the two sides tell different stories: send ok {s}, recv ok {r}\n\
             send: {serr}\nrecv: {rerr}"
        ),
    }
    println!("{forgery:?}: {forged} forged acks; send: {serr} recv: {rerr}");
}

#[test]
fn forged_acks_of_unreceived_data_end_in_success_or_an_error_on_both_sides() {
    run(Forgery::AckAllSeen);
}

#[test]
fn acks_of_data_never_sent_are_dropped_and_the_transfer_completes() {
    run(Forgery::AckBeyond);
}

/// A whole file transfer, as the command-line tool runs it, under the
/// flood of [`common::Flood`] (a `>` subscriber that answers every packet
/// it sees with up to 64 forgeries of every kind a plain session promises
/// never to believe, through the handshake, the data and the close): both
/// processes succeed, the file is byte-exact, and neither reports a fault.
#[test]
fn a_file_transfer_under_a_flood_of_forgeries_completes_byte_exact() {
    let server = common::nats_server();
    let dir = common::TempDir::new("hostile-flood");
    let src = dir.0.join("data.bin");
    let data: Vec<u8> = (0..(24u64 << 20)).map(swp::testkit::pattern_byte).collect();
    std::fs::write(&src, &data).unwrap();
    let rt = common::background_runtime();
    let (to, from) = (
        common::inbox("hostile-flood", "recv"),
        common::inbox("hostile-flood", "send"),
    );
    let flood = rt.block_on(common::Flood::start(
        &server.url(),
        vec![to.clone(), from.clone()],
        11,
    ));
    let out = dir.0.join("out");
    let (send, recv) = transfer(&server.url(), &to, &["--inbox", &from], &src, &out, 60);
    let injected = rt.block_on(flood.stop());
    let said = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        send.status.success() && recv.status.success(),
        "send: {}\nrecv: {}",
        said(&send),
        said(&recv)
    );
    assert!(injected > 1000, "the flood injected only {injected}");
    assert!(
        std::fs::read(out.join("data.bin")).unwrap() == data,
        "the file differs"
    );
    println!(
        "{injected} forgeries; send: {} recv: {}",
        said(&send),
        said(&recv)
    );
}
