//! The file service: what a client asks of a directory served over swp
//! (docs/PROTOCOL.md §11.5). On one session the client sends requests, one
//! at a time, as messages: put a file, get a file, list the directory, or
//! done. The server answers each with a reply message; a put or a get then
//! runs the ordinary verified, resumable exchange (§11) in the direction it
//! names, and the session is ready for the next request.

use super::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
enum Request {
    /// The client offers a file next (the usual exchange, client sending).
    Put,
    /// The client wants `name` (a relative path in the served directory).
    Get { name: String },
    /// The client wants the directory's listing.
    List,
    /// The client is finished; the server closes the session.
    Done,
}

#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    /// Go ahead: the exchange follows.
    Ready,
    /// Refused, and why (the session stays usable).
    Refused { message: String },
    /// The listing: (relative path, size), sorted; the last (or only)
    /// message of it.
    Listing { entries: Vec<(String, u64)> },
    /// A part of a listing too large for one message; `Listing` follows
    /// with the rest.
    ListingPart { entries: Vec<(String, u64)> },
}

/// A listing part's size bound (encoded, about): well under any session's
/// largest message, so a directory of any size can be listed.
const LISTING_PART_BYTES: usize = 1 << 20;

/// Sends a listing in messages the session carries: `ListingPart`s, then
/// the final `Listing` (one `Listing` alone when it fits one part).
async fn send_listing(session: &Session, entries: Vec<(String, u64)>) -> Result<(), FileError> {
    let most = session.max_message_size().unwrap_or(u64::MAX) / 2;
    let budget = LISTING_PART_BYTES
        .min(usize::try_from(most).unwrap_or(usize::MAX))
        .max(64 << 10);
    let mut part = Vec::new();
    let mut size = 0;
    for e in entries {
        // An entry: array and string headers, the name, a u64.
        let n = e.0.len() + 16;
        if !part.is_empty() && size + n > budget {
            send_msg(
                session,
                &Reply::ListingPart {
                    entries: std::mem::take(&mut part),
                },
            )
            .await?;
            size = 0;
        }
        size += n;
        part.push(e);
    }
    send_msg(session, &Reply::Listing { entries: part }).await
}

/// One file of a served directory's listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its path relative to the served directory, `/`-separated.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What one served session did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServedReport {
    /// Files received into the directory.
    pub puts: u64,
    /// Files sent from it.
    pub gets: u64,
    /// Listings sent.
    pub lists: u64,
    /// Requests refused (a bad name, a missing file).
    pub refused: u64,
}

async fn send_msg<T: Serialize>(session: &Session, v: &T) -> Result<(), FileError> {
    let bytes = rmp_serde::to_vec(v).map_err(|e| FileError::Protocol(e.to_string()))?;
    session.send(bytes).await?;
    Ok(())
}

async fn recv_msg<T: for<'de> Deserialize<'de>>(session: &Session) -> Result<Option<T>, FileError> {
    match session.recv().await? {
        None => Ok(None),
        Some(b) => rmp_serde::from_slice(&b)
            .map(Some)
            .map_err(|e| FileError::Protocol(format!("undecodable file-service message: {e}"))),
    }
}

async fn expect_ready(session: &Session) -> Result<(), FileError> {
    match recv_msg::<Reply>(session).await? {
        Some(Reply::Ready) => Ok(()),
        Some(Reply::Refused { message }) => Err(FileError::Refused(message)),
        Some(other) => Err(FileError::Protocol(format!("unexpected reply {other:?}"))),
        None => Err(FileError::Protocol(
            "the service closed the session before answering".into(),
        )),
    }
}

/// Checks `name`, sends `req` and waits for the service's go-ahead: what
/// every put and get begins with.
async fn ask(session: &Session, req: Request, name: &str) -> Result<(), FileError> {
    safe_relative_path(name)?;
    send_msg(session, &req).await?;
    expect_ready(session).await
}

/// Uploads the file at `path` as `name` (a relative path) to the served
/// directory. The usual rules hold: verified end to end, resumed if a part
/// of it is there, refused if the server has a different file of that name
/// (unless the server overwrites).
pub async fn put(
    session: &mut Session,
    path: &Path,
    name: &str,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<SendReport, FileError> {
    ask(session, Request::Put, name).await?;
    send_file_as(session, path, name, progress).await
}

/// Uploads everything `reader` yields (a pipe, stdin) as `name`: the size
/// is not known first, so it is verified like any file but not resumable.
pub async fn put_reader(
    session: &mut Session,
    reader: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
    name: &str,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<SendReport, FileError> {
    ask(session, Request::Put, name).await?;
    send_reader(session, reader, name, progress).await
}

/// Downloads `name` into `writer` (stdout) as it arrives, verified at the
/// end ([`recv_to_writer`]: on a mismatch the output must be discarded).
pub async fn get_to_writer(
    session: &mut Session,
    name: &str,
    writer: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    progress: Option<&watch::Sender<Progress>>,
) -> Result<FileMeta, FileError> {
    let get = Request::Get {
        name: name.to_string(),
    };
    ask(session, get, name).await?;
    recv_to_writer(session, writer, progress).await
}

/// Downloads `name` from the served directory into `dir` (verified,
/// resumable; an existing different file is refused unless `opts` says to
/// overwrite).
pub async fn get(
    session: &mut Session,
    name: &str,
    dir: &Path,
    opts: &ReceiveOptions,
    progress: Option<&watch::Sender<Progress>>,
) -> Result<(FileMeta, PathBuf), FileError> {
    let get = Request::Get {
        name: name.to_string(),
    };
    ask(session, get, name).await?;
    recv_file_with(session, dir, opts, progress).await
}

/// The served directory's files, sorted by name.
pub async fn list(session: &mut Session) -> Result<Vec<Entry>, FileError> {
    send_msg(session, &Request::List).await?;
    let mut all = Vec::new();
    loop {
        match recv_msg::<Reply>(session).await? {
            Some(Reply::ListingPart { entries }) => all.extend(entries),
            Some(Reply::Listing { entries }) => {
                all.extend(entries);
                break;
            }
            Some(Reply::Refused { message }) => return Err(FileError::Refused(message)),
            Some(other) => {
                return Err(FileError::Protocol(format!("unexpected reply {other:?}")));
            }
            None => {
                return Err(FileError::Protocol(
                    "the service closed the session before answering".into(),
                ));
            }
        }
    }
    Ok(all
        .into_iter()
        .map(|(name, size)| Entry { name, size })
        .collect())
}

/// Tells the server this client is finished, and closes the session.
pub async fn done(session: Session) -> Result<(), FileError> {
    send_msg(&session, &Request::Done).await?;
    session.close().await?;
    Ok(())
}

/// Serves `dir` on one session until the client is done: receives puts into
/// it (with `opts`), sends gets from it, answers listings. A bad request is
/// refused with a reason and the session goes on; a failed transfer ends
/// the session (both sides learn why, as with `send_file`/`recv_file`).
pub async fn serve(
    mut session: Session,
    dir: &Path,
    opts: &ReceiveOptions,
) -> Result<ServedReport, FileError> {
    let mut report = ServedReport::default();
    match serve_requests(&mut session, dir, opts, &mut report).await {
        Ok(()) => {
            session.close().await?;
            Ok(report)
        }
        Err(e) => {
            // Tell the client why, if the failure has not already ended the
            // session (a failed transfer resets it with its own reason).
            session.abort_with(format!("the file service failed: {e}"));
            let _ = tokio::time::timeout(Duration::from_secs(5), session.wait_closed()).await;
            Err(e)
        }
    }
}

async fn serve_requests(
    session: &mut Session,
    dir: &Path,
    opts: &ReceiveOptions,
    report: &mut ServedReport,
) -> Result<(), FileError> {
    loop {
        let Some(req) = recv_msg::<Request>(session).await? else {
            return Ok(()); // the client closed its direction
        };
        match req {
            Request::Put => {
                send_msg(session, &Reply::Ready).await?;
                recv_file_with(session, dir, opts, None).await?;
                report.puts += 1;
            }
            Request::Get { name } => match servable(dir, &name) {
                Ok(path) => {
                    send_msg(session, &Reply::Ready).await?;
                    send_file_as(session, &path, &name, None).await?;
                    report.gets += 1;
                }
                Err(message) => {
                    report.refused += 1;
                    send_msg(session, &Reply::Refused { message }).await?;
                }
            },
            Request::List => {
                let mut entries = Vec::new();
                walk(dir, dir, &mut entries);
                entries.sort();
                send_listing(session, entries).await?;
                report.lists += 1;
            }
            Request::Done => return Ok(()),
        }
    }
}

/// The path of `name` in `dir` if it is a regular file there (never outside
/// it, never a part file); else why not, for the client.
fn servable(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let rel = safe_relative_path(name).map_err(|e| e.to_string())?;
    let path = dir.join(&rel);
    if is_bookkeeping(&path) {
        return Err(format!("{name:?} is not a file this service offers"));
    }
    // Not followed: a symbolic link could point outside the directory.
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => Ok(path),
        Ok(_) => Err(format!("{name:?} is not a regular file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "no file {name:?} is served here (`swp ls` lists what is)"
        )),
        Err(e) => Err(format!("{name:?}: {e}")),
    }
}

/// Part and meta files of unfinished transfers (`.NAME.swp-part`,
/// `.NAME.swp-part.meta`) are not offered.
fn is_bookkeeping(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        n.starts_with('.') && (n.ends_with(".swp-part") || n.ends_with(".swp-part.meta"))
    })
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            walk(root, &p, out);
        } else if m.is_file()
            && !is_bookkeeping(&p)
            && let Ok(rel) = p.strip_prefix(root)
        {
            let name = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((name, m.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Config;
    use crate::simnet::LinkConfig;
    use crate::transport::SimNetwork;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("swp-fsvc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_listing_larger_than_one_message_comes_in_parts_whole_and_sorted() {
        // Before: a directory whose listing exceeded the largest message
        // (700,000 files against the default 16 MiB window) failed `ls`
        // with "unexpected reply None". Here the window is 256 KiB, so a
        // part holds at most 128 KiB; listings just under a part, just
        // over, and many parts over arrive whole.
        let root = tmp("parts");
        let served = root.join("served");
        std::fs::create_dir_all(&served).unwrap();
        let net = SimNetwork::new(5, LinkConfig::new().loss(0.01));
        let small = |l: &str, r: &str| Config::new(l, r).max_payload(4096).window(64, 256 << 10);
        let (mut c, s) = crate::testkit::session_pair(&net, small("c", "s"), small("s", ""))
            .await
            .unwrap();
        assert_eq!(c.max_message_size(), Some(256 << 10));
        let server = {
            let served = served.clone();
            tokio::spawn(async move { serve(s, &served, &ReceiveOptions::default()).await })
        };
        // 100-byte names: an entry counts 116 bytes; 1129 of them fit a
        // part of 128 KiB (131,072 / 116 = 1129.9), 1130 take two.
        let mut made = 0;
        for want in [1usize, 1129, 1130, 1131, 6000] {
            while made < want {
                let name = format!("{made:0100}");
                std::fs::File::create(served.join(&name)).unwrap();
                made += 1;
            }
            let got = list(&mut c).await.unwrap();
            assert_eq!(got.len(), want);
            assert!(got.windows(2).all(|w| w[0].name < w[1].name), "sorted");
            assert_eq!(got[want - 1].name, format!("{:0100}", want - 1));
        }
        done(c).await.unwrap();
        assert_eq!(server.await.unwrap().unwrap().lists, 5);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn a_request_the_service_cannot_read_ends_the_session_saying_why() {
        // Before: the service dropped the session (a clean close) and the
        // client saw only the end of the stream.
        let root = tmp("garbage");
        let net = SimNetwork::new(6, LinkConfig::new());
        let (c, s) =
            crate::testkit::session_pair(&net, Config::new("c", "s"), Config::new("s", ""))
                .await
                .unwrap();
        let server = tokio::spawn(async move { serve(s, &root, &ReceiveOptions::default()).await });
        c.send(&b"\xc1 not msgpack"[..]).await.unwrap();
        let err = c.recv().await.unwrap_err().to_string();
        assert!(
            err.contains("the file service failed") && err.contains("undecodable"),
            "{err}"
        );
        assert!(server.await.unwrap().is_err());
    }

    #[tokio::test(flavor = "current_thread", start_paused = true)]
    async fn put_get_list_and_refusals_on_one_session() {
        let root = tmp("one");
        let (served, local) = (root.join("served"), root.join("local"));
        std::fs::create_dir_all(&served).unwrap();
        std::fs::create_dir_all(&local).unwrap();
        std::fs::write(local.join("up.bin"), vec![7u8; 200_000]).unwrap();
        std::fs::create_dir_all(served.join("sub")).unwrap();
        std::fs::write(served.join("sub/down.txt"), b"from the service").unwrap();
        let net = SimNetwork::new(3, LinkConfig::new().loss(0.02));
        let (mut c, s) =
            crate::testkit::session_pair(&net, Config::new("c", "s"), Config::new("s", ""))
                .await
                .unwrap();
        let server = {
            let served = served.clone();
            tokio::spawn(async move { serve(s, &served, &ReceiveOptions::default()).await })
        };
        put(&mut c, &local.join("up.bin"), "in/up.bin", None)
            .await
            .unwrap();
        assert_eq!(
            std::fs::read(served.join("in/up.bin")).unwrap(),
            vec![7u8; 200_000]
        );
        let (_, saved) = get(
            &mut c,
            "sub/down.txt",
            &local,
            &ReceiveOptions::default(),
            None,
        )
        .await
        .unwrap();
        assert_eq!(std::fs::read(saved).unwrap(), b"from the service");
        let names: Vec<_> = list(&mut c).await.unwrap();
        assert_eq!(
            names,
            vec![
                Entry {
                    name: "in/up.bin".into(),
                    size: 200_000
                },
                Entry {
                    name: "sub/down.txt".into(),
                    size: 16
                },
            ]
        );
        // Refused with a reason; the session goes on.
        let e = get(
            &mut c,
            "missing.bin",
            &local,
            &ReceiveOptions::default(),
            None,
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("missing.bin"), "{e}");
        assert!(matches!(
            get(
                &mut c,
                "../etc/passwd",
                &local,
                &ReceiveOptions::default(),
                None
            )
            .await,
            Err(FileError::HostileName(_))
        ));
        assert_eq!(list(&mut c).await.unwrap().len(), 2);
        // A symbolic link in the served directory is neither listed nor
        // followed (it could point anywhere).
        #[cfg(unix)]
        {
            std::fs::write(root.join("secret.txt"), b"outside").unwrap();
            std::os::unix::fs::symlink(root.join("secret.txt"), served.join("link.txt")).unwrap();
            let e = get(&mut c, "link.txt", &local, &ReceiveOptions::default(), None)
                .await
                .unwrap_err();
            assert!(e.to_string().contains("not a regular file"), "{e}");
            assert_eq!(list(&mut c).await.unwrap().len(), 2);
        }
        done(c).await.unwrap();
        let report = server.await.unwrap().unwrap();
        let (lists, refused) = if cfg!(unix) { (3, 2) } else { (2, 1) };
        assert_eq!(
            (report.puts, report.gets, report.lists, report.refused),
            (1, 1, lists, refused)
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
