//! The trusted-keys file `verify` checks hosts' keys against: which public
//! key each host signs with, so a stream forged with a key of its own, or
//! signed with one host's key under another host's name, fails.
//!
//! Format (docs/records.md): one `HOST HEXKEY` pair a line, `#` comments
//! and blank lines ignored. A host may have several keys (a re-keyed
//! host keeps the old one for its old records); a key belongs to one host
//! only: that is what binds it to the host's name.

use std::{
    collections::BTreeMap,
    io::{self, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
};

use thiserror::Error;

use super::parse_key;

/// Where `verify` looks without `--trusted-keys`, and `debugmon key add`
/// writes.
pub const DEFAULT_TRUSTED_KEYS: &str = "/etc/debugmon/trusted-keys";

#[derive(Debug, Error)]
pub enum TrustError {
    #[error("reading the trusted-keys file {path}")]
    Read {
        path: PathBuf,
        #[source]
        io_error: io::Error,
    },
    #[error("writing the trusted-keys file {path}")]
    Write {
        path: PathBuf,
        #[source]
        io_error: io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Syntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("key {key} is already trusted for host {owner:?}: a key belongs to one host")]
    KeyOfAnotherHost { key: String, owner: String },
    #[error("host name {0:?}: give a name without whitespace or '#'")]
    BadHost(String),
}

/// Host name -> its keys (lower-case hex), and each key's host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedKeys {
    by_host: BTreeMap<String, Vec<String>>,
    owner: BTreeMap<String, String>,
}

fn valid_host(h: &str) -> bool {
    !h.is_empty() && !h.contains(char::is_whitespace) && !h.contains('#')
}

impl TrustedKeys {
    /// Parses the file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, TrustError> {
        let mut t = Self::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let syntax = |reason: String| TrustError::Syntax {
                path: path.to_owned(),
                line: i + 1,
                reason,
            };
            let mut words = line.split_whitespace();
            let (Some(host), Some(key), None) = (words.next(), words.next(), words.next()) else {
                return Err(syntax("expected `HOST HEXKEY`".into()));
            };
            parse_key(key).map_err(|e| syntax(e.to_string()))?;
            t.add(host, key).map_err(|e| syntax(e.to_string()))?;
        }
        Ok(t)
    }

    /// Reads `path`; `Ok(None)` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<Self>, TrustError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(io_error) => Err(TrustError::Read {
                path: path.to_owned(),
                io_error,
            }),
        }
    }

    /// Binds `key` to `host`. True when it was new; an error when the key
    /// is already another host's.
    pub fn add(&mut self, host: &str, key: &str) -> Result<bool, TrustError> {
        if !valid_host(host) {
            return Err(TrustError::BadHost(host.to_owned()));
        }
        let key = key.trim().to_ascii_lowercase();
        match self.owner.get(&key) {
            Some(owner) if owner == host => return Ok(false),
            Some(owner) => {
                return Err(TrustError::KeyOfAnotherHost {
                    key,
                    owner: owner.clone(),
                });
            }
            None => {}
        }
        self.owner.insert(key.clone(), host.to_owned());
        self.by_host.entry(host.to_owned()).or_default().push(key);
        Ok(true)
    }

    /// The keys trusted for `host` (`None`: an unknown host).
    pub fn keys_of(&self, host: &str) -> Option<&[String]> {
        self.by_host.get(host).map(Vec::as_slice)
    }

    /// The host a key is trusted for.
    pub fn owner_of(&self, key: &str) -> Option<&str> {
        self.owner
            .get(&key.trim().to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.owner.is_empty()
    }

    /// The file's text: a header, then one line per key, hosts in order.
    pub fn to_text(&self) -> String {
        let mut s =
            String::from("# debugmon trusted host keys: HOST HEXKEY (see `debugmon key`)\n");
        for (host, keys) in &self.by_host {
            for k in keys {
                s.push_str(&format!("{host} {k}\n"));
            }
        }
        s
    }

    /// Writes the file whole (a temp file renamed over it, mode 0644: the
    /// keys are public, but only root may change them).
    pub fn save(&self, path: &Path) -> Result<(), TrustError> {
        let err = |io_error| TrustError::Write {
            path: path.to_owned(),
            io_error,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(self.to_text().as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

/// How `verify` decides whose key to believe.
#[derive(Debug, Clone, Default)]
pub enum Trust {
    /// `--key`: these keys, for every host.
    Pinned(Vec<String>),
    /// The trusted-keys file: each host's own keys; with `tofu`, a host
    /// the file does not know is judged by the key its start record
    /// carries (and a note says so).
    File { keys: TrustedKeys, tofu: bool },
    /// `--trust-on-first-use` without a file: every host by its start
    /// records' keys.
    #[default]
    FirstUse,
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const K2: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";

    #[test]
    fn a_key_belongs_to_one_host() {
        let mut t = TrustedKeys::default();
        assert!(t.add("db-1", K1).unwrap());
        assert!(!t.add("db-1", K1).unwrap(), "again: nothing new");
        assert!(t.add("db-1", K2).unwrap(), "a second key for the same host");
        let e = t.add("web-2", K1).unwrap_err();
        assert!(matches!(e, TrustError::KeyOfAnotherHost { .. }), "{e}");
        assert_eq!(t.owner_of(&K1.to_uppercase()), Some("db-1"));
        assert_eq!(t.keys_of("db-1").unwrap().len(), 2);
        assert_eq!(t.keys_of("web-2"), None);
        assert!(t.add("bad host", K2).is_err());
    }

    #[test]
    fn the_file_round_trips_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etc/trusted-keys");
        assert_eq!(TrustedKeys::load(&path).unwrap(), None);
        let mut t = TrustedKeys::default();
        t.add("db-1", K1).unwrap();
        t.add("web-2", K2).unwrap();
        t.save(&path).unwrap();
        assert_eq!(TrustedKeys::load(&path).unwrap(), Some(t));
        let text = format!("# c\n\ndb-1 {K1}  # trailing\nweb-2 nothex\n");
        let e = TrustedKeys::parse(&text, &path).unwrap_err().to_string();
        assert!(e.contains(":4:"), "{e}");
        let e = TrustedKeys::parse(&format!("db-1 {K1}\nweb-2 {K1}\n"), &path)
            .unwrap_err()
            .to_string();
        assert!(e.contains(":2:") && e.contains("db-1"), "{e}");
        assert!(TrustedKeys::parse("db-1\n", &path).is_err());
    }
}
