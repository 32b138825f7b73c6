//! `debugmon review --serve`: the review as a read-only web page. The
//! records come from the same source and go through the same verifier as
//! the command line ([`super::Review`]); the page's filters are the
//! command's flags as query parameters ([`query`]), so a view is a URL that
//! can be shared. New records arrive over Server-Sent Events, and every
//! record is verified before any view shows it.
//!
//! - [`live`]: following the source, re-verifying, the current snapshot
//! - [`http`]: the small HTTP/1.1 server (GET only, token, TLS)
//! - [`query`]: the page's query string as a [`super::filter::Filter`]
//! - [`page`]: the HTML, every record field escaped ([`html`])
//! - [`chart`]: the timeline of decisions per host and per rule, as SVG

pub mod chart;
pub mod html;
pub mod http;
pub mod live;
pub mod page;
pub mod query;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use thiserror::Error;

/// Where the page listens when `--listen` is not given.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7465";

/// The environment variable that may carry the page's token.
pub const TOKEN_ENV: &str = "DEBUGMON_REVIEW_TOKEN";

#[derive(Debug, Error)]
pub enum ServeError {
    #[error(
        "refusing to listen on {addr}, which is not a loopback address, without TLS and a token: give --tls-cert, --tls-key and --token-file (or {TOKEN_ENV})"
    )]
    Exposed { addr: SocketAddr },
    #[error("--tls-cert and --tls-key go together")]
    HalfTls,
    #[error("reading {what} {path}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        io_error: std::io::Error,
    },
    #[error(
        "{what} {path} can be read by other users (mode {mode:04o}): anyone on the host could use it; make it readable by its owner alone (chmod 600)"
    )]
    NotPrivate {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
    #[error("the token in {where_} is empty")]
    EmptyToken { where_: String },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("the TLS certificate and key do not make a server configuration")]
    Tls(#[source] tokio_rustls::rustls::Error),
    #[error("binding the review page to {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        io_error: std::io::Error,
    },
}

/// The page's exposure: where it listens, and what guards it.
#[derive(Debug, Clone, Default)]
pub struct Exposure {
    /// PEM certificate chain and key, both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// A file holding the token (its first line).
    pub token_file: Option<PathBuf>,
    /// The token from the environment ([`TOKEN_ENV`]).
    pub token_env: Option<String>,
}

/// What [`Exposure::check`] found usable.
pub struct Guard {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub token: Option<String>,
}

impl Exposure {
    /// Loads TLS and the token, and refuses a non-loopback address
    /// without both: the records show who debugged what, with argv and
    /// paths, and must not cross a network in the clear or to anyone.
    pub fn check(&self, addr: SocketAddr) -> Result<Guard, ServeError> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => {
                private("the TLS key", k)?;
                Some(http::tls_acceptor(c, k)?)
            }
            (None, None) => None,
            _ => return Err(ServeError::HalfTls),
        };
        let token = match (&self.token_file, &self.token_env) {
            (Some(path), _) => {
                private("the token file", path)?;
                let text = std::fs::read_to_string(path).map_err(|io_error| ServeError::Read {
                    what: "the token file",
                    path: path.clone(),
                    io_error,
                })?;
                Some(nonempty(
                    text.lines().next().unwrap_or_default(),
                    &path.display().to_string(),
                )?)
            }
            (None, Some(t)) => Some(nonempty(t, TOKEN_ENV)?),
            (None, None) => None,
        };
        if !addr.ip().is_loopback() && (tls.is_none() || token.is_none()) {
            return Err(ServeError::Exposed { addr });
        }
        Ok(Guard { tls, token })
    }
}

/// Refuses a secret other users can read, as ssh refuses a private key:
/// whoever holds the token sees every record the page shows.
fn private(what: &'static str, path: &Path) -> Result<(), ServeError> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).map_err(|io_error| ServeError::Read {
        what,
        path: path.to_owned(),
        io_error,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(ServeError::NotPrivate {
            what,
            path: path.to_owned(),
            mode,
        });
    }
    Ok(())
}

fn nonempty(t: &str, where_: &str) -> Result<String, ServeError> {
    let t = t.trim();
    if t.is_empty() {
        return Err(ServeError::EmptyToken {
            where_: where_.to_owned(),
        });
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests;
