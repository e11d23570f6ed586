//! `swp`: send and receive files over NATS with the swp protocol.
//!
//! ```text
//! swp recv --inbox files.in --out ./incoming      # on the receiving side
//! swp send report.pdf --to files.in               # on the sending side
//! swp serve files ./shared                       # a service: many clients at once
//! swp put files report.pdf photos/                # upload files and trees
//! swp get files report.pdf -O ./copy              # download
//! swp ls files                                    # list what is served
//! swp demo                                        # local server, a verified transfer
//! swp bench                                       # swp against raw NATS
//! ```
//!
//! Exit status: 0 on success; 1 with a one-line reason on stderr when the
//! work failed; 2 for a usage error (clap's); 130 / 143 when interrupted
//! (SIGINT, Ctrl-C / SIGTERM), after telling every peer why.

mod interrupt;
mod progress;

use clap::{Args, Parser, Subcommand};
use progress::{Shown, human, mib_per_s};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use swp::file::service as file_service;
use swp::file::{ReceiveOptions, recv_file, recv_file_with, send_file};
use swp::proto::seal::{self, Keypair, PublicKey, Seal};
use swp::proto::{Config, Tuning, WireFormat};
use swp::server::NatsServer;
use swp::transport::{NatsOptions, NatsTransport};
use swp::{Service, ServiceConfig, Session};

#[derive(Parser)]
#[command(
    name = "swp",
    version,
    about = "Reliable, flow-controlled, checksummed file transfer over NATS"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Print nothing but errors.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Log what the sessions do on stderr: -v for state changes and
    /// session ends, -vv for everything. RUST_LOG (e.g. `swp=debug`)
    /// overrides it.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Print each outcome as one JSON object per line on stdout (a file
    /// sent, received, put or got; a listing), for scripts; no other
    /// output on stdout.
    #[arg(long, global = true)]
    json: bool,
}

/// `--json` was given (set once, before any command runs).
static JSON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn json_mode() -> bool {
    JSON.get().copied().unwrap_or(false)
}

/// Prints an outcome: the JSON object with `--json`, else the line for a
/// person (unless `--quiet`).
fn outcome(quiet: bool, json: serde_json::Value, line: impl FnOnce() -> String) {
    if json_mode() {
        println!("{json}");
    } else if !quiet {
        println!("{}", line());
    }
}

/// Installs the log subscriber: RUST_LOG if set, else the level -v asks for
/// (warnings only by default).
fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "swp=debug,info",
        _ => "swp=trace,debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[derive(Subcommand)]
enum Cmd {
    /// Send FILE to a receiver listening on SUBJECT.
    Send {
        /// The file to send.
        file: PathBuf,
        /// The receiver's inbox subject (`swp recv --inbox ...`).
        #[arg(long)]
        to: String,
        /// Our own inbox subject (default: a fresh unique one).
        #[arg(long)]
        inbox: Option<String>,
        /// Speak go-sliding-window's wire format and BigFile form, for a Go
        /// receiver (`RecvFile`). `swp recv` answers Go senders by itself.
        #[arg(long)]
        go: bool,
        /// Payload bytes per packet: `65536`, `64K`, `512K`, `1M` (default
        /// 63K; with --go packets follow what the Go receiver was seen to
        /// hold, 64K growing to 512K, since its cost is per packet:
        /// docs/PROTOCOL.md §13.2). At most the NATS server's max_payload
        /// less 1 KiB of header; with --go at most 512K, or --go-buffer.
        #[arg(long, value_parser = swp_tools::size::parse)]
        packet_size: Option<usize>,
        /// With --go: fix the most data left unread at the Go receiver,
        /// whatever it advertises. By default it is learned: 512K at first,
        /// doubled while the receiver keeps up, taken back at the first loss
        /// (go-sliding-window's SetupRecvStream caps its subscription at
        /// 600,000 bytes and drops the rest; a receiver made with NewSession
        /// alone holds its ~10 MB window).
        #[arg(long, value_parser = swp_tools::size::parse, requires = "go")]
        go_buffer: Option<usize>,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Wait on SUBJECT for one file and save it under DIR.
    Recv {
        /// The subject to listen on.
        #[arg(long)]
        inbox: String,
        /// Where to save the file (created if missing).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Give up if no sender connects within this time: `90` (seconds),
        /// `5s`, `500ms`, `2m`, `1h` (0: wait forever).
        #[arg(long, default_value = "0", value_parser = swp_tools::duration::parse)]
        timeout: Duration,
        /// Replace a file of the same name (by default the transfer is
        /// refused, and the sender told why).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Serve DIR on the service subject SUBJECT: many clients at once
    /// upload into it (`swp put`), download from it (`swp get`) and list it
    /// (`swp ls`). Runs until stopped.
    Serve {
        /// The service subject.
        subject: String,
        /// The directory served (created if missing).
        dir: PathBuf,
        /// Join this queue group: several `swp serve` on one subject and
        /// group share the clients (across the nodes of a cluster).
        #[arg(long)]
        queue: Option<String>,
        /// Sessions at once (at least 1); a client over the limit is
        /// refused at once.
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
        max_sessions: u64,
        /// Let uploads replace existing files of the same name.
        #[arg(long)]
        force: bool,
        /// The name `nats micro ls` / `nats micro info` show it under.
        #[arg(long, default_value = "swp")]
        name: String,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Upload files (and directory trees) to `swp serve SUBJECT`, in one
    /// session, each verified (and resumed if interrupted before).
    Put {
        /// The service subject.
        subject: String,
        /// Files or directories; `-` reads stdin (with --name).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The name stdin's bytes are saved under (with `-`).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Download files (and directory trees) from `swp serve SUBJECT`, in
    /// one session, each verified.
    Get {
        /// The service subject.
        subject: String,
        /// Names as `swp ls` shows them; a directory's name (`tree` or
        /// `tree/`) gets every file under it.
        #[arg(required = true)]
        names: Vec<String>,
        /// Where to save them (created if missing); `-` writes the one
        /// file named to stdout (verified at its end: on a mismatch the
        /// output must be discarded, and swp says so and exits 1).
        #[arg(short = 'O', long = "output", default_value = ".")]
        out: PathBuf,
        /// Replace existing files of the same name.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// List the files `swp serve SUBJECT` offers.
    Ls {
        /// The service subject.
        subject: String,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Make a key file for sealed sessions (--key) and print its public
    /// key, which peers pin (--peer-key). The file is readable by its
    /// owner only; an existing one is never replaced.
    Keygen {
        /// Where to write the key file.
        file: PathBuf,
        /// Print the public key of an existing key file instead.
        #[arg(long)]
        show: bool,
    },
    /// Start a local nats-server, send a generated file through a session,
    /// verify its BLAKE2b-512 digest, print the throughput.
    Demo {
        /// Size of the generated file in MiB.
        #[arg(long, default_value_t = 256)]
        size: u64,
    },
    /// Measure swp, each row beside its anchor in the same run (starts a
    /// local nats-server with JetStream unless --server is given)
    ///
    /// The stream and messages against raw NATS publish/subscribe, latency against
    /// request/reply, files against the JetStream Object Store, many
    /// sessions against one, and the engine's cost per packet against the
    /// window (in the simulator).
    Bench {
        /// Small sizes, one round.
        #[arg(long)]
        quick: bool,
        /// Use this server instead of starting one (NATS_URL is not
        /// consulted: a benchmark against a shared server must be asked for).
        #[arg(long)]
        server: Option<String>,
    },
}

/// Connection options, named as the `nats` CLI names them, each also from
/// its `NATS_*` variable; a `nats` context (`--context`, `NATS_CONTEXT`, or
/// the one `nats context select` chose) fills in what they leave unset.
#[derive(Args, Clone)]
struct NatsArgs {
    /// NATS server URL(s); credentials in the URL are honoured
    /// [default: the context's, else nats://127.0.0.1:4222].
    #[arg(long, short, env = "NATS_URL")]
    server: Option<String>,
    /// A `nats` CLI context (~/.config/nats/context/NAME.json).
    #[arg(long, env = "NATS_CONTEXT")]
    context: Option<String>,
    /// User name.
    #[arg(long, env = "NATS_USER")]
    user: Option<String>,
    /// Password.
    #[arg(long, env = "NATS_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Authentication token.
    #[arg(long, hide_env_values = true)]
    token: Option<String>,
    /// Credentials file.
    #[arg(long, env = "NATS_CREDS")]
    creds: Option<PathBuf>,
    /// NKey seed file.
    #[arg(long, env = "NATS_NKEY")]
    nkey: Option<PathBuf>,
    /// TLS client certificate.
    #[arg(long, env = "NATS_CERT", requires = "tlskey")]
    tlscert: Option<PathBuf>,
    /// TLS client key.
    #[arg(long, env = "NATS_KEY", requires = "tlscert")]
    tlskey: Option<PathBuf>,
    /// TLS CA certificate.
    #[arg(long, env = "NATS_CA")]
    tlsca: Option<PathBuf>,
    #[command(flatten)]
    seal: SealArgs,
}

/// Sealed sessions (docs/PROTOCOL.md §14): end-to-end encrypted and
/// authenticated, whatever the NATS path. Both ends must agree.
#[derive(Args, Clone, Default)]
struct SealArgs {
    /// Seal with this endpoint's key file (made by `swp keygen`). A client
    /// also needs --peer-key: the service's or receiver's public key.
    #[arg(long = "key", env = "SWP_KEY")]
    key: Option<PathBuf>,
    /// The peer's public key (64 hex digits, or a file holding them). A
    /// client pins the listener's key; a listener given keys accepts only
    /// those clients (repeat the flag for several).
    #[arg(long = "peer-key")]
    peer_key: Vec<String>,
    /// Seal with a pre-shared secret read from this file (at least 16
    /// bytes, owner-only permissions); alone, or with --key as well.
    #[arg(long = "psk-file", env = "SWP_PSK_FILE")]
    psk_file: Option<PathBuf>,
}

impl SealArgs {
    /// The seal these flags ask for (`None`: plain), for a client (which
    /// must pin one peer key) or a listener.
    fn seal(&self, client: bool) -> Result<Option<Seal>, String> {
        let mut peers = Vec::new();
        for k in &self.peer_key {
            // A key, or a file of keys (one per line, `#` comments; a
            // `swp keygen` file gives its public line): a known-peers list.
            let text = if std::path::Path::new(k).is_file() {
                std::fs::read_to_string(k)
                    .map_err(|e| format!("cannot read --peer-key {k}: {e}"))?
            } else {
                k.clone()
            };
            let before = peers.len();
            for line in text.lines().map(str::trim) {
                if line.is_empty()
                    || line.starts_with('#')
                    || line.starts_with("swp ")
                    || line.starts_with("secret ")
                {
                    continue;
                }
                let key = line.strip_prefix("public ").unwrap_or(line);
                let key = key.split_whitespace().next().unwrap_or("");
                peers.push(
                    key.parse::<PublicKey>()
                        .map_err(|e: seal::KeyError| format!("--peer-key {k}: {e}"))?,
                );
            }
            if peers.len() == before {
                return Err(format!("--peer-key {k}: no public key in it"));
            }
        }
        let psk = match &self.psk_file {
            Some(p) => Some(swp::keys::load_psk(p).map_err(|e| e.to_string())?),
            None => None,
        };
        let seal = match (&self.key, psk) {
            (None, None) if peers.is_empty() => return Ok(None),
            (None, None) => {
                return Err(
                    "--peer-key needs --key (this endpoint's own key file, from `swp keygen`)"
                        .into(),
                );
            }
            (None, Some(psk)) if peers.is_empty() => Seal::psk(psk),
            (None, Some(_)) => return Err("--peer-key needs --key as well".into()),
            (Some(path), psk) => {
                let k = Keypair::load(path).map_err(|e| e.to_string())?;
                let mut s = Seal::keys(k);
                if let Some(psk) = psk {
                    s = s.with_psk(psk);
                }
                if client {
                    match peers.as_slice() {
                        [one] => s = s.peer(*one),
                        [] => return Err("a sealed client needs --peer-key: the public key of the service or receiver it connects to (`swp keygen --show` prints it)".into()),
                        _ => return Err("a client pins exactly one --peer-key".into()),
                    }
                } else if !peers.is_empty() {
                    s = s.allow(peers);
                }
                s
            }
        };
        seal.validate(client).map_err(|e| e.to_string())?;
        Ok(Some(seal))
    }

    fn tuning(&self, client: bool) -> Result<Tuning, String> {
        Ok(match self.seal(client)? {
            Some(s) => Tuning::new().seal(s),
            None => Tuning::new(),
        })
    }
}

impl NatsArgs {
    async fn connect(&self) -> Result<Arc<NatsTransport>, String> {
        let ctx = swp_tools::context::load(self.context.as_deref())?
            .map(|(_, c)| c)
            .unwrap_or_default();
        let pick = |flag: &Option<String>, from_ctx: &str| {
            flag.clone()
                .or_else(|| (!from_ctx.is_empty()).then(|| from_ctx.to_string()))
        };
        let path = |flag: &Option<PathBuf>, from_ctx: &str| {
            flag.clone()
                .or_else(|| (!from_ctx.is_empty()).then(|| PathBuf::from(from_ctx)))
        };
        let server = pick(&self.server, &ctx.url).unwrap_or_else(|| "nats://127.0.0.1:4222".into());
        let mut o = NatsOptions::new(server).name("swp");
        if let Some(u) = pick(&self.user, &ctx.user) {
            let p = pick(&self.password, &ctx.password).unwrap_or_default();
            o = o.user_password(u, p);
        }
        if let Some(t) = pick(&self.token, &ctx.token) {
            o = o.token(t);
        }
        if let Some(c) = path(&self.creds, &ctx.creds) {
            o = o.creds(c);
        }
        if let Some(k) = path(&self.nkey, &ctx.nkey) {
            let seed = std::fs::read_to_string(&k)
                .map_err(|e| format!("cannot read the nkey seed file {}: {e}", k.display()))?;
            let seed = seed
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with('S'))
                .ok_or_else(|| {
                    format!(
                        "{} holds no nkey seed (a line starting with S)",
                        k.display()
                    )
                })?;
            o = o.nkey_seed(seed.to_string());
        }
        if let (Some(c), Some(k)) = (path(&self.tlscert, &ctx.cert), path(&self.tlskey, &ctx.key)) {
            o = o.tls_client_cert(c, k);
        }
        if let Some(ca) = path(&self.tlsca, &ctx.ca) {
            o = o.tls_ca(ca);
        }
        NatsTransport::connect(o).await.map_err(|e| e.to_string())
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

async fn run(cli: Cli) -> Result<(), String> {
    let quiet = cli.quiet;
    match cli.cmd {
        Cmd::Send {
            file,
            to,
            inbox,
            go,
            packet_size,
            go_buffer,
            nats,
        } => {
            // Everything that can be checked here is checked before a
            // receiver is bothered: the file, and the subjects.
            check_source(&file)?;
            let inbox = inbox.unwrap_or_else(|| format!("swp.send.{:016x}", rand::random::<u64>()));
            let format = if go {
                WireFormat::Go
            } else {
                WireFormat::Native
            };
            let mut cfg = Config::new(inbox, to.clone())
                .with_tuning(nats.seal.tuning(true)?)
                .wire_format(format);
            if let Some(p) = packet_size {
                cfg = cfg.max_payload(p);
            }
            if let Some(b) = go_buffer {
                cfg = cfg.go_peer_buffer(b as u64);
            }
            cfg.validate().map_err(|e| e.to_string())?;
            let t = nats.connect().await?;
            let mut s = Session::connect(t.clone(), cfg)
                .await
                .map_err(|e| format!("cannot reach a receiver on {to}: {e}"))?;
            interrupt::watch(
                &s,
                "swp send was interrupted ({signal}); sending the file again resumes it",
            );
            let shown = Shown::start(format!("send {}", file.display()), quiet);
            let r = send_file(&mut s, &file, Some(shown.sender())).await;
            // The transfer is over at the receiver's Verdict: the rate is
            // measured to it, not to the end of the close.
            let secs = shown.done().await.secs;
            let link = link_json(&s.stats().protocol);
            tracing::info!(%link, "send: the session's counters at the receiver's verdict");
            let r = finish(s, t.as_ref(), r).await?;
            let rate = mib_per_s(r.bytes_sent, secs);
            let json = serde_json::json!({
                "op": "send", "name": r.meta.name, "size": r.meta.size,
                "bytes_sent": r.bytes_sent, "resumed_from": r.resumed_from,
                "seconds": secs, "mib_per_s": rate, "blake2b": hex(&r.meta.blake2b),
                "link": link,
            });
            outcome(quiet, json, || {
                format!(
                    "sent {} ({}) in {secs:.2} s, {rate:.1} MiB/s{}; blake2b {}",
                    r.meta.name,
                    human(r.meta.size),
                    if r.resumed_from > 0 {
                        format!(", resumed at {}", human(r.resumed_from))
                    } else {
                        String::new()
                    },
                    hex(&r.meta.blake2b[..16])
                )
            });
            Ok(())
        }
        Cmd::Recv {
            inbox,
            out,
            timeout,
            force,
            nats,
        } => {
            let cfg = Config::new(inbox.clone(), "").with_tuning(nats.seal.tuning(false)?);
            cfg.validate().map_err(|e| e.to_string())?;
            check_out_dir(&out)?;
            let t = nats.connect().await?;
            let listener = Session::listen(t.clone(), cfg)
                .await
                .map_err(|e| format!("cannot listen on {inbox}: {e}"))?;
            if !quiet {
                eprintln!("waiting on {inbox} ...");
            }
            let accept = listener.accept();
            let mut s = if !timeout.is_zero() {
                tokio::time::timeout(timeout, accept)
                    .await
                    .map_err(|_| format!("no sender connected to {inbox} within {timeout:?}"))?
            } else {
                accept.await
            }
            .map_err(|e| e.to_string())?;
            interrupt::watch(
                &s,
                "swp recv was interrupted ({signal}); what arrived is kept, and sending the file again resumes it",
            );
            let shown = Shown::start("recv".into(), quiet);
            let opts = ReceiveOptions::new().overwrite(force);
            let r = recv_file_with(&mut s, &out, &opts, Some(shown.sender())).await;
            let secs = shown.done().await.secs;
            let go_peer = s.wire_format() == WireFormat::Go;
            let (meta, path) = finish(s, t.as_ref(), r).await?;
            let json = serde_json::json!({
                "op": "recv", "name": meta.name, "size": meta.size, "path": path,
                "seconds": secs, "blake2b": hex(&meta.blake2b), "verified": true,
                "go_peer": go_peer,
            });
            outcome(quiet, json, || {
                let from_go = if go_peer {
                    " (from a go-sliding-window peer)"
                } else {
                    ""
                };
                format!(
                    "received {} ({}) in {secs:.2} s -> {}; blake2b {} verified{from_go}",
                    meta.name,
                    human(meta.size),
                    path.display(),
                    hex(&meta.blake2b[..16])
                )
            });
            Ok(())
        }
        Cmd::Serve {
            subject,
            dir,
            queue,
            max_sessions,
            force,
            name,
            nats,
        } => {
            let opts = ServeOpts {
                queue,
                max_sessions: usize::try_from(max_sessions).unwrap_or(usize::MAX),
                force,
                name,
            };
            serve(subject, dir, opts, nats, quiet).await
        }
        Cmd::Put {
            subject,
            paths,
            name,
            nats,
        } => put(subject, paths, name, nats, quiet).await,
        Cmd::Get {
            subject,
            names,
            out,
            force,
            nats,
        } => get(subject, names, out, force, nats, quiet).await,
        Cmd::Keygen { file, show } => {
            let k = if show {
                Keypair::load(&file).map_err(|e| e.to_string())?
            } else {
                let k = Keypair::generate();
                k.save(&file).map_err(|e| {
                    if file.exists() {
                        format!(
                            "{e} (it exists; `swp keygen --show {}` prints its public key)",
                            file.display()
                        )
                    } else {
                        e.to_string()
                    }
                })?;
                k
            };
            println!("{}", k.public());
            Ok(())
        }
        Cmd::Ls { subject, nats } => {
            let t = nats.connect().await?;
            let mut s =
                connect_service(&t, &subject, &nats, "swp ls was interrupted ({signal})").await?;
            let r = file_service::list(&mut s).await;
            let _ = leave(s, &t).await;
            let entries = r.map_err(|e| e.to_string())?;
            if json_mode() {
                let list: Vec<_> = entries
                    .iter()
                    .map(|e| serde_json::json!({"name": e.name, "size": e.size}))
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"op": "ls", "subject": subject, "files": list})
                );
            } else {
                for e in entries {
                    println!("{:>12}  {}", e.size, e.name);
                }
            }
            Ok(())
        }
        Cmd::Demo { size } => demo(size, quiet).await,
        Cmd::Bench { quick, server } => {
            let (own, url) = match server {
                Some(u) => (None, u),
                None => {
                    // JetStream on, for the Object Store row.
                    let store =
                        std::env::temp_dir().join(format!("swp-bench-js-{}", std::process::id()));
                    let dir = store.to_string_lossy().to_string();
                    let s = NatsServer::start_with_args(&["-js", "-sd", &dir])
                        .map_err(|e| e.to_string())?;
                    let u = s.url();
                    (Some((s, store)), u)
                }
            };
            let me = std::env::current_exe().map_err(|e| {
                format!("cannot find this program's own path for the command-line rows: {e}")
            })?;
            swp_tools::bench::run(&url, quick, own.as_ref().map(|(s, _)| s.pid()), &me).await;
            if let Some((s, store)) = own {
                drop(s);
                let _ = std::fs::remove_dir_all(store);
            }
            Ok(())
        }
    }
}

/// Connects to the file service on `subject`; an interrupt tells it
/// `interrupted` (with `{signal}` in it).
async fn connect_service(
    t: &Arc<NatsTransport>,
    subject: &str,
    nats: &NatsArgs,
    interrupted: &'static str,
) -> Result<Session, String> {
    let s = Session::connect_to(t.clone(), subject, nats.seal.tuning(true)?)
        .await
        .map_err(|e| format!("cannot reach the service on {subject}: {e}"))?;
    interrupt::watch(&s, interrupted);
    Ok(s)
}

/// `swp serve`'s options besides the subject and the directory.
struct ServeOpts {
    queue: Option<String>,
    max_sessions: usize,
    force: bool,
    name: String,
}

async fn serve(
    subject: String,
    dir: PathBuf,
    opts: ServeOpts,
    nats: NatsArgs,
    quiet: bool,
) -> Result<(), String> {
    let ServeOpts {
        queue,
        max_sessions,
        force,
        name,
    } = opts;
    check_out_dir(&dir)?;
    let t = nats.connect().await?;
    let client = t.client().clone();
    let mut cfg = ServiceConfig::new(subject.clone())
        .max_sessions(max_sessions)
        .tuning(nats.seal.tuning(false)?);
    if let Some(q) = &queue {
        cfg = cfg.queue_group(q.clone());
    }
    let service = Service::bind(t, cfg)
        .await
        .map_err(|e| format!("cannot serve on {subject}: {e}"))?;
    let _announced = service
        .announce(&client, &name)
        .await
        .map_err(|e| format!("cannot announce {name:?} (nats micro): {e}"))?;
    if !quiet {
        let group = queue
            .map(|q| format!(" in queue group {q}"))
            .unwrap_or_default();
        eprintln!("serving {} on {subject}{group}", dir.display());
    }
    let opts = Arc::new(ReceiveOptions::new().overwrite(force));
    loop {
        let s = service.accept().await.map_err(|e| e.to_string())?;
        interrupt::watch(
            &s,
            "swp serve was stopped ({signal}); what arrived is kept, and a put or get run again resumes it",
        );
        let (dir, opts) = (dir.clone(), opts.clone());
        let client = s.remote_inbox();
        tokio::spawn(async move {
            match file_service::serve(s, &dir, &opts).await {
                Ok(r) if !quiet => eprintln!(
                    "{client}: {} put, {} get, {} listings, {} refused",
                    r.puts, r.gets, r.lists, r.refused
                ),
                Ok(_) => {}
                Err(e) => eprintln!("{client}: {e}"),
            }
        });
    }
}

/// The files under `path` with the names they get on the service: a file
/// by its own name, a directory's files under the directory's name.
fn expand(path: &std::path::Path, out: &mut Vec<(PathBuf, String)>) -> Result<(), String> {
    let m = std::fs::metadata(path).map_err(|e| format!("cannot put {}: {e}", path.display()))?;
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .ok_or_else(|| format!("cannot put {}: it has no name", path.display()))?;
    if m.is_file() {
        check_source(path)?;
        out.push((path.to_path_buf(), base));
        return Ok(());
    }
    fn walk(
        dir: &std::path::Path,
        prefix: &str,
        out: &mut Vec<(PathBuf, String)>,
    ) -> Result<(), String> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot put {}: {e}", dir.display()))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let name = format!("{prefix}/{}", e.file_name().to_string_lossy());
            if p.is_dir() {
                walk(&p, &name, out)?;
            } else if p.is_file() {
                out.push((p, name));
            }
        }
        Ok(())
    }
    walk(path, &base, out)
}

async fn put(
    subject: String,
    paths: Vec<PathBuf>,
    name: Option<String>,
    nats: NatsArgs,
    quiet: bool,
) -> Result<(), String> {
    let stdin = paths.len() == 1 && paths[0].as_os_str() == "-";
    let mut files = Vec::new();
    if !stdin {
        for p in &paths {
            expand(p, &mut files)?;
        }
        if files.is_empty() {
            // Only empty directories: said, not silently nothing.
            if !quiet {
                eprintln!(
                    "swp: put: nothing to upload: {} holds no files (a service stores files, not directories)",
                    paths
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            return Ok(());
        }
    }
    let t = nats.connect().await?;
    let interrupted = if stdin {
        "swp put was interrupted ({signal}); a put from stdin does not resume: run it again"
    } else {
        "swp put was interrupted ({signal}); running the put again resumes it"
    };
    let mut s = connect_service(&t, &subject, &nats, interrupted).await?;
    if let Some(name) = name.filter(|_| stdin) {
        let shown = Shown::start(format!("put {name}"), quiet);
        let mut input = tokio::io::stdin();
        let r = file_service::put_reader(&mut s, &mut input, &name, Some(shown.sender())).await;
        let secs = shown.done().await.secs;
        return match r {
            Ok(r) => {
                put_outcome(&name, &r, secs, quiet);
                leave(s, &t).await
            }
            Err(e) => {
                let _ = finish(s, t.as_ref(), Err::<(), _>(&e)).await;
                Err(format!("put {name} (from stdin): {e}"))
            }
        };
    }
    let (mut total, mut sent, start) = (0u64, 0u64, Instant::now());
    for (path, name) in &files {
        let shown = Shown::start(format!("put {name}"), quiet);
        let r = file_service::put(&mut s, path, name, Some(shown.sender())).await;
        let secs = shown.done().await.secs;
        match r {
            Ok(r) => {
                total += r.meta.size;
                sent += r.bytes_sent;
                put_outcome(name, &r, secs, quiet);
            }
            Err(e) => {
                let _ = finish(s, t.as_ref(), Err::<(), _>(&e)).await;
                return Err(format!("put {name}: {e}"));
            }
        }
    }
    leave(s, &t).await?;
    total_outcome("put", files.len(), total, sent, start, quiet);
    Ok(())
}

/// One line per file put: sent, resumed or skipped, with its rate.
fn put_outcome(name: &str, r: &swp::file::SendReport, secs: f64, quiet: bool) {
    let skipped = r.bytes_sent == 0 && r.resumed_from == r.meta.size && r.meta.size > 0;
    let rate = mib_per_s(r.bytes_sent, secs);
    let json = serde_json::json!({
        "op": "put", "name": name, "size": r.meta.size, "bytes_sent": r.bytes_sent,
        "resumed_from": r.resumed_from, "skipped": skipped, "seconds": secs,
        "mib_per_s": rate, "blake2b": hex(&r.meta.blake2b),
    });
    outcome(quiet, json, || {
        let how = if skipped {
            "identical file already there, nothing sent".to_string()
        } else if r.resumed_from > 0 {
            format!(
                "resumed at {}, {secs:.2} s, {rate:.1} MiB/s",
                human(r.resumed_from)
            )
        } else {
            format!("{secs:.2} s, {rate:.1} MiB/s")
        };
        format!(
            "put {name} ({}; {how}); blake2b {}",
            human(r.meta.size),
            hex(&r.meta.blake2b[..16])
        )
    });
}

/// The total line after several files.
fn total_outcome(op: &str, files: usize, total: u64, moved: u64, start: Instant, quiet: bool) {
    if files < 2 {
        return;
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = mib_per_s(moved, secs);
    let json = serde_json::json!({
        "op": format!("{op}-total"), "files": files, "size": total,
        "bytes_moved": moved, "seconds": secs, "mib_per_s": rate,
    });
    outcome(quiet, json, || {
        format!(
            "{files} files, {} ({} moved) in {secs:.2} s, {rate:.1} MiB/s",
            human(total),
            human(moved)
        )
    });
}

async fn get(
    subject: String,
    names: Vec<String>,
    out: PathBuf,
    force: bool,
    nats: NatsArgs,
    quiet: bool,
) -> Result<(), String> {
    let stdout = out.as_os_str() == "-";
    if !stdout {
        check_out_dir(&out)?;
    }
    let t = nats.connect().await?;
    let interrupted = if stdout {
        "swp get was interrupted ({signal}); a get to stdout does not resume: run it again"
    } else {
        "swp get was interrupted ({signal}); running the get again resumes it"
    };
    let mut s = connect_service(&t, &subject, &nats, interrupted).await?;
    if stdout {
        // The file is the only thing on stdout; what a person reads goes
        // to stderr.
        let name = &names[0];
        let shown = Shown::start(format!("get {name}"), quiet);
        let mut output = tokio::io::stdout();
        let r = file_service::get_to_writer(&mut s, name, &mut output, Some(shown.sender())).await;
        let secs = shown.done().await.secs;
        let _ = leave(s, &t).await;
        let meta = r.map_err(|e| format!("get {name} (to stdout): {e}"))?;
        if !quiet {
            eprintln!(
                "got {name} ({}; {secs:.2} s, {:.1} MiB/s) -> stdout; blake2b {} verified",
                human(meta.size),
                mib_per_s(meta.size, secs),
                hex(&meta.blake2b[..16])
            );
        }
        return Ok(());
    }
    let opts = ReceiveOptions::new().overwrite(force);
    let (mut total, mut moved, start) = (0u64, 0u64, Instant::now());
    let mut queue: std::collections::VecDeque<(String, bool)> =
        names.iter().map(|n| (n.clone(), true)).collect();
    let mut files = 0;
    while let Some((name, asked)) = queue.pop_front() {
        let name = &name;
        let shown = Shown::start(format!("get {name}"), quiet);
        let r = file_service::get(&mut s, name, &out, &opts, Some(shown.sender())).await;
        let summary = shown.done().await;
        if asked && matches!(r, Err(swp::file::FileError::Refused(_))) {
            // Not a file it serves: a directory, as `swp put` uploads
            // them? Then everything under it, in the listing's order.
            let dir = format!("{}/", name.trim_end_matches('/'));
            let under: Vec<String> = match file_service::list(&mut s).await {
                Ok(entries) => entries
                    .into_iter()
                    .filter(|e| e.name.starts_with(&dir))
                    .map(|e| e.name)
                    .collect(),
                Err(_) => Vec::new(),
            };
            if !under.is_empty() {
                for n in under.into_iter().rev() {
                    queue.push_front((n, false));
                }
                continue;
            }
        }
        files += 1;
        match r {
            Ok((meta, path)) => {
                let here = summary.last.resumed_from;
                let skipped = here == meta.size && meta.size > 0;
                let secs = summary.secs;
                let rate = mib_per_s(meta.size - here.min(meta.size), secs);
                total += meta.size;
                moved += meta.size - here.min(meta.size);
                let json = serde_json::json!({
                    "op": "get", "name": name, "size": meta.size, "path": path,
                    "resumed_from": here, "skipped": skipped, "seconds": secs,
                    "mib_per_s": rate, "blake2b": hex(&meta.blake2b), "verified": true,
                });
                outcome(quiet, json, || {
                    let how = if skipped {
                        "identical file already there, nothing sent".to_string()
                    } else if here > 0 {
                        format!("resumed at {}, {secs:.2} s, {rate:.1} MiB/s", human(here))
                    } else {
                        format!("{secs:.2} s, {rate:.1} MiB/s")
                    };
                    format!(
                        "got {name} ({}; {how}) -> {}; blake2b {} verified",
                        human(meta.size),
                        path.display(),
                        hex(&meta.blake2b[..16])
                    )
                });
            }
            Err(e) => {
                let _ = leave(s, &t).await;
                return Err(format!("get {name}: {e}"));
            }
        }
    }
    leave(s, &t).await?;
    total_outcome("get", files, total, moved, start, quiet);
    Ok(())
}

/// Ends a file-service session: says done, closes (within CLOSE_BOUND), and
/// flushes the client so the last packets leave before the process does.
async fn leave(s: Session, t: &NatsTransport) -> Result<(), String> {
    let r = tokio::time::timeout(CLOSE_BOUND, file_service::done(s))
        .await
        .unwrap_or(Ok(()));
    let _ = tokio::time::timeout(CLOSE_BOUND, swp::transport::Transport::flush(t)).await;
    r.map_err(|e| e.to_string())
}

/// How long a finished transfer may take to close its session before the
/// program exits anyway (the transfer's own outcome is already known).
const CLOSE_BOUND: Duration = Duration::from_secs(5);

/// Ends a transfer's session before the program exits: closes it after a
/// success; after a failure (already told to the peer by a Reset) waits for
/// the Reset to be handed over. Then flushes the NATS client, so the last
/// packets leave before the process does. The transfer's result is what
/// is reported; a close that fails after a verified transfer changes
/// nothing about the file.
async fn finish<T, E: std::fmt::Display>(
    s: Session,
    t: &NatsTransport,
    r: Result<T, E>,
) -> Result<T, String> {
    use swp::transport::Transport;
    match &r {
        Ok(_) => {
            if let Ok(Err(e)) = tokio::time::timeout(CLOSE_BOUND, s.close()).await {
                tracing::debug!(error = %e, "close after a complete transfer failed");
            }
        }
        Err(_) => {
            let _ = tokio::time::timeout(CLOSE_BOUND, s.wait_closed()).await;
        }
    }
    let _ = tokio::time::timeout(CLOSE_BOUND, t.flush()).await;
    r.map_err(|e| e.to_string())
}

/// What the sending session did, for `--json` and `-v`: packets, repairs,
/// the round trip, and with a Go peer the buffer learned there
/// (docs/PROTOCOL.md §13.2).
fn link_json(st: &swp::proto::Stats) -> serde_json::Value {
    serde_json::json!({
        "data_packets": st.data.packets_sent,
        "retransmits_timeout": st.loss.retransmits_timeout,
        "retransmits_fast": st.loss.retransmits_fast,
        "retransmits_probe": st.loss.retransmits_probe,
        "srtt_us": st.rtt.srtt.as_micros() as u64,
        "peer_window_blocked": st.window.blocked,
        "go_peer_buffer": st.window.go_peer_buffer,
        "go_peer_buffer_fallbacks": st.window.go_peer_buffer_fallbacks,
    })
}

/// The file to send must be a readable regular file: said before any
/// connection is made.
fn check_source(file: &std::path::Path) -> Result<(), String> {
    let m = std::fs::metadata(file).map_err(|e| format!("cannot send {}: {e}", file.display()))?;
    if m.is_dir() {
        return Err(format!("cannot send {}: it is a directory", file.display()));
    }
    if !m.is_file() {
        return Err(format!(
            "cannot send {}: not a regular file",
            file.display()
        ));
    }
    std::fs::File::open(file).map_err(|e| format!("cannot send {}: {e}", file.display()))?;
    Ok(())
}

/// The output directory must be usable (created if missing): said before
/// a sender connects.
fn check_out_dir(out: &std::path::Path) -> Result<(), String> {
    if out.exists() && !out.is_dir() {
        return Err(format!(
            "cannot use {} as the output directory: it is a file, not a directory",
            out.display()
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| format!("cannot use --out {}: {e}", out.display()))?;
    let probe = out.join(format!(".swp-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| format!("cannot write into --out {}: {e}", out.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

async fn demo(size_mib: u64, quiet: bool) -> Result<(), String> {
    let server = NatsServer::start().map_err(|e| e.to_string())?;
    if !quiet {
        println!("started {} on {}", server.binary().display(), server.url());
    }
    let dir = std::env::temp_dir().join(format!("swp-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let src = dir.join("demo.bin");
    {
        use std::io::Write;
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(&src).map_err(|e| e.to_string())?);
        let mut chunk = vec![0u8; 1 << 20];
        for m in 0..size_mib {
            for (i, b) in chunk.iter_mut().enumerate() {
                *b = demo_byte((m << 20) + i as u64);
            }
            f.write_all(&chunk).map_err(|e| e.to_string())?;
        }
        f.flush().map_err(|e| e.to_string())?;
    }
    let url = server.url();
    let connect = || async {
        NatsTransport::connect(NatsOptions::new(url.clone()))
            .await
            .map_err(|e| e.to_string())
    };
    let (ta, tb) = (connect().await?, connect().await?);
    let listener = Session::listen(tb, Config::new("swp.demo.recv", ""))
        .await
        .map_err(|e| e.to_string())?;
    let out = dir.join("received");
    let out2 = out.clone();
    let receiver = tokio::spawn(async move {
        let mut s = listener.accept().await.map_err(|e| e.to_string())?;
        recv_file(&mut s, &out2, None)
            .await
            .map_err(|e| e.to_string())
    });
    let mut s = Session::connect(ta, Config::new("swp.demo.send", "swp.demo.recv"))
        .await
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let shown = Shown::start("demo".into(), quiet);
    let sent = send_file(&mut s, &src, Some(shown.sender()))
        .await
        .map_err(|e| e.to_string());
    shown.done().await;
    let sent = sent?;
    let (meta, path) = receiver.await.map_err(|e| e.to_string())??;
    let secs = start.elapsed().as_secs_f64();
    let same = std::fs::read(&path).map_err(|e| e.to_string())?
        == std::fs::read(&src).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    if !same || meta.blake2b != sent.meta.blake2b {
        return Err("demo: the received file differs from the source".into());
    }
    if !quiet {
        println!(
            "demo: {} through swp over NATS in {secs:.2} s ({:.1} MiB/s, digests included); BLAKE2b-512 {} verified",
            human(meta.size),
            mib_per_s(meta.size, secs),
            hex(&meta.blake2b[..16])
        );
    }
    Ok(())
}

/// The demo file's content: a pattern that differs at every offset.
fn demo_byte(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// What clap cannot say about the arguments (exit code 2, like its own
/// usage errors).
fn usage_error(cli: &Cli) -> Option<String> {
    match &cli.cmd {
        Cmd::Put { paths, name, .. } => {
            let dashes = paths.iter().filter(|p| p.as_os_str() == "-").count();
            if dashes > 0 && paths.len() > 1 {
                Some("`-` (stdin) must be the only path of a put".into())
            } else if dashes == 1 && name.is_none() {
                Some(
                    "`swp put SUBJECT -` needs --name NAME: the name stdin's bytes are saved under"
                        .into(),
                )
            } else if dashes == 0 && name.is_some() {
                Some("--name is for stdin (`swp put SUBJECT - --name NAME`); files keep their own names".into())
            } else if let Some(Err(e)) = name.as_deref().map(swp::file::safe_relative_path) {
                Some(format!("--name: {e}"))
            } else {
                None
            }
        }
        Cmd::Get { names, out, .. } => {
            if let Some(e) = names
                .iter()
                .find_map(|n| swp::file::safe_relative_path(n).err())
            {
                Some(e.to_string())
            } else if out.as_os_str() != "-" {
                None
            } else if names.len() != 1 {
                Some(format!(
                    "-O - writes one file to stdout; {} names were given",
                    names.len()
                ))
            } else if cli.json {
                Some("--json writes to stdout, which -O - uses for the file".into())
            } else {
                None
            }
        }
        Cmd::Send {
            packet_size: Some(p),
            nats,
            ..
        } => {
            // The library says "max_payload" and "window"; here the user
            // wrote --packet-size, so say it in those words, before connecting.
            let window = Tuning::new().window_bytes();
            let sealed = nats.seal.key.is_some() || nats.seal.psk_file.is_some();
            if *p as u64 > window {
                Some(format!(
                    "--packet-size {}: larger than a session's window ({}); a packet is also at most \
                     the NATS server's max_payload less 1 KiB (1 MiB by default, so 1023K)",
                    human(*p as u64),
                    human(window)
                ))
            } else if sealed && *p > seal::MAX_SEALED_PAYLOAD {
                Some(format!(
                    "--packet-size {}: a sealed session (--key, --psk-file) carries at most 63K per packet",
                    human(*p as u64)
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

fn main() {
    let cli = Cli::parse();
    if let Some(msg) = usage_error(&cli) {
        use clap::CommandFactory;
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, msg)
            .exit();
    }
    init_logging(cli.verbose);
    let _ = JSON.set(cli.json);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("swp: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let interrupted = rt.block_on(async {
        tokio::select! {
            r = run(cli) => Err(r),
            i = interrupt::interrupted() => {
                let told = i.tell_peers().await;
                Ok((i.signal, i.code, told))
            }
        }
    });
    match interrupted {
        // Every other way out is process::exit, which waits for no thread.
        // Dropping the runtime would wait for its blocking jobs without a
        // bound (a read or write stuck on a dead disk): give them a moment.
        Err(Ok(())) => rt.shutdown_timeout(Duration::from_secs(1)),
        Err(Err(e)) => {
            eprintln!("swp: {e}");
            std::process::exit(1);
        }
        Ok((signal, code, told)) => {
            if told > 0 {
                let peers = if told == 1 { "the peer" } else { "the peers" };
                eprintln!("swp: interrupted ({signal}); {peers} told why");
            } else {
                eprintln!("swp: interrupted ({signal})");
            }
            std::process::exit(code);
        }
    }
}
