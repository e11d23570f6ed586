//! Sealed sessions end to end: `swp keygen`, then `swp send` and `swp recv`
//! as real processes through a real nats-server, with a third NATS client
//! subscribed to `>` that records every payload and publishes into both
//! inboxes while the file moves: replays, bit-flipped copies, garbage, and
//! plain packets forged with the inboxes and nonces it read off the
//! handshake (data at low sequence numbers, acks, huge windows, Fin,
//! Reset). The transfer must complete byte-exact, and no recorded payload
//! may contain the file's marker.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::wait_bounded;

use bytes::Bytes;
use futures::StreamExt;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use swp::proto::{Kind, Packet, codec, flags};

const SWP: &str = env!("CARGO_BIN_EXE_swp");
const MARKER: &[u8] = b"<<swp-sealed-marker-7f3a>>";

/// `swp recv --quiet` on `inbox` (giving up after `timeout` s) into `out`,
/// with `extra` flags, output captured.
fn spawn_recv(server: &str, inbox: &str, timeout: &str, extra: &[OsString], out: &Path) -> Child {
    Command::new(SWP)
        .args([
            "recv",
            "--quiet",
            "--inbox",
            inbox,
            "--timeout",
            timeout,
            "--server",
            server,
        ])
        .args(extra)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `swp send --quiet FILE` to `inbox` with `extra` flags, output captured.
fn spawn_send(server: &str, inbox: &str, extra: &[OsString], file: &Path) -> Child {
    Command::new(SWP)
        .args(["send", "--quiet", "--to", inbox, "--server", server])
        .args(extra)
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Flags as the processes take them.
fn flags(items: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    items.iter().map(|i| i.as_ref().to_os_string()).collect()
}

fn keygen(path: &std::path::Path) -> String {
    let out = Command::new(SWP).arg("keygen").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn keygen_writes_an_owner_only_file_never_overwrites_and_shows_the_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = common::TempDir::new("sealed-keygen");
    let k = dir.0.join("me.key");
    let public = keygen(&k);
    assert_eq!(public.len(), 64);
    assert_eq!(
        std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = Command::new(SWP).arg("keygen").arg(&k).output().unwrap();
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("--show"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let show = Command::new(SWP)
        .args(["keygen", "--show"])
        .arg(&k)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&show.stdout).trim(), public);
    std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = Command::new(SWP)
        .args(["keygen", "--show"])
        .arg(&k)
        .output()
        .unwrap();
    assert!(!open.status.success());
    assert!(
        String::from_utf8_lossy(&open.stderr).contains("chmod 600"),
        "{}",
        String::from_utf8_lossy(&open.stderr)
    );
}

/// Records every payload on `>`; for each, publishes forgeries
/// into both session inboxes. Returns (recorded, injected).
async fn attacker(url: String, stop: Arc<AtomicU64>, seen: Arc<Mutex<Vec<Bytes>>>) -> u64 {
    // no_echo: it records and replays what the two ends send, not itself.
    let client = async_nats::ConnectOptions::new()
        .no_echo()
        .connect(url)
        .await
        .unwrap();
    let mut sub = client.subscribe(">").await.unwrap();
    client.flush().await.unwrap();
    stop.store(1, Ordering::SeqCst);
    let mut injected = 0u64;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // (inbox, nonce) of each side, read off the plain handshake packets.
    let mut sides: Vec<(String, String)> = Vec::new();
    while stop.load(Ordering::SeqCst) == 1 {
        let msg = match tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
            Ok(Some(m)) => m,
            Ok(None) => break,
            Err(_) => continue,
        };
        if msg.subject.starts_with("$SYS") {
            continue;
        }
        seen.lock().unwrap().push(msg.payload.clone());
        if let Ok(p) = codec::decode(&msg.payload)
            && matches!(p.kind, Kind::Syn | Kind::SynAck)
            && p.has(flags::SEALED)
        {
            let s = (p.from.to_string(), p.from_nonce.to_string());
            if !sides.contains(&s) {
                sides.push(s);
            }
        }
        if injected > 40_000 || sides.len() < 2 {
            continue;
        }
        for (i, (to, to_nonce)) in sides.clone().iter().enumerate() {
            let (from, from_nonce) = sides[1 - i.min(1)].clone();
            let forged: Vec<Bytes> = vec![
                msg.payload.clone(), // a replay
                {
                    let mut f = msg.payload.to_vec();
                    if !f.is_empty() {
                        let at = (next() as usize) % f.len();
                        f[at] ^= 0x10;
                    }
                    Bytes::from(f)
                },
                Bytes::from(
                    (0..(next() % 200) as usize)
                        .map(|_| next() as u8)
                        .collect::<Vec<_>>(),
                ),
                {
                    let kind = [Kind::Data, Kind::Ack, Kind::Fin, Kind::Reset, Kind::FinAck]
                        [(next() % 5) as usize];
                    let mut q = Packet::new(kind);
                    q.from = from.as_str().into();
                    q.dest = to.as_str().into();
                    q.from_nonce = from_nonce.as_str().into();
                    q.dest_nonce = to_nonce.as_str().into();
                    q.seq = next() % 32;
                    q.ack = next() % 32;
                    q.wnd_seq = 1 << 40;
                    q.wnd_bytes = 1 << 50;
                    q.flags = flags::EOM;
                    if kind == Kind::Data {
                        q.data = Bytes::from(vec![b'X'; 512]);
                        q.cumul_bytes = 512;
                    }
                    codec::encode(&q)
                },
            ];
            for f in forged {
                if client.publish(to.clone(), f).await.is_ok() {
                    injected += 1;
                }
            }
        }
    }
    injected
}

#[test]
fn a_sealed_file_transfer_survives_a_hostile_subscriber_and_shows_it_nothing() {
    let server = common::nats_server();
    let dir = common::TempDir::new("sealed-hostile");
    let (rk, sk) = (dir.0.join("recv.key"), dir.0.join("send.key"));
    let (rpub, spub) = (keygen(&rk), keygen(&sk));
    // The receiver allows a known-peers file: a comment, a stranger's key,
    // and the sender's.
    let known = dir.0.join("known_peers");
    let stranger = keygen(&dir.0.join("stranger.key"));
    std::fs::write(
        &known,
        format!("# who may send\n{stranger}\n{spub}  sender\n"),
    )
    .unwrap();
    let src = dir.0.join("data.bin");
    let data: Vec<u8> = MARKER.iter().copied().cycle().take(24 << 20).collect();
    std::fs::write(&src, &data).unwrap();
    let rt = common::background_runtime();
    let stop = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let injector = rt.spawn(attacker(server.url(), stop.clone(), seen.clone()));
    while stop.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let inbox = common::inbox("sealed", "hostile");
    let out = dir.0.join("out");
    let recv_flags = flags(&[&"--key", &rk, &"--peer-key", &known]);
    let recv = spawn_recv(&server.url(), &inbox, "30", &recv_flags, &out);
    let send_flags = flags(&[&"--key", &sk, &"--peer-key", &rpub]);
    let send = spawn_send(&server.url(), &inbox, &send_flags, &src);
    let send = wait_bounded(send, Duration::from_secs(60), "swp send");
    let recv = wait_bounded(recv, Duration::from_secs(60), "swp recv");
    stop.store(2, Ordering::SeqCst);
    let injected = rt.block_on(injector).unwrap();
    let (serr, rerr) = (
        String::from_utf8_lossy(&send.stderr),
        String::from_utf8_lossy(&recv.stderr),
    );
    assert!(
        send.status.success() && recv.status.success(),
        "send: {serr}\nrecv: {rerr}"
    );
    assert!(
        std::fs::read(out.join("data.bin")).unwrap() == data,
        "the file arrived changed"
    );
    let seen = seen.lock().unwrap();
    assert!(injected > 1000, "the attacker injected only {injected}");
    // Enough of the transfer to look for leaks in (24 MiB is some 400
    // packets; the attacker's own subscription is a slow consumer under
    // load and drops some: 272 were seen in one loaded run).
    assert!(
        seen.len() > 100,
        "the attacker saw only {} payloads",
        seen.len()
    );
    let leaks = seen
        .iter()
        .filter(|p| p.windows(MARKER.len()).any(|w| w == MARKER))
        .count();
    assert_eq!(
        leaks,
        0,
        "{leaks} of {} recorded payloads show the file's content",
        seen.len()
    );
    println!(
        "{} payloads recorded, {injected} forgeries injected, none believed",
        seen.len()
    );
}

#[test]
fn wrong_keys_and_plain_peers_fail_clearly_within_the_connect_budget() {
    let server = common::nats_server();
    let dir = common::TempDir::new("sealed-wrong");
    let (rk, sk, other) = (
        dir.0.join("r.key"),
        dir.0.join("s.key"),
        dir.0.join("o.key"),
    );
    let (rpub, spub, opub) = (keygen(&rk), keygen(&sk), keygen(&other));
    let src = dir.0.join("note.txt");
    std::fs::write(&src, "hello").unwrap();
    let cases: Vec<(&str, Vec<String>, Vec<String>, &str)> = vec![
        (
            "pinned the wrong key",
            vec!["--key".into(), rk.display().to_string()],
            vec![
                "--key".into(),
                sk.display().to_string(),
                "--peer-key".into(),
                opub.clone(),
            ],
            "sealed handshake failed",
        ),
        (
            "a client the receiver does not allow",
            vec![
                "--key".into(),
                rk.display().to_string(),
                "--peer-key".into(),
                opub.clone(),
            ],
            vec![
                "--key".into(),
                sk.display().to_string(),
                "--peer-key".into(),
                rpub.clone(),
            ],
            "not allowed",
        ),
        (
            "a plain sender at a sealed receiver",
            vec![
                "--key".into(),
                rk.display().to_string(),
                "--peer-key".into(),
                spub.clone(),
            ],
            vec![],
            "only sealed sessions",
        ),
        (
            "a sealed sender at a plain receiver",
            vec![],
            vec![
                "--key".into(),
                sk.display().to_string(),
                "--peer-key".into(),
                rpub.clone(),
            ],
            "does not seal sessions",
        ),
        (
            "a sealed client without a pin",
            vec![],
            vec!["--key".into(), sk.display().to_string()],
            "--peer-key",
        ),
    ];
    for (i, (name, recv_args, send_args, expect)) in cases.into_iter().enumerate() {
        let inbox = common::inbox("sealed", &format!("wrong{i}"));
        let out = dir.0.join(format!("out{i}"));
        let recv_args: Vec<OsString> = recv_args.iter().map(OsString::from).collect();
        let send_args: Vec<OsString> = send_args.iter().map(OsString::from).collect();
        let recv = spawn_recv(&server.url(), &inbox, "9", &recv_args, &out);
        let t0 = Instant::now();
        let send = spawn_send(&server.url(), &inbox, &send_args, &src);
        let send = wait_bounded(send, Duration::from_secs(20), name);
        let took = t0.elapsed();
        let serr = String::from_utf8_lossy(&send.stderr).into_owned();
        assert!(!send.status.success(), "{name}: the sender succeeded");
        assert!(serr.contains(expect), "{name}: {serr}");
        // The connect budget: 500 ms doubling to 2 s, five attempts.
        assert!(took < Duration::from_secs(10), "{name}: {took:?}");
        let recv = wait_bounded(recv, Duration::from_secs(20), name);
        assert!(!recv.status.success(), "{name}: the receiver claims a file");
        assert!(!dir.0.join(format!("out{i}/note.txt")).exists(), "{name}");
    }
}
