//! `swp serve` / `put` / `get` / `ls` as separate processes through a real
//! nats-server: many clients at once, trees, listings, downloads verified
//! byte for byte, and clear failures.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SWP: &str = env!("CARGO_BIN_EXE_swp");

/// A `swp serve` process, killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `swp serve SUBJECT DIR` and returns once it says it serves.
fn serve(url: &str, subject: &str, dir: &std::path::Path) -> Serve {
    let mut child = Command::new(SWP)
        .args(["serve", subject])
        .arg(dir)
        .args(["--server", url])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("serving"), "swp serve said {line:?}");
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while err.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
            sink.clear();
        }
    });
    Serve(child)
}

fn swp(args: &[&str], url: &str) -> Output {
    Command::new(SWP)
        .args(args)
        .args(["--server", url])
        .output()
        .unwrap()
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| swp::testkit::pattern_byte(i.wrapping_mul(31).wrapping_add(seed)))
        .collect()
}

#[test]
fn twenty_clients_put_at_once_then_ls_and_get_everything_back_verified() {
    let server = common::nats_server();
    let url = server.url();
    let root = common::TempDir::new("cli-service");
    let (served, local, back) = (
        root.0.join("served"),
        root.0.join("local"),
        root.0.join("back"),
    );
    std::fs::create_dir_all(local.join("tree/sub")).unwrap();
    let _svc = serve(&url, "svc.files", &served);
    // 20 files of sizes around the packet edge, and a tree.
    let mut expected = Vec::new();
    for i in 0..20u64 {
        let size = [0, 1, 64_511, 64_512, 64_513, 300_000][i as usize % 6] + i as usize;
        let name = format!("f{i:02}.bin");
        std::fs::write(local.join(&name), bytes(i, size)).unwrap();
        expected.push((name, bytes(i, size)));
    }
    std::fs::write(local.join("tree/a.txt"), b"alpha").unwrap();
    std::fs::write(local.join("tree/sub/b.txt"), b"beta").unwrap();
    expected.push(("tree/a.txt".into(), b"alpha".to_vec()));
    expected.push(("tree/sub/b.txt".into(), b"beta".to_vec()));
    let mut puts: Vec<Child> = (0..20)
        .map(|i| {
            Command::new(SWP)
                .args(["put", "svc.files"])
                .arg(local.join(format!("f{i:02}.bin")))
                .args(["--server", &url, "--quiet"])
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let tree = swp(
        &["put", "svc.files", local.join("tree").to_str().unwrap()],
        &url,
    );
    let said = ok(&tree, "put tree");
    assert!(said.contains("2 files"), "{said}");
    for p in puts.drain(..) {
        let o = p.wait_with_output().unwrap();
        ok(&o, "put");
    }
    let listing = ok(&swp(&["ls", "svc.files"], &url), "ls");
    for (name, data) in &expected {
        let line = format!("{:>12}  {name}", data.len());
        assert!(
            listing.lines().any(|l| l == line),
            "{line:?} not in\n{listing}"
        );
    }
    assert_eq!(listing.lines().count(), expected.len(), "{listing}");
    let names: Vec<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
    let mut args = vec!["get", "svc.files"];
    args.extend(&names);
    args.extend(["-O", back.to_str().unwrap()]);
    let said = ok(&swp(&args, &url), "get");
    assert_eq!(said.matches("verified").count(), expected.len(), "{said}");
    for (name, data) in &expected {
        assert_eq!(&std::fs::read(back.join(name)).unwrap(), data, "{name}");
    }
}

#[test]
fn a_missing_file_and_a_subject_nobody_serves_fail_with_the_reason() {
    let server = common::nats_server();
    let url = server.url();
    let root = common::TempDir::new("cli-service-fail");
    let _svc = serve(&url, "svc.fail", &root.0.join("served"));
    let o = swp(
        &[
            "get",
            "svc.fail",
            "nothing.bin",
            "-O",
            root.0.to_str().unwrap(),
        ],
        &url,
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nothing.bin"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let started = Instant::now();
    let o = swp(&["ls", "svc.nobody"], &url);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nobody is listening on \"svc.nobody\""),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "at once, not after a handshake budget: {:?}",
        started.elapsed()
    );
}
