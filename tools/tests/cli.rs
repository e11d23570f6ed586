//! The `swp` command end to end: separate sender and receiver processes
//! through a real nats-server, `swp demo`, and failures' exit codes.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

const SWP: &str = env!("CARGO_BIN_EXE_swp");

#[test]
fn send_and_recv_in_two_processes() {
    two_processes(false);
}

/// `swp send --go` speaks go-sliding-window's format and BigFile form;
/// `swp recv` notices and answers in kind.
#[test]
fn send_go_format_to_recv_in_two_processes() {
    two_processes(true);
}

fn two_processes(go: bool) {
    let server = common::nats_server();
    let dir = std::env::temp_dir().join(format!("swp-cli-{go}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("payload.bin");
    let data: Vec<u8> = (0..5_000_000u64).map(swp::testkit::pattern_byte).collect();
    std::fs::write(&src, &data).unwrap();
    let out = dir.join("incoming");
    let inbox = common::inbox(if go { "cli-go" } else { "cli" }, "recv");
    let recv = Command::new(SWP)
        .args(["recv", "--inbox", &inbox, "--out"])
        .arg(&out)
        .args(["--timeout", "60", "--server", &server.url()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The sender retries its handshake (5 attempts with backoff), so it
    // does not matter which process gets to the server first.
    let send = Command::new(SWP)
        .arg("send")
        .arg(&src)
        .args(["--to", &inbox, "--server", &server.url()])
        .args(if go { &["--go", "--json"][..] } else { &[][..] })
        .output()
        .unwrap();
    assert!(
        send.status.success(),
        "send failed: {}",
        String::from_utf8_lossy(&send.stderr)
    );
    let recv = recv.wait_with_output().unwrap();
    assert!(
        recv.status.success(),
        "recv failed: {}",
        String::from_utf8_lossy(&recv.stderr)
    );
    assert_eq!(std::fs::read(out.join("payload.bin")).unwrap(), data);
    let said = String::from_utf8_lossy(&recv.stdout);
    assert!(
        said.contains("received payload.bin") && said.contains("verified"),
        "{said}"
    );
    assert_eq!(said.contains("from a go-sliding-window peer"), go, "{said}");
    let sent = String::from_utf8_lossy(&send.stdout);
    if go {
        // --json: one object, with the session's counters; against a Go
        // peer it says how much data it left unread there (learned from
        // the 512 KiB floor, PROTOCOL.md §13.2).
        let v: serde_json::Value = serde_json::from_str(sent.trim()).expect(&sent);
        assert_eq!(
            (v["op"].as_str(), v["name"].as_str()),
            (Some("send"), Some("payload.bin")),
            "{sent}"
        );
        let link = &v["link"];
        // Packets follow that buffer: 64 KiB at first, never above 512 KiB.
        let packets = link["data_packets"].as_u64().expect(&sent);
        let repairs = [
            "retransmits_timeout",
            "retransmits_fast",
            "retransmits_probe",
        ]
        .iter()
        .map(|k| link[k].as_u64().expect(&sent))
        .sum::<u64>();
        assert!(
            packets >= 5_000_000u64.div_ceil(512 << 10)
                && packets <= 5_000_000u64.div_ceil(64 << 10) + repairs,
            "{sent}"
        );
        assert!(
            link["go_peer_buffer"].as_u64().expect(&sent) >= 512 << 10,
            "{sent}"
        );
        assert!(
            link["go_peer_buffer_fallbacks"].as_u64().is_some(),
            "{sent}"
        );
    } else {
        assert!(sent.contains("sent payload.bin"), "{sent}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_runs_and_verifies() {
    let out = Command::new(SWP)
        .args(["demo", "--size", "8"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("verified"));
}

/// `swp bench --quick` starts its own nats-server (with JetStream) and
/// prints every row of the one benchmark, each beside its anchor: the
/// stream, sealed, latency, the files (the library call, the command-line
/// processes it runs from its own binary, the Object Store), the
/// sessions, the messages and the engine's curve in the simulator.
#[test]
fn bench_quick_prints_every_row_beside_its_anchor() {
    let child = Command::new(SWP)
        .args(["bench", "--quick"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = common::wait_bounded(child, Duration::from_secs(600), "swp bench --quick");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for row in [
        "stream, 63 KiB packets (default)",
        "vs raw with app copies",
        "sealed stream vs plain swp",
        "ping-pong",
        "send_file->recv_file",
        "bound on this machine",
        "swp send -> swp recv (processes)",
        "swp put, then swp get (swp serve)",
        "Object Store put+get",
        "100 sessions through one service",
        "1 KiB messages",
        "engine cost per packet vs window",
        "vs window 256",
    ] {
        assert!(said.contains(row), "no {row:?} row in:\n{said}");
    }
    assert!(!said.contains("no Object Store row"), "{said}");
}

#[test]
fn failures_exit_non_zero_with_a_one_line_reason() {
    let server = common::nats_server();
    // Nobody sends: recv gives up after its timeout.
    let t0 = std::time::Instant::now();
    let out = Command::new(SWP)
        .args([
            "recv",
            "--inbox",
            "nobody.sends",
            "--timeout",
            "700ms",
            "--quiet",
            "--server",
            &server.url(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no sender connected"), "{err}");
    assert!(err.contains("700ms"), "the duration as given: {err}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    // No server at all.
    let out = Command::new(SWP)
        .args([
            "send",
            "Cargo.toml",
            "--to",
            "x",
            "--server",
            "nats://127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to NATS"));
}

#[test]
fn credentials_as_options_and_in_the_url() {
    let server = swp::server::NatsServer::start_with_args(&["--user", "alice", "--pass", "s3cret"])
        .unwrap_or_else(|e| panic!("this test needs a real nats-server: {e}"));
    let port = server.port();
    let dir = std::env::temp_dir().join(format!("swp-cli-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("secret.txt");
    std::fs::write(&src, b"for alice only").unwrap();
    let inbox = common::inbox("cli", "auth");
    // Receiver: credentials as options. Sender: credentials in the URL.
    let recv = Command::new(SWP)
        .args([
            "recv",
            "--quiet",
            "--timeout",
            "30",
            "--inbox",
            &inbox,
            "--user",
            "alice",
            "--password",
            "s3cret",
        ])
        .args(["--server", &format!("nats://127.0.0.1:{port}"), "--out"])
        .arg(dir.join("out"))
        .spawn()
        .unwrap();
    let send = Command::new(SWP)
        .args([
            "send",
            "--quiet",
            "--to",
            &inbox,
            "--server",
            &format!("nats://alice:s3cret@127.0.0.1:{port}"),
        ])
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        send.status.success(),
        "{}",
        String::from_utf8_lossy(&send.stderr)
    );
    assert!(recv.wait_with_output().unwrap().status.success());
    assert_eq!(
        std::fs::read(dir.join("out/secret.txt")).unwrap(),
        b"for alice only"
    );
    // Wrong password: a clear failure.
    let bad = Command::new(SWP)
        .args([
            "send",
            "--to",
            &inbox,
            "--server",
            &format!("nats://alice:wrong@127.0.0.1:{port}"),
        ])
        .arg(&src)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `swp recv` and `swp send` with the given connection arguments and
/// checks the file arrived.
fn transfer_with(recv_args: &[String], send_args: &[String], tag: &str) {
    let dir = std::env::temp_dir().join(format!("swp-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("note.txt");
    std::fs::write(&src, format!("sent with {tag}")).unwrap();
    let inbox = common::inbox("cli", tag);
    let recv = Command::new(SWP)
        .args(["recv", "--quiet", "--timeout", "30", "--inbox", &inbox])
        .args(recv_args)
        .arg("--out")
        .arg(dir.join("out"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let send = Command::new(SWP)
        .args(["send", "--quiet", "--to", &inbox])
        .args(send_args)
        .arg(&src)
        .output()
        .unwrap();
    let recv = recv.wait_with_output().unwrap();
    assert!(
        send.status.success(),
        "{tag} send: {}",
        String::from_utf8_lossy(&send.stderr)
    );
    assert!(
        recv.status.success(),
        "{tag} recv: {}",
        String::from_utf8_lossy(&recv.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("out/note.txt")).unwrap(),
        format!("sent with {tag}")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn token_as_option_and_in_the_url() {
    let server = swp::server::NatsServer::start_with_args(&["--auth", "t0ken"])
        .unwrap_or_else(|e| panic!("this test needs a real nats-server: {e}"));
    let plain = format!("nats://127.0.0.1:{}", server.port());
    let in_url = format!("nats://t0ken@127.0.0.1:{}", server.port());
    transfer_with(
        &["--server".into(), plain, "--token".into(), "t0ken".into()],
        &["--server".into(), in_url],
        "token",
    );
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("this test needs the openssl command (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn mutual_tls_with_tlscert_tlskey_tlsca() {
    let dir = std::env::temp_dir().join(format!("swp-cli-pki-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A throwaway CA, a server certificate for 127.0.0.1, a client certificate.
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=swp test CA",
        ],
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    for who in ["server", "client"] {
        openssl(
            &dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{who}.key"),
                "-out",
                &format!("{who}.csr"),
                "-subj",
                &format!("/CN={who}"),
            ],
        );
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{who}.pem"),
                "-days",
                "2",
                "-extfile",
                "san.ext",
            ],
        );
    }
    let p = |f: &str| dir.join(f).display().to_string();
    let server = swp::server::NatsServer::start_with_args(&[
        "--tlsverify",
        "--tlscert",
        &p("server.pem"),
        "--tlskey",
        &p("server.key"),
        "--tlscacert",
        &p("ca.pem"),
    ])
    .unwrap_or_else(|e| panic!("this test needs a real nats-server: {e}"));
    let args: Vec<String> = vec![
        "--server".into(),
        format!("tls://127.0.0.1:{}", server.port()),
        "--tlscert".into(),
        p("client.pem"),
        "--tlskey".into(),
        p("client.key"),
        "--tlsca".into(),
        p("ca.pem"),
    ];
    transfer_with(&args, &args, "tls");
    // Without a client certificate the server refuses us, and we say so.
    let out = Command::new(SWP)
        .args([
            "send",
            "Cargo.toml",
            "--to",
            "x",
            "--server",
            &format!("tls://127.0.0.1:{}", server.port()),
            "--tlsca",
            &p("ca.pem"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A JWT as NATS writes them: ed25519-nkey signed, base64url parts.
fn nats_jwt(signer: &nkeys::KeyPair, claims: serde_json::Value) -> String {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = e.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = e.encode(claims.to_string());
    let sig = signer.sign(format!("{header}.{body}").as_bytes()).unwrap();
    format!("{header}.{body}.{}", e.encode(sig))
}

#[test]
fn creds_file_against_an_operator_mode_server() {
    use serde_json::json;
    let dir = std::env::temp_dir().join(format!("swp-cli-jwt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (op, acc, user) = (
        nkeys::KeyPair::new_operator(),
        nkeys::KeyPair::new_account(),
        nkeys::KeyPair::new_user(),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let op_jwt = nats_jwt(
        &op,
        json!({"jti": "swp-op", "iat": now, "iss": op.public_key(), "sub": op.public_key(),
        "name": "swp-test-operator", "nats": {"type": "operator", "version": 2}}),
    );
    let acc_jwt = nats_jwt(
        &op,
        json!({"jti": "swp-acc", "iat": now, "iss": op.public_key(), "sub": acc.public_key(),
        "name": "swp-test-account", "nats": {"type": "account", "version": 2,
        "limits": {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true, "conn": -1, "leaf": -1}}}),
    );
    let user_jwt = nats_jwt(
        &acc,
        json!({"jti": "swp-user", "iat": now, "iss": acc.public_key(), "sub": user.public_key(),
        "name": "swp-test-user", "nats": {"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}}),
    );
    let conf = dir.join("server.conf");
    std::fs::write(
        &conf,
        format!("operator: \"{op_jwt}\"\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{acc_jwt}\"\n}}\n", acc.public_key()),
    )
    .unwrap();
    let creds = dir.join("user.creds");
    std::fs::write(
        &creds,
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().unwrap()
        ),
    )
    .unwrap();
    let server = swp::server::NatsServer::start_with_args(&["-c", conf.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("this test needs a real nats-server: {e}"));
    let url = format!("nats://127.0.0.1:{}", server.port());
    let args: Vec<String> = vec![
        "--server".into(),
        url.clone(),
        "--creds".into(),
        creds.display().to_string(),
    ];
    transfer_with(&args, &args, "creds");
    // Without the credentials the server turns us away.
    let out = Command::new(SWP)
        .args(["send", "Cargo.toml", "--to", "x", "--server", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let _ = std::fs::remove_dir_all(&dir);
}
