//! Identities for sealed sessions, on disk: key generation from the
//! operating system's randomness, key files with owner-only permissions,
//! pre-shared secret files (docs/PROTOCOL.md §14). The engine
//! ([`crate::proto::seal`]) does neither IO nor OS randomness; this module
//! and the async [`Session`](crate::Session) do.

use crate::proto::seal::{KeyError, Keypair, psk_from_bytes};
use rand::RngCore;
use std::path::Path;
use zeroize::Zeroizing;

/// 32 bytes from the operating system's random source.
///
/// ```
/// assert_ne!(swp::keys::fresh_entropy(), swp::keys::fresh_entropy());
/// ```
pub fn fresh_entropy() -> [u8; 32] {
    let mut e = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut e);
    e
}

impl Keypair {
    /// A fresh keypair from the operating system's random source.
    ///
    /// ```
    /// use swp::proto::seal::Keypair;
    /// assert_ne!(Keypair::generate().public(), Keypair::generate().public());
    /// ```
    pub fn generate() -> Keypair {
        Keypair::from_secret(fresh_entropy())
    }

    /// Writes the key file, readable by its owner only. Refuses to
    /// overwrite an existing file.
    ///
    /// ```
    /// use swp::proto::seal::Keypair;
    /// let path = std::env::temp_dir().join(format!("swp-key-doc-{}", std::process::id()));
    /// let k = Keypair::generate();
    /// k.save(&path).unwrap();
    /// assert!(k.save(&path).is_err(), "never overwritten");
    /// assert_eq!(Keypair::load(&path).unwrap(), k);
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(path)
            .map_err(|e| KeyError(format!("cannot create key file {}: {e}", path.display())))?;
        f.write_all(self.to_file_text().as_bytes())
            .map_err(|e| KeyError(format!("cannot write key file {}: {e}", path.display())))
    }

    /// Reads a key file. On Unix, refuses one that its group or others can
    /// read or write (as ssh does), since whoever reads it can impersonate
    /// this endpoint.
    pub fn load(path: &Path) -> Result<Keypair, KeyError> {
        let text = read_secret_file(path, "key")?;
        Keypair::from_file_text(&text).map_err(|e| KeyError(format!("{}: {}", path.display(), e.0)))
    }
}

fn read_secret_file(path: &Path, what: &str) -> Result<Zeroizing<String>, KeyError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| KeyError(format!("cannot read {what} file {}: {e}", path.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError(format!(
                "{what} file {} is readable or writable by others (mode {mode:o}): run `chmod 600 {}`",
                path.display(),
                path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| KeyError(format!("cannot read {what} file {}: {e}", path.display())))
}

/// Reads a pre-shared secret file: any text, at least 16 bytes of it after
/// trimming; the key is its BLAKE2b-256 hash ([`psk_from_bytes`]), so a
/// passphrase works. Same permission rule as [`Keypair::load`].
///
/// ```
/// # #[cfg(unix)] {
/// use std::os::unix::fs::PermissionsExt;
/// let path = std::env::temp_dir().join(format!("swp-psk-doc-{}", std::process::id()));
/// std::fs::write(&path, "a passphrase of some length\n").unwrap();
/// std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
/// assert!(swp::keys::load_psk(&path).unwrap_err().to_string().contains("chmod 600"));
/// std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
/// let k = swp::keys::load_psk(&path).unwrap();
/// assert_eq!(k, swp::proto::seal::psk_from_bytes(b"a passphrase of some length").unwrap());
/// std::fs::remove_file(&path).unwrap();
/// # }
/// ```
pub fn load_psk(path: &Path) -> Result<[u8; 32], KeyError> {
    let text = read_secret_file(path, "pre-shared secret")?;
    psk_from_bytes(text.trim().as_bytes())
        .map_err(|e| KeyError(format!("{}: {}", path.display(), e.0)))
}
