//! The host's open grant requests (default
//! /var/lib/debugmon/requests.json, beside the grants file): made over the
//! control socket, each signed with the host key, kept until approved or
//! expired, so a restart keeps them. On load every request is checked
//! against this host's key: one added or changed by someone who can write
//! the file but not read the key is dropped and reported, never approved.
//! Written atomically like the grants file.

use std::{
    fs::{self, File},
    io::Read as _,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use super::{Open, RequestBody, SignedRequest};
use crate::grants::{
    AccessMode, GrantError, GrantTarget, Requester, format_duration, io, replace_file,
};

/// Version of the file format.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct PendingFile {
    version: u32,
    requests: Vec<SignedRequest>,
}

/// What [`PendingBook::open`] dropped from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// Not signed by this host's key, or not a request: never approved.
    Forged {
        reason: String,
    },
    Expired(Box<RequestBody>),
}

/// What a new request asks for.
pub struct Ask<'a> {
    pub user: &'a str,
    pub target: GrantTarget,
    pub mode: AccessMode,
    pub duration: Duration,
    pub reason: &'a str,
    pub requester: Requester,
}

pub struct PendingBook {
    path: PathBuf,
    host: String,
    key: Arc<SigningKey>,
    /// How long a request waits for its approval.
    ttl: Duration,
    /// Longest grant that may be asked for (`grants.max_duration`).
    max: Duration,
    open: Vec<(SignedRequest, RequestBody)>,
}

impl PendingBook {
    /// Loads `path` (missing: none open), keeping the requests this host
    /// signed that have not expired at `now`.
    pub fn open(
        path: impl Into<PathBuf>,
        host: &str,
        key: Arc<SigningKey>,
        ttl: Duration,
        max: Duration,
        now: DateTime<Utc>,
    ) -> Result<(Self, Vec<Dropped>), GrantError> {
        let path = path.into();
        let mut dropped = Vec::new();
        let mut open = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                let mut text = String::new();
                f.read_to_string(&mut text).map_err(io("read", &path))?;
                match serde_json::from_str::<PendingFile>(&text) {
                    Ok(file) if file.version == VERSION => {
                        for signed in file.requests {
                            match signed.verify(&key.verifying_key()) {
                                Ok(body) if body.host != host => dropped.push(Dropped::Forged {
                                    reason: format!(
                                        "request {} is for host {}",
                                        body.id, body.host
                                    ),
                                }),
                                Ok(body) if body.expires <= now => {
                                    dropped.push(Dropped::Expired(Box::new(body)));
                                }
                                Ok(body) => open.push((signed, body)),
                                Err(e) => dropped.push(Dropped::Forged {
                                    reason: e.to_string(),
                                }),
                            }
                        }
                    }
                    Ok(file) => dropped.push(Dropped::Forged {
                        reason: format!("version {} is not one this agent reads", file.version),
                    }),
                    Err(e) => dropped.push(Dropped::Forged {
                        reason: format!("not a requests file: {e}"),
                    }),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("open", &path)(e)),
        }
        if dropped.iter().any(|d| matches!(d, Dropped::Forged { .. })) {
            // The file as found is evidence: kept beside, never overwritten.
            let kept = format!("{}.rejected-{}", path.display(), now.timestamp());
            fs::copy(&path, &kept)
                .map_err(io("keep a copy of the refused requests file", &path))?;
            for d in &mut dropped {
                if let Dropped::Forged { reason } = d {
                    reason.push_str(&format!("; the file as found is kept at {kept}"));
                }
            }
        }
        let book = Self {
            path,
            host: host.to_owned(),
            key,
            ttl,
            max,
            open,
        };
        if !dropped.is_empty() {
            book.save()?;
        }
        Ok((book, dropped))
    }

    /// A new request, signed and persisted.
    pub fn ask(&mut self, ask: Ask<'_>, now: DateTime<Utc>) -> Result<SignedRequest, GrantError> {
        if ask.user.trim().is_empty() {
            return Err(GrantError::Empty("user"));
        }
        if ask.reason.trim().is_empty() {
            return Err(GrantError::Empty("reason"));
        }
        if ask.duration > self.max || ask.duration.is_zero() {
            return Err(GrantError::TooLong {
                requested: format_duration(ask.duration),
                max: format_duration(self.max),
            });
        }
        // The process a pid names now, not whichever has the pid when the
        // approval comes.
        let start_tick = match &ask.target {
            GrantTarget::Pid(pid) => Some(crate::grants::process_start(*pid)?),
            _ => None,
        };
        let ttl = chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::hours(1));
        let body = RequestBody {
            id: new_id(now)?,
            host: self.host.clone(),
            user: ask.user.to_owned(),
            target: ask.target,
            mode: ask.mode,
            duration_secs: ask.duration.as_secs(),
            reason: ask.reason.to_owned(),
            requester: ask.requester,
            start_tick,
            created: now,
            expires: now + ttl,
        };
        let signed = SignedRequest::sign(&body, &self.key);
        self.open.push((signed.clone(), body));
        if let Err(e) = self.save() {
            self.open.pop();
            return Err(e);
        }
        Ok(signed)
    }

    /// Closes request `id` (approved, or its grant failed): an approval
    /// of it repeated later finds nothing to approve.
    pub fn close(&mut self, id: &str) -> Result<(), GrantError> {
        let before = self.open.len();
        self.open.retain(|(_, b)| b.id != id);
        if self.open.len() == before {
            return Ok(());
        }
        self.save()
    }

    /// Removes requests expired at `now`, returning them.
    pub fn expire(&mut self, now: DateTime<Utc>) -> Result<Vec<RequestBody>, GrantError> {
        if self.open.iter().all(|(_, b)| b.expires > now) {
            return Ok(Vec::new());
        }
        let (gone, kept): (Vec<_>, Vec<_>) =
            self.open.drain(..).partition(|(_, b)| b.expires <= now);
        self.open = kept;
        self.save()?;
        Ok(gone.into_iter().map(|(_, b)| b).collect())
    }

    /// Every open request, signed (to publish again after a reconnect).
    pub fn signed(&self) -> Vec<SignedRequest> {
        self.open.iter().map(|(s, _)| s.clone()).collect()
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn save(&self) -> Result<(), GrantError> {
        let file = PendingFile {
            version: VERSION,
            requests: self.signed(),
        };
        let body = serde_json::to_vec_pretty(&file).expect("invariant: requests always serialize");
        replace_file(&self.path, &body)
    }
}

impl Open for PendingBook {
    fn open_request(&self, id: &str) -> Option<(&SignedRequest, &RequestBody)> {
        self.open
            .iter()
            .find(|(_, b)| b.id == id)
            .map(|(s, b)| (s, b))
    }
}

/// `r-YYYYMMDD-` and 8 random hex digits.
fn new_id(now: DateTime<Utc>) -> Result<String, GrantError> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|e| GrantError::Io {
        what: "draw random bytes for",
        path: "a request id".to_owned(),
        io_error: std::io::Error::other(e.to_string()),
    })?;
    Ok(format!(
        "r-{}-{:08x}",
        now.format("%Y%m%d"),
        u32::from_be_bytes(b)
    ))
}
