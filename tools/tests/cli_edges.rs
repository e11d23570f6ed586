//! The `swp` command at its edges, in real processes against a real
//! nats-server: both sides end promptly and tell the same story, local
//! failures reach the peer at once, bad subjects and denied permissions are
//! reported as such, several servers and percent-encoded credentials work,
//! existing files are not replaced without `--force`.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use swp::server::NatsServer;

const SWP: &str = env!("CARGO_BIN_EXE_swp");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Waits for a child with a bound; kills it (and fails) if it hangs.
fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> (Output, Instant) {
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            let at = Instant::now();
            return (child.wait_with_output().unwrap(), at);
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what} still running after {limit:?}\nstdout: {}\nstderr: {}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn recv_cmd(server: &str, inbox: &str, out: &Path) -> Command {
    let mut c = Command::new(SWP);
    c.args([
        "recv",
        "--inbox",
        inbox,
        "--timeout",
        "30",
        "--server",
        server,
    ])
    .arg("--out")
    .arg(out)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

fn send_cmd(server: &str, to: &str, file: &Path) -> Command {
    let mut c = Command::new(SWP);
    c.args(["send", "--to", to, "--server", server])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn pattern_file(path: &Path, len: u64) {
    let data: Vec<u8> = (0..len).map(swp::testkit::pattern_byte).collect();
    std::fs::write(path, data).unwrap();
}

/// The seconds `swp send` reports for its transfer ("... in 0.12 s, ...").
fn reported_secs(stdout: &str) -> f64 {
    let after = stdout
        .split(" in ")
        .nth(1)
        .unwrap_or_else(|| panic!("{stdout}"));
    after.split(' ').next().unwrap().parse().unwrap()
}

#[test]
fn both_sides_end_promptly_and_report_the_transfers_rate() {
    // Before: `swp recv` exited without closing, the sender's Fin went
    // unanswered, and `swp send` exited 4-5 s later with a rate 100x too
    // low, in 8 of 10 runs.
    let server = common::nats_server();
    let dir = common::TempDir::new("cli-prompt");
    let src = dir.0.join("four.bin");
    pattern_file(&src, 4 << 20);
    for run in 0..5 {
        let out = dir.0.join(format!("out{run}"));
        let inbox = common::inbox("prompt", &format!("r{run}"));
        let recv = recv_cmd(&server.url(), &inbox, &out).spawn().unwrap();
        let send = send_cmd(&server.url(), &inbox, &src).spawn().unwrap();
        let (send, send_at) = wait_bounded(send, Duration::from_secs(30), "swp send");
        let (recv, recv_at) = wait_bounded(recv, Duration::from_secs(30), "swp recv");
        assert!(send.status.success(), "run {run}: {}", text(&send.stderr));
        assert!(recv.status.success(), "run {run}: {}", text(&recv.stderr));
        let gap = if send_at > recv_at {
            send_at - recv_at
        } else {
            recv_at - send_at
        };
        assert!(
            gap <= Duration::from_millis(1000),
            "run {run}: exits {gap:?} apart"
        );
        let secs = reported_secs(&text(&send.stdout));
        assert!(
            secs < 2.0,
            "run {run}: 4 MiB reported in {secs} s: {}",
            text(&send.stdout)
        );
        assert_eq!(
            std::fs::read(out.join("four.bin")).unwrap(),
            std::fs::read(&src).unwrap()
        );
    }
}

#[test]
fn the_sender_checks_its_file_before_connecting() {
    // No server is needed to say what is wrong with the file: a missing
    // file, a directory, fail at once (before: 7.5 s, then blaming the
    // receiver).
    let dir = common::TempDir::new("cli-source");
    for (file, says) in [
        (dir.0.join("missing.bin"), "No such file"),
        (dir.0.clone(), "is a directory"),
    ] {
        let t0 = Instant::now();
        let out = send_cmd("nats://127.0.0.1:1", "files.in", &file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = text(&out.stderr);
        assert!(err.contains(says), "{err}");
        assert!(!err.contains("connect"), "blamed the network: {err}");
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    }
}

/// `--go-buffer` only means something to a Go receiver: without `--go`
/// it is a usage error said at once (exit 2), not silently ignored; with
/// `--go` a bad size is refused the same way.
#[test]
fn sizes_a_session_cannot_use_are_usage_errors_in_the_flags_words() {
    let dir = common::TempDir::new("cli-go-buffer");
    let src = dir.0.join("x.txt");
    std::fs::write(&src, "x").unwrap();
    let psk = dir.0.join("psk");
    for (args, says) in [
        (vec!["--go-buffer", "1M"], "--go"),
        (vec!["--go", "--go-buffer", "lots"], "--go-buffer"),
        // Above the window (16M): the library's words were "raise the
        // window or lower max_payload", neither of them a flag.
        (
            vec!["--packet-size", "17M"],
            "--packet-size 17.0 MiB: larger than a session's window",
        ),
        (
            vec!["--packet-size", "16385K"],
            "larger than a session's window",
        ),
        // Sealed: at most 63K.
        (
            vec![
                "--packet-size",
                "64513",
                "--psk-file",
                psk.to_str().unwrap(),
            ],
            "a sealed session (--key, --psk-file) carries at most 63K",
        ),
    ] {
        let t0 = Instant::now();
        let out = send_cmd("nats://127.0.0.1:1", "files.in", &src)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{args:?}: {:?}",
            t0.elapsed()
        );
    }
    // The largest sizes allowed pass the check: the run goes on to the
    // (unreachable) server and fails there, not on its flags.
    std::fs::write(&psk, "a secret of sixteen bytes or more").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&psk, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    for args in [
        vec!["--packet-size", "16M"],
        vec!["--packet-size", "63K", "--psk-file", psk.to_str().unwrap()],
    ] {
        let out = send_cmd("nats://127.0.0.1:1", "files.in", &src)
            .args(&args)
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            !err.contains("--packet-size") && err.contains("127.0.0.1:1"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn bad_subjects_are_refused_at_once() {
    // `--to 'a b'` used to hang for over 60 s; wildcards were accepted.
    let dir = common::TempDir::new("cli-subjects");
    let src = dir.0.join("x.txt");
    std::fs::write(&src, "x").unwrap();
    for (args, says) in [
        (vec!["send", "--to", "a b"], "whitespace"),
        (vec!["send", "--to", "files.*"], "wildcard"),
        (vec!["send", "--to", "files..in"], "empty token"),
        (vec!["send", "--to", "ok", "--inbox", "me >"], "whitespace"),
        (vec!["recv", "--inbox", ">"], "wildcard"),
        (vec!["recv", "--inbox", "in.*"], "wildcard"),
        // One literal subject for both ends: the sender would answer its
        // own Syn and acknowledge its own data.
        (vec!["send", "--to", "same", "--inbox", "same"], "own inbox"),
    ] {
        let t0 = Instant::now();
        let mut c = Command::new(SWP);
        c.args(&args).args(["--server", "nats://127.0.0.1:1"]);
        if args[0] == "send" {
            c.arg(&src);
        } else {
            c.arg("--out").arg(&dir.0);
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(says)
                && (err.contains("not a valid subject")
                    || err.contains("would hear its own packets")),
            "{args:?}: {err}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{args:?}: {:?}",
            t0.elapsed()
        );
    }
}

/// A server whose user `u` may not publish or subscribe below `denied.`.
fn server_with_permissions(dir: &Path) -> NatsServer {
    common::nats_server_with_config(
        &dir.join("perms.conf"),
        r#"authorization {
  users = [
    { user: "u", password: "p", permissions: {
        publish: { deny: ["denied.>"] },
        subscribe: { deny: ["denied.>"] } } }
  ]
}
"#,
    )
}

#[test]
fn denied_permissions_are_reported_as_such_within_the_connect_budget() {
    let dir = common::TempDir::new("cli-perms");
    let server = server_with_permissions(&dir.0);
    let url = server.url().replace("nats://", "nats://u:p@");
    // Subscribing denied: the receiver used to wait for ever.
    let t0 = Instant::now();
    let recv = recv_cmd(&url, "denied.in", &dir.0.join("out"))
        .spawn()
        .unwrap();
    let (out, _) = wait_bounded(recv, Duration::from_secs(15), "recv with subscribe denied");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("denied subscribing to \"denied.in\""), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // Publishing denied: the sender says so instead of "nobody listening".
    let src = dir.0.join("x.txt");
    std::fs::write(&src, "x").unwrap();
    let t0 = Instant::now();
    let send = send_cmd(&url, "denied.out", &src).spawn().unwrap();
    let (out, _) = wait_bounded(send, Duration::from_secs(15), "send with publish denied");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("denied publishing to \"denied.out\""), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // Wrong credentials: an authorization failure, not "is it running?".
    let bad = server.url().replace("nats://", "nats://u:wrong@");
    let out = send_cmd(&bad, "files.in", &src).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("refused these credentials"), "{err}");
    assert!(!err.contains("is nats-server running"), "{err}");
}

#[test]
fn several_servers_and_percent_encoded_credentials() {
    let dir = common::TempDir::new("cli-servers");
    let server = NatsServer::start_with_args(&["--user", "bob", "--pass", "p@ss:w0rd"])
        .unwrap_or_else(|e| panic!("this test needs a real nats-server: {e}"));
    // The first URL has nobody; the second is the server, with a password
    // written percent-encoded as URLs require.
    let good = server.url().replace("nats://", "nats://bob:p%40ss%3Aw0rd@");
    let servers = format!("nats://127.0.0.1:1,{good}");
    let src = dir.0.join("note.txt");
    std::fs::write(&src, "through the second server").unwrap();
    let inbox = common::inbox("servers", "r");
    let out = dir.0.join("out");
    let recv = recv_cmd(&servers, &inbox, &out).spawn().unwrap();
    let send = send_cmd(&servers, &inbox, &src).spawn().unwrap();
    let (send, _) = wait_bounded(send, Duration::from_secs(30), "swp send");
    let (recv, _) = wait_bounded(recv, Duration::from_secs(30), "swp recv");
    assert!(send.status.success(), "{}", text(&send.stderr));
    assert!(recv.status.success(), "{}", text(&recv.stderr));
    assert_eq!(
        std::fs::read_to_string(out.join("note.txt")).unwrap(),
        "through the second server"
    );
}

#[test]
fn an_existing_file_is_not_replaced_without_force() {
    let server = common::nats_server();
    let dir = common::TempDir::new("cli-exists");
    let src = dir.0.join("doc.txt");
    std::fs::write(&src, "version 2").unwrap();
    let out = dir.0.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("doc.txt"), "version 1").unwrap();
    let inbox = common::inbox("exists", "r");
    let recv = recv_cmd(&server.url(), &inbox, &out).spawn().unwrap();
    let send = send_cmd(&server.url(), &inbox, &src).spawn().unwrap();
    let (send, send_at) = wait_bounded(send, Duration::from_secs(30), "swp send");
    let (recv, recv_at) = wait_bounded(recv, Duration::from_secs(30), "swp recv");
    assert_eq!(recv.status.code(), Some(1));
    assert_eq!(send.status.code(), Some(1));
    assert!(
        text(&recv.stderr).contains("already exists"),
        "{}",
        text(&recv.stderr)
    );
    assert!(
        text(&send.stderr).contains("already exists"),
        "{}",
        text(&send.stderr)
    );
    let gap = send_at.max(recv_at) - send_at.min(recv_at);
    assert!(gap < Duration::from_secs(2), "exits {gap:?} apart");
    assert_eq!(
        std::fs::read_to_string(out.join("doc.txt")).unwrap(),
        "version 1"
    );
    // With --force it is replaced.
    let mut r = recv_cmd(&server.url(), &inbox, &out);
    let recv = r.arg("--force").spawn().unwrap();
    let send = send_cmd(&server.url(), &inbox, &src).spawn().unwrap();
    let (send, _) = wait_bounded(send, Duration::from_secs(30), "swp send");
    let (recv, _) = wait_bounded(recv, Duration::from_secs(30), "swp recv");
    assert!(send.status.success(), "{}", text(&send.stderr));
    assert!(recv.status.success(), "{}", text(&recv.stderr));
    assert_eq!(
        std::fs::read_to_string(out.join("doc.txt")).unwrap(),
        "version 2"
    );
}

/// Runs `swp recv` under a file-size limit (as a full disk would stop it),
/// with SIGXFSZ ignored so the write fails with an error instead of
/// killing the process.
fn recv_with_size_limit(server: &str, inbox: &str, out: &Path, kib: u64) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {}; exec \"$0\" \"$@\"",
            kib * 2 // sh counts 512-byte blocks
        ))
        .arg(SWP)
        .args([
            "recv",
            "--inbox",
            inbox,
            "--timeout",
            "30",
            "--server",
            server,
        ])
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_receiver_that_cannot_write_tells_the_sender_at_once() {
    // The receiver's disk fills up mid-transfer. Before: the sender waited
    // 10 s and said "peer unreachable".
    let server = common::nats_server();
    let dir = common::TempDir::new("cli-full");
    let src = dir.0.join("big.bin");
    pattern_file(&src, 32 << 20);
    let inbox = common::inbox("full", "r");
    let recv = recv_with_size_limit(&server.url(), &inbox, &dir.0.join("out"), 4096);
    let send = send_cmd(&server.url(), &inbox, &src).spawn().unwrap();
    let (recv, recv_at) = wait_bounded(recv, Duration::from_secs(30), "swp recv");
    let (send, send_at) = wait_bounded(send, Duration::from_secs(30), "swp send");
    assert_eq!(recv.status.code(), Some(1));
    assert_eq!(send.status.code(), Some(1));
    let (rerr, serr) = (text(&recv.stderr), text(&send.stderr));
    assert!(
        rerr.contains("too large") || rerr.contains("No space"),
        "{rerr}"
    );
    assert!(serr.contains("the receiver failed"), "{serr}");
    assert!(!serr.contains("unreachable"), "{serr}");
    assert!(
        send_at <= recv_at + Duration::from_millis(1000),
        "the sender ended {:?} after the receiver",
        send_at - recv_at
    );
}

#[test]
fn an_unusable_out_dir_fails_before_any_sender_connects() {
    let server = common::nats_server();
    let dir = common::TempDir::new("cli-outdir");
    let file = dir.0.join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let t0 = Instant::now();
    let out = recv_cmd(&server.url(), "files.in", &file.join("sub"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("cannot use --out"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    let _: PathBuf = file;
}

#[test]
fn verbose_logs_the_sessions_states_and_end_and_default_is_quiet() {
    let server = common::nats_server();
    let dir = common::TempDir::new("cli-verbose");
    let src = dir.0.join("small.bin");
    pattern_file(&src, 100_000);
    for (run, verbose) in [(0, true), (1, false)] {
        let out = dir.0.join(format!("out{run}"));
        let inbox = common::inbox("verbose", &format!("r{run}"));
        let mut recv = recv_cmd(&server.url(), &inbox, &out);
        let mut send = send_cmd(&server.url(), &inbox, &src);
        if verbose {
            recv.arg("-v");
            send.arg("-v");
        }
        send.env_remove("RUST_LOG");
        recv.env_remove("RUST_LOG");
        let recv = recv.spawn().unwrap();
        let send = send.spawn().unwrap();
        let (send, _) = wait_bounded(send, Duration::from_secs(30), "swp send");
        let (recv, _) = wait_bounded(recv, Duration::from_secs(30), "swp recv");
        assert!(send.status.success(), "{}", text(&send.stderr));
        assert!(recv.status.success(), "{}", text(&recv.stderr));
        let (se, re) = (text(&send.stderr), text(&recv.stderr));
        if verbose {
            for (who, log) in [("send", &se), ("recv", &re)] {
                assert!(log.contains("swp_session"), "{who}: no session span: {log}");
                assert!(log.contains("connected"), "{who}: {log}");
                // The state reached before the process exits (the end
                // itself may come after close() returned, so it is not
                // required here).
                assert!(log.contains("state=ESTABLISHED"), "{who}: {log}");
            }
            // the span names both inboxes
            assert!(se.contains(&inbox), "{se}");
        } else {
            assert!(!se.contains("swp_session"), "quiet by default: {se}");
            assert!(!re.contains("swp_session"), "quiet by default: {re}");
        }
    }
}

/// `swp recv` started, its stderr read on a thread: returns once it says
/// it is waiting (bounded), with the lines that follow as they come.
fn listening_recv(
    server: &str,
    inbox: &str,
    out: &Path,
) -> (Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = recv_cmd(server, inbox, out).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("swp recv said nothing within 10 s");
    assert!(first.contains("waiting on"), "{first}");
    (child, rx)
}

#[test]
fn two_receivers_on_one_inbox_the_one_not_chosen_says_so_and_takes_the_next_sender() {
    // Before: the receiver whose answer the sender did not take waited out
    // its handshake (7.5 s) and exited with "no answer from the peer ...
    // is anything listening on the destination inbox?"; a second sender
    // in that time was not answered at all.
    let server = common::nats_server();
    let dir = common::TempDir::new("cli-two-recv");
    let (a, b) = (dir.0.join("a.bin"), dir.0.join("b.bin"));
    pattern_file(&a, 3 << 20);
    pattern_file(&b, 100_000);
    let inbox = common::inbox("two-recv", "shared");
    let (out1, out2) = (dir.0.join("out1"), dir.0.join("out2"));
    let mut recvs = [
        Some(listening_recv(&server.url(), &inbox, &out1)),
        Some(listening_recv(&server.url(), &inbox, &out2)),
    ];
    let outs = [&out1, &out2];
    for (file, name) in [(&a, "a.bin"), (&b, "b.bin")] {
        let send = send_cmd(&server.url(), &inbox, file).spawn().unwrap();
        let (send, _) = wait_bounded(send, Duration::from_secs(20), "swp send");
        assert!(send.status.success(), "{name}: {}", text(&send.stderr));
        // The receiver that took it exits; the other keeps waiting.
        let t0 = Instant::now();
        let done = loop {
            let exited = recvs.iter_mut().enumerate().find_map(|(i, r)| {
                let (child, _) = r.as_mut()?;
                child.try_wait().unwrap().map(|status| (i, status))
            });
            if let Some(e) = exited {
                break e;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{name}: no swp recv exited"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let (i, status) = done;
        let (_, lines) = recvs[i].take().unwrap();
        let said: Vec<String> = lines.try_iter().collect();
        assert!(status.success(), "{name}: {said:?}");
        assert_eq!(
            std::fs::read(outs[i].join(name)).unwrap(),
            std::fs::read(file).unwrap(),
            "{name}"
        );
        if let Some((_, lines)) = recvs.iter().flatten().next() {
            // The one not chosen heard why at once (the sender's Reset).
            let warned = lines
                .recv_timeout(Duration::from_secs(5))
                .expect("the receiver not chosen said nothing");
            assert!(warned.contains("more than one listens"), "{warned}");
        }
    }
    assert!(recvs.iter().all(Option::is_none));
}

fn kill(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill -{sig} failed");
}

#[test]
fn an_interrupted_send_or_recv_tells_its_peer_at_once_and_exits_as_signalled() {
    // Before: Ctrl-C or SIGTERM ended the process on the spot; its peer
    // heard nothing and said "peer unreachable" 11 s later.
    let server = common::nats_server();
    let dir = common::TempDir::new("cli-interrupt");
    // Sparse: 4 GiB that cost no disk to make, so the transfer is still
    // running when the signal comes.
    let src = dir.0.join("big.bin");
    std::fs::File::create(&src)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    for (run, (stopped, sig, code, says)) in [
        ("send", "TERM", 143, "swp send was interrupted (SIGTERM)"),
        ("recv", "INT", 130, "swp recv was interrupted (SIGINT)"),
    ]
    .into_iter()
    .enumerate()
    {
        let out = dir.0.join(format!("out{run}"));
        let inbox = common::inbox("interrupt", &format!("r{run}"));
        let recv = recv_cmd(&server.url(), &inbox, &out).spawn().unwrap();
        let send = send_cmd(&server.url(), &inbox, &src).spawn().unwrap();
        // Mid-transfer: the receiver has written part of the file.
        let part = out.join(".big.bin.swp-part");
        let t0 = Instant::now();
        while std::fs::metadata(&part).map_or(0, |m| m.len()) < (16 << 20) {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{stopped}: no part file grew"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let (target, other) = if stopped == "send" {
            (send, recv)
        } else {
            (recv, send)
        };
        kill(&target, sig);
        let at = Instant::now();
        let (target, _) = wait_bounded(target, Duration::from_secs(10), stopped);
        let (other, other_at) = wait_bounded(other, Duration::from_secs(20), "its peer");
        assert_eq!(target.status.code(), Some(code), "{}", text(&target.stderr));
        assert!(
            text(&target.stderr).contains(&format!("interrupted (SIG{sig}); the peer told why")),
            "{}",
            text(&target.stderr)
        );
        let err = text(&other.stderr);
        assert_eq!(other.status.code(), Some(1), "{err}");
        assert!(err.contains(says), "{stopped}: {err}");
        assert!(
            other_at - at < Duration::from_secs(3),
            "{stopped}: the peer learnt it {:?} after the signal: {err}",
            other_at - at
        );
        assert!(
            !out.join("big.bin").exists(),
            "nothing incomplete is presented"
        );
    }
}
