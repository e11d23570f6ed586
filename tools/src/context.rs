//! The `nats` CLI's contexts (NATS ADR-21): named connection settings in
//! `$XDG_CONFIG_HOME/nats/context/NAME.json` (default `~/.config`), the
//! selected one named in `$XDG_CONFIG_HOME/nats/context.txt`. `swp` reads
//! them so a team's existing `nats context` works unchanged; flags and
//! `NATS_*` variables override what a context says.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The settings of one context that `swp` uses (others are ignored).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Context {
    /// Server URL(s), comma-separated.
    pub url: String,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// Authentication token.
    pub token: String,
    /// Credentials file.
    pub creds: String,
    /// NKey seed file.
    pub nkey: String,
    /// TLS client certificate.
    pub cert: String,
    /// TLS client key.
    pub key: String,
    /// TLS CA certificate.
    pub ca: String,
}

/// `$XDG_CONFIG_HOME/nats`, or `~/.config/nats`.
pub fn config_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(base.join("nats"))
}

/// Loads context `name` (`Some`), or the selected one if any (`None`): the
/// context, and its name. An explicitly named context that cannot be read
/// is an error that says which file; no selected context is no error.
pub fn load(name: Option<&str>) -> Result<Option<(String, Context)>, String> {
    let Some(dir) = config_dir() else {
        return match name {
            Some(n) => Err(format!(
                "cannot find nats context {n:?}: neither XDG_CONFIG_HOME nor HOME is set"
            )),
            None => Ok(None),
        };
    };
    let name = match name {
        Some(n) => n.to_string(),
        None => match std::fs::read_to_string(dir.join("context.txt")) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => return Ok(None),
        },
    };
    if name.contains('/') || name.contains('\\') || name.starts_with('.') {
        return Err(format!("{name:?} is not a nats context name"));
    }
    let path = dir.join("context").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "cannot read nats context {name:?} ({}): {e}",
            path.display()
        )
    })?;
    let ctx = serde_json::from_str(&text).map_err(|e| {
        format!(
            "nats context {name:?} ({}) is not valid: {e}",
            path.display()
        )
    })?;
    Ok(Some((name, ctx)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_as_the_nats_cli_writes_it_decodes_and_unknown_fields_are_ignored() {
        // Written by `nats context add dev --server ... --user ... --password ...`
        // (fields swp does not use included).
        let text = r#"{
  "description": "dev cluster",
  "url": "nats://a:4222,nats://b:4222",
  "socks_proxy": "",
  "token": "",
  "user": "alice",
  "password": "s3cret",
  "creds": "",
  "nkey": "",
  "cert": "",
  "key": "",
  "ca": "",
  "nsc": "",
  "jetstream_domain": "",
  "jetstream_api_prefix": "",
  "jetstream_event_prefix": "",
  "inbox_prefix": "",
  "user_jwt": "",
  "color_scheme": "",
  "tls_first": false,
  "windows_cert_store": "",
  "windows_cert_match_by": "",
  "windows_cert_match": "",
  "windows_ca_certs_match": null
}"#;
        let c: Context = serde_json::from_str(text).unwrap();
        assert_eq!(c.url, "nats://a:4222,nats://b:4222");
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "s3cret"));
        assert!(c.creds.is_empty() && c.nkey.is_empty());
        let empty: Context = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, Context::default());
    }
}
