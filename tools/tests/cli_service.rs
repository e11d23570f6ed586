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
    let mut cmd = Command::new(SWP);
    cmd.args(["serve", subject])
        .arg(dir)
        .args(["--server", url]);
    spawn_serve(cmd)
}

/// Runs a prepared `swp serve` command; returns once it says it serves.
fn spawn_serve(cmd: Command) -> Serve {
    spawn_serve_logged(cmd).0
}

/// As [`spawn_serve`], with the lines it logs after "serving".
fn spawn_serve_logged(mut cmd: Command) -> (Serve, std::sync::mpsc::Receiver<String>) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("serving"), "swp serve said {line:?}");
    // Keep draining its log so it never blocks on a full pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while err.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            let _ = tx.send(std::mem::take(&mut line));
        }
    });
    (Serve(child), rx)
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
    assert!(
        err.contains("the service refused: no file \"nothing.bin\" is served here"),
        "{err}"
    );
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

/// The nats CLI's contexts: a context file as `nats context add` writes it,
/// chosen by `--context`, by `NATS_CONTEXT`, or selected in context.txt;
/// flags override it; without it the server refuses us.
#[test]
fn a_nats_cli_context_supplies_the_server_and_credentials() {
    let server =
        swp::server::NatsServer::start_with_args(&["--user", "alice", "--pass", "s3cret"]).unwrap();
    let root = common::TempDir::new("cli-context");
    let xdg = root.0.join("xdg");
    std::fs::create_dir_all(xdg.join("nats/context")).unwrap();
    let ctx = serde_json::json!({
        "description": "test", "url": server.url(), "user": "alice", "password": "s3cret",
        "token": "", "creds": "", "nkey": "", "cert": "", "key": "", "ca": "", "nsc": "",
        "jetstream_domain": "", "inbox_prefix": ""
    });
    std::fs::write(xdg.join("nats/context/dev.json"), ctx.to_string()).unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(SWP);
        c.args(args)
            .env("XDG_CONFIG_HOME", &xdg)
            .env_remove("NATS_URL")
            .env_remove("NATS_CONTEXT");
        for (k, v) in env {
            c.env(k, v);
        }
        c
    };
    let served = root.0.join("served");
    // spawn_serve asserts that it says "serving": the context connected it.
    let _svc = spawn_serve(run(
        &[
            "serve",
            "svc.ctx",
            served.to_str().unwrap(),
            "--context",
            "dev",
        ],
        &[],
    ));
    let file = root.0.join("hello.txt");
    std::fs::write(&file, b"hello via a context").unwrap();
    // No context selected and no flags: the default server, which is not
    // this one (or refuses without credentials) — a clear failure.
    let o = run(
        &[
            "put",
            "svc.ctx",
            file.to_str().unwrap(),
            "--server",
            &server.url(),
        ],
        &[],
    )
    .output()
    .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("credentials"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Selected with `nats context select dev` (context.txt).
    std::fs::write(xdg.join("nats/context.txt"), "dev\n").unwrap();
    let o = run(&["put", "svc.ctx", file.to_str().unwrap()], &[])
        .output()
        .unwrap();
    ok(&o, "put with the selected context");
    // Named by NATS_CONTEXT.
    std::fs::remove_file(xdg.join("nats/context.txt")).unwrap();
    let o = run(&["ls", "svc.ctx"], &[("NATS_CONTEXT", "dev")])
        .output()
        .unwrap();
    assert!(ok(&o, "ls with NATS_CONTEXT").contains("hello.txt"));
    // A flag overrides the context: a wrong password is refused.
    let o = run(
        &["ls", "svc.ctx", "--context", "dev", "--password", "wrong"],
        &[],
    )
    .output()
    .unwrap();
    assert!(!o.status.success(), "the flag's wrong password was used");
    // A context that does not exist is named in the error.
    let o = run(&["ls", "svc.ctx", "--context", "nope"], &[])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("\"nope\""), "{err}");
}

/// Usage errors exit with 2 (clap's convention), failures with 1.
/// Runs `swp ARGS` against a server that does not exist (a connection
/// attempt fails, exit 1); returns its exit code and stderr.
fn offline(args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new(SWP)
        .args(args)
        .args(["--server", "nats://127.0.0.1:1"])
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn exit_codes_usage_2_failure_1() {
    let o = Command::new(SWP).args(["put"]).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A service that could take no client (it used to start and refuse
    // every one with "running its limit of 0 sessions").
    let o = Command::new(SWP)
        .args([
            "serve",
            "svc.x",
            "/nonexistent/never-made",
            "--max-sessions",
            "0",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--max-sessions"));
    // Names no service takes, said with what is wrong, before connecting
    // (the server given does not exist: a connection attempt would exit 1).
    for (args, why) in [
        (
            vec!["put", "svc.x", "-", "--name", ""],
            "a file needs a name",
        ),
        (
            vec!["put", "svc.x", "-", "--name", "../up"],
            "`..` would leave",
        ),
        (vec!["get", "svc.x", "ok", "/etc/passwd"], "it is absolute"),
        (vec!["get", "svc.x", ""], "a file needs a name"),
    ] {
        let (code, err) = offline(&args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    // An output "directory" that is a file, said as such, before connecting.
    let file = std::env::temp_dir().join(format!("swp-not-a-dir-{}", std::process::id()));
    std::fs::write(&file, b"x").unwrap();
    for args in [
        vec!["get", "svc.x", "a", "-O", file.to_str().unwrap()],
        vec!["recv", "--inbox", "x.in", "--out", file.to_str().unwrap()],
        vec!["serve", "svc.x", file.to_str().unwrap()],
    ] {
        let (code, err) = offline(&args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(
            err.contains("it is a file, not a directory"),
            "{args:?}: {err}"
        );
    }
    let _ = std::fs::remove_file(&file);
    let o = Command::new(SWP)
        .args(["ls", "svc.x", "--server", "nats://127.0.0.1:1"])
        .env_remove("NATS_CONTEXT")
        .env(
            "XDG_CONFIG_HOME",
            std::env::temp_dir().join("swp-no-such-config"),
        )
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `--json`: one JSON object per outcome on stdout, nothing else there.
#[test]
fn json_output_is_one_object_per_outcome() {
    let server = common::nats_server();
    let url = server.url();
    let root = common::TempDir::new("cli-json");
    let _svc = serve(&url, "svc.json", &root.0.join("served"));
    let file = root.0.join("data.bin");
    std::fs::write(&file, bytes(9, 70_000)).unwrap();
    let parse = |o: &Output, what: &str| -> Vec<serde_json::Value> {
        ok(o, what)
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{what}: {l:?} is not JSON: {e}"))
            })
            .collect()
    };
    let put = parse(
        &swp(&["put", "svc.json", file.to_str().unwrap(), "--json"], &url),
        "put",
    );
    assert_eq!(put.len(), 1);
    assert_eq!(
        (put[0]["op"].as_str(), put[0]["size"].as_u64()),
        (Some("put"), Some(70_000))
    );
    let digest = put[0]["blake2b"].as_str().unwrap().to_string();
    assert_eq!(digest.len(), 128, "the whole BLAKE2b-512 digest");
    let ls = parse(&swp(&["ls", "svc.json", "--json"], &url), "ls");
    assert_eq!(ls[0]["files"][0]["name"], "data.bin");
    let back = root.0.join("back");
    let get = parse(
        &swp(
            &[
                "get",
                "svc.json",
                "data.bin",
                "-O",
                back.to_str().unwrap(),
                "--json",
            ],
            &url,
        ),
        "get",
    );
    assert_eq!(get[0]["verified"], true);
    assert_eq!(get[0]["blake2b"].as_str().unwrap(), digest);
    assert_eq!(
        std::fs::read(back.join("data.bin")).unwrap(),
        bytes(9, 70_000)
    );
}

/// `swp serve --name` answers the NATS service API, as `nats micro ls`
/// and `nats micro info` ask it.
#[test]
fn swp_serve_answers_the_nats_service_api() {
    let server = common::nats_server();
    let url = server.url();
    let root = common::TempDir::new("cli-micro");
    let mut cmd = Command::new(SWP);
    cmd.args(["serve", "svc.micro"])
        .arg(root.0.join("served"))
        .args(["--name", "team-files", "--server", &url]);
    let _svc = spawn_serve(cmd);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let nats = async_nats::connect(url).await.unwrap();
        let info = nats
            .request("$SRV.INFO.team-files", "".into())
            .await
            .unwrap();
        let info: serde_json::Value = serde_json::from_slice(&info.payload).unwrap();
        assert_eq!(info["name"], "team-files");
        assert_eq!(info["metadata"]["swp.subject"], "svc.micro");
        let stats = nats
            .request("$SRV.STATS.team-files", "".into())
            .await
            .unwrap();
        let stats: serde_json::Value = serde_json::from_slice(&stats.payload).unwrap();
        assert_eq!(
            stats["endpoints"][0]["data"]["sessions_accepted"], 0,
            "{stats}"
        );
    });
}

/// Runs swp with `input` on its stdin.
fn swp_with_stdin(args: &[&str], url: &str, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(SWP)
        .args(args)
        .args(["--server", url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input); // dropped: EOF
    });
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    o
}

#[test]
fn a_pipe_goes_in_through_stdin_and_comes_out_through_stdout_byte_exact() {
    let server = common::nats_server();
    let url = server.url();
    let root = common::TempDir::new("cli-pipes");
    let served = root.0.join("served");
    let _svc = serve(&url, "svc.pipes", &served);
    for (i, len) in [0usize, 1, (1 << 20) - 1, 3 << 20].into_iter().enumerate() {
        let data = bytes(100 + i as u64, len);
        let name = format!("backups/p{i}.tar");
        let put = swp_with_stdin(&["put", "svc.pipes", "-", "--name", &name], &url, &data);
        let said = ok(&put, "put -");
        assert!(said.contains(&format!("put {name}")), "{said}");
        assert!(
            std::fs::read(served.join(&name)).unwrap() == data,
            "{len} bytes"
        );
        let get = swp(&["get", "svc.pipes", &name, "-O", "-"], &url);
        assert!(
            get.status.success(),
            "{}",
            String::from_utf8_lossy(&get.stderr)
        );
        assert!(get.stdout == data, "{len} bytes: stdout differs");
        let told = String::from_utf8_lossy(&get.stderr);
        assert!(told.contains("verified"), "{told}");
    }
    // Usage: `-` needs a name, stands alone; -O - takes one name, no --json.
    for args in [
        vec!["put", "svc.pipes", "-"],
        vec!["put", "svc.pipes", "-", "other.bin", "--name", "x"],
        vec!["get", "svc.pipes", "a", "b", "-O", "-"],
        vec!["get", "svc.pipes", "a", "-O", "-", "--json"],
    ] {
        let o = swp(&args, &url);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(!o.stderr.is_empty());
    }
}

#[test]
fn an_identical_file_is_skipped_both_ways_and_a_different_one_refused() {
    let server = common::nats_server();
    let url = server.url();
    let root = common::TempDir::new("cli-skip");
    let (served, local) = (root.0.join("served"), root.0.join("local"));
    std::fs::create_dir_all(&local).unwrap();
    let _svc = serve(&url, "svc.skip", &served);
    let f = local.join("same.bin");
    std::fs::write(&f, bytes(7, 2_000_000)).unwrap();
    ok(&swp(&["put", "svc.skip", f.to_str().unwrap()], &url), "put");
    // Again: recognised by its hash, nothing sent.
    let again = swp(&["--json", "put", "svc.skip", f.to_str().unwrap()], &url);
    let v: serde_json::Value = serde_json::from_str(ok(&again, "put again").trim()).unwrap();
    assert_eq!(
        (v["skipped"].as_bool(), v["bytes_sent"].as_u64()),
        (Some(true), Some(0))
    );
    // Download onto the same file: skipped too.
    let got = swp(
        &["get", "svc.skip", "same.bin", "-O", local.to_str().unwrap()],
        &url,
    );
    let said = ok(&got, "get onto an identical file");
    assert!(said.contains("identical file already there"), "{said}");
    // A different local file of the same name: refused, kept; --force replaces.
    std::fs::write(&f, b"local edits").unwrap();
    let o = swp(
        &["get", "svc.skip", "same.bin", "-O", local.to_str().unwrap()],
        &url,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    assert_eq!(std::fs::read(&f).unwrap(), b"local edits");
    let o = swp(
        &[
            "get",
            "svc.skip",
            "same.bin",
            "-O",
            local.to_str().unwrap(),
            "--force",
        ],
        &url,
    );
    ok(&o, "get --force");
    assert!(std::fs::read(&f).unwrap() == bytes(7, 2_000_000));
}

/// Waits (bounded) until `swp ls SUBJECT` answers through `url`: the
/// cluster's routes carry the service's interest to that node.
fn wait_served(url: &str, subject: &str) {
    let t = Instant::now();
    while !swp(&["ls", subject, "--quiet"], url).status.success() {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{subject} not reachable through {url} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100)); // polling a process, not synchronising
    }
}

#[test]
fn three_swp_serve_members_over_a_cluster_a_killed_one_fails_its_clients_clearly_and_a_rerun_completes()
 {
    let nodes = swp::server::NatsServer::start_cluster(3).unwrap();
    let urls: Vec<String> = nodes.iter().map(|n| n.url()).collect();
    let root = common::TempDir::new("cli-cluster");
    let local = root.0.join("local");
    std::fs::create_dir_all(&local).unwrap();
    let dirs: Vec<_> = (0..3).map(|k| root.0.join(format!("member{k}"))).collect();
    let mut members: Vec<Option<Serve>> = (0..3)
        .map(|k| {
            let mut cmd = Command::new(SWP);
            cmd.args(["serve", "svc.cluster"])
                .arg(&dirs[k])
                .args(["--queue", "files", "--server", &urls[k]]);
            Some(spawn_serve(cmd))
        })
        .collect();
    for u in &urls {
        wait_served(u, "svc.cluster");
    }
    // 100 clients spread over the nodes: 94 small files, 6 large ones that
    // are still moving when a member dies.
    let files: Vec<(String, Vec<u8>)> = (0..100u64)
        .map(|i| {
            let len = if i % 17 == 5 {
                48 << 20
            } else {
                100_000 + i as usize
            };
            (format!("c{i:03}.bin"), bytes(1000 + i, len))
        })
        .collect();
    for (name, data) in &files {
        std::fs::write(local.join(name), data).unwrap();
    }
    let put = |i: usize| {
        Command::new(SWP)
            .args(["put", "svc.cluster", "--quiet"])
            .arg(local.join(&files[i].0))
            .args(["--server", &urls[i % 3]])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut clients: Vec<(usize, Child)> = (0..files.len()).map(|i| (i, put(i))).collect();
    // The victim: the first member seen holding part of a large file.
    let t = Instant::now();
    let victim = loop {
        let busy = (0..3).find(|&k| {
            std::fs::read_dir(&dirs[k]).is_ok_and(|rd| {
                rd.flatten().any(|e| {
                    let n = e.file_name().to_string_lossy().to_string();
                    n.ends_with(".swp-part") && e.metadata().is_ok_and(|m| m.len() > 1 << 20)
                })
            })
        });
        if let Some(k) = busy {
            break k;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no large file started in 60 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(members[victim].take()); // SIGKILL: no goodbye to its clients
    let killed = Instant::now();
    // Every client ends, each within a bound; the victim's with a reason.
    let mut failed = Vec::new();
    while !clients.is_empty() {
        assert!(
            killed.elapsed() < Duration::from_secs(90),
            "{} clients still running 90 s after the kill",
            clients.len()
        );
        let mut still = Vec::new();
        for (i, mut c) in clients {
            match c.try_wait().unwrap() {
                None => still.push((i, c)),
                Some(st) => {
                    let mut err = String::new();
                    use std::io::Read;
                    c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                    if !st.success() {
                        let after = killed.elapsed();
                        assert!(
                            after < Duration::from_secs(25),
                            "client {i} failed {after:?} after the kill: beyond the budget"
                        );
                        assert!(
                            err.contains("unreachable") || err.contains("reset"),
                            "client {i} failed without a clear reason: {err}"
                        );
                        failed.push(i);
                    }
                }
            }
        }
        clients = still;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !failed.is_empty(),
        "the killed member had a client mid-transfer"
    );
    eprintln!(
        "member {victim} killed; {} clients failed clearly: {failed:?}",
        failed.len()
    );
    // A re-run of each failed client completes on a member still there.
    for &i in &failed {
        let o = put(i).wait_with_output().unwrap();
        ok(&o, &format!("re-run of client {i}"));
    }
    // Every file is complete and byte-exact on a member (the victim's
    // finished ones stay in its directory; a re-run lands elsewhere).
    for (name, data) in &files {
        let complete = (0..3).any(|k| std::fs::read(dirs[k].join(name)).is_ok_and(|d| d == *data));
        assert!(complete, "{name} is nowhere complete and byte-exact");
    }
    let spread = (0..3)
        .filter(|&k| std::fs::read_dir(&dirs[k]).is_ok_and(|rd| rd.count() > 0))
        .count();
    assert_eq!(
        spread, 3,
        "the queue group spread the clients over every member"
    );
}

#[test]
fn two_hundred_clients_put_and_get_at_once_through_one_swp_serve() {
    let server = common::nats_server();
    let url = server.url();
    let root = common::TempDir::new("cli-200");
    let (served, local, back) = (
        root.0.join("served"),
        root.0.join("local"),
        root.0.join("back"),
    );
    for d in [&served, &local, &back] {
        std::fs::create_dir_all(d).unwrap();
    }
    let size = |i: u64| [0usize, 1, 64_512, 64_513, 200_000][i as usize % 5] + i as usize;
    for i in 0..100u64 {
        std::fs::write(served.join(format!("down{i:03}.bin")), bytes(i, size(i))).unwrap();
        std::fs::write(local.join(format!("up{i:03}.bin")), bytes(500 + i, size(i))).unwrap();
    }
    let _svc = serve(&url, "svc.200", &served);
    let run = |args: Vec<String>| {
        Command::new(SWP)
            .args(&args)
            .args(["--server", &url, "--quiet"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut clients = Vec::new();
    for i in 0..100u64 {
        let up = local.join(format!("up{i:03}.bin"));
        clients.push(run(vec![
            "put".into(),
            "svc.200".into(),
            up.display().to_string(),
        ]));
        let out = back.join(format!("{i}"));
        clients.push(run(vec![
            "get".into(),
            "svc.200".into(),
            format!("down{i:03}.bin"),
            "-O".into(),
            out.display().to_string(),
        ]));
    }
    assert_eq!(clients.len(), 200);
    for c in clients {
        ok(&c.wait_with_output().unwrap(), "one of 200 clients");
    }
    for i in 0..100u64 {
        let up = std::fs::read(served.join(format!("up{i:03}.bin"))).unwrap();
        assert!(up == bytes(500 + i, size(i)), "up{i:03}.bin differs");
        let down = std::fs::read(back.join(format!("{i}/down{i:03}.bin"))).unwrap();
        assert!(down == bytes(i, size(i)), "down{i:03}.bin differs");
    }
}

#[test]
fn a_client_over_max_sessions_is_refused_at_once_with_the_reason() {
    let server = common::nats_server();
    let url = server.url();
    let root = common::TempDir::new("cli-busy");
    let mut cmd = Command::new(SWP);
    cmd.args(["serve", "svc.busy"])
        .arg(root.0.join("served"))
        .args(["--max-sessions", "1", "--server", &url]);
    let _svc = spawn_serve(cmd);
    // One session held open: a put from a pipe that has not ended.
    let mut holder = Command::new(SWP)
        .args([
            "put", "svc.busy", "-", "--name", "slow.log", "--server", &url,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = holder.stdin.as_mut().unwrap();
        stdin.write_all(b"first line\n").unwrap();
        stdin.flush().unwrap();
    }
    // The slot is taken once the holder's bytes reach the served directory.
    let part = root.0.join("served/.slow.log.swp-part");
    let t = Instant::now();
    while std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the holder never started"
        );
        std::thread::sleep(Duration::from_millis(10)); // polling a file, bounded
    }
    let t = Instant::now();
    let o = swp(&["ls", "svc.busy"], &url);
    let took = t.elapsed();
    assert_eq!(o.status.code(), Some(1));
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("busy") || said.contains("limit"), "{said}");
    assert!(
        took < Duration::from_secs(2),
        "refused after {took:?}, not at once"
    );
    // The holder finishes normally once its pipe ends.
    drop(holder.stdin.take());
    ok(&holder.wait_with_output().unwrap(), "the holder");
    assert_eq!(
        std::fs::read(root.0.join("served/slow.log")).unwrap(),
        b"first line\n"
    );
}

#[test]
fn trees_go_both_ways_names_at_the_length_limit_arrive_and_empty_directories_are_said() {
    // Before: `swp get svc tree` failed ("not a regular file") although
    // `swp put svc tree` had uploaded it; a 255-byte name (valid) failed
    // because its part file's name was 15 bytes longer; `swp put` of an
    // empty directory printed nothing and exited 0.
    let server = common::nats_server();
    let url = server.url();
    let root = common::TempDir::new("cli-service-trees");
    let _svc = serve(&url, "svc.trees", &root.0.join("served"));
    let local = root.0.join("local");
    let long = "n".repeat(255);
    let near = format!("{}é", "m".repeat(238)); // 240 bytes: the old form still fits
    let files = [
        ("tree/a.bin".to_string(), 70_000),
        ("tree/sub/b.bin".to_string(), 1),
        ("tree/sub/deeper/c.bin".to_string(), 0),
        (format!("tree/{long}"), 5_000),
        (near.clone(), 64_513),
        ("treehouse.bin".to_string(), 10), // shares a prefix, not the directory
    ];
    for (i, (name, len)) in files.iter().enumerate() {
        let p = local.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes(i as u64, *len)).unwrap();
    }
    std::fs::create_dir_all(local.join("empty/inner")).unwrap();
    let arg = |n: &str| local.join(n).to_str().unwrap().to_string();
    let put = swp(
        &[
            "put",
            "svc.trees",
            &arg("tree"),
            &arg(&near),
            &arg("treehouse.bin"),
        ],
        &url,
    );
    ok(&put, "put");
    let listing = ok(&swp(&["ls", "svc.trees"], &url), "ls");
    assert_eq!(listing.lines().count(), files.len(), "{listing}");
    // A directory, with and without its slash; a long name alone.
    let back = root.0.join("back");
    let b = back.to_str().unwrap();
    ok(
        &swp(&["get", "svc.trees", "tree", &near, "-O", b], &url),
        "get tree",
    );
    ok(
        &swp(&["get", "svc.trees", "tree/", "-O", &format!("{b}2")], &url),
        "get tree/",
    );
    for (name, _) in files
        .iter()
        .filter(|(n, _)| n.starts_with("tree/") || *n == near)
    {
        assert_eq!(
            std::fs::read(back.join(name)).unwrap(),
            std::fs::read(local.join(name)).unwrap(),
            "{name}"
        );
    }
    assert!(
        !back.join("treehouse.bin").exists(),
        "`tree` is not a prefix of names"
    );
    assert!(root.0.join("back2/tree/sub/deeper/c.bin").exists());
    // Nothing is left behind: no part files beside what arrived.
    fn all_names(dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            out.push(e.file_name().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                all_names(&e.path(), out);
            }
        }
    }
    let mut names = Vec::new();
    all_names(&back, &mut names);
    assert!(!names.iter().any(|n| n.contains(".swp-part")), "{names:?}");
    // An empty directory: said, nothing connected to, exit 0.
    let empty = swp(&["put", "svc.nobody.at.all", &arg("empty")], &url);
    assert!(empty.status.success());
    let err = String::from_utf8_lossy(&empty.stderr);
    assert!(
        err.contains("nothing to upload") && err.contains("holds no files"),
        "{err}"
    );
    // A name that is neither a file nor a directory still fails.
    let none = swp(&["get", "svc.trees", "tre", "-O", b], &url);
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no file \"tre\""));
}

#[test]
fn an_interrupted_put_from_stdin_tells_the_service_why() {
    // Before: the interrupted client dropped its session before it aborted
    // it; the drop closed gracefully, and a put whose stdin was idle sent
    // its Fin at once, ahead of the Reset. The service took the Fin for the
    // end of a stream of unknown length and said "the peer closed the
    // session mid-transfer", never why.
    let server = common::nats_server();
    let root = common::TempDir::new("cli-put-stdin-interrupt");
    let dir = root.0.join("served");
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new(SWP);
    cmd.args(["serve", "svc.stdin.int"])
        .arg(&dir)
        .args(["--server", &server.url()]);
    let (_serve, log) = spawn_serve_logged(cmd);
    for (sig, code) in [("TERM", 143), ("INT", 130)] {
        let mut put = Command::new(SWP)
            .args(["put", "-q", "svc.stdin.int", "-", "--name", "z.bin"])
            .args(["--server", &server.url()])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // 1 MiB, then stdin stays open and idle: nothing is left to send.
        let mut stdin = put.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, &bytes(7, 1 << 20)).unwrap();
        let part = dir.join(".z.bin.swp-part");
        let t0 = Instant::now();
        while std::fs::metadata(&part).map_or(0, |m| m.len()) < 1 << 20 {
            assert!(t0.elapsed() < Duration::from_secs(20), "no part file grew");
            std::thread::sleep(Duration::from_millis(5));
        }
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(put.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        let out = put.wait_with_output().unwrap();
        drop(stdin);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = log
            .recv_timeout(Duration::from_secs(10))
            .expect("the service logged nothing about the interrupted put");
        assert!(
            said.contains(&format!(
                "swp put was interrupted (SIG{sig}); a put from stdin does not resume"
            )),
            "{said}"
        );
        assert!(
            !dir.join("z.bin").exists(),
            "nothing incomplete is presented"
        );
    }
}
