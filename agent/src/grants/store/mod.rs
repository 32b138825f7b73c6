//! Grants persisted to a JSON file (default /var/lib/debugmon/grants.json),
//! rewritten atomically (temp file, fsync, rename, fsync of the directory)
//! so a crash leaves the old or the new list, never half of one. Expiry is
//! checked against an injectable [`Clock`]: a lookup never returns a grant
//! past its expiry, even before [`GrantStore::expire`] has removed it.
//! The file is sealed with the host key ([`super::seal`]): one that does
//! not verify is refused whole, moved aside and reported.

use std::{
    fs::{self, File},
    io::Read,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{
    AccessMode, Approval, Grant, GrantError, GrantEvent, GrantEventKind, GrantTarget, Requester,
    format_duration, io, process_start, replace_file,
    seal::{self, GrantSigner, SealFault, SealedFile},
};
use crate::{
    policy::{GrantLookup, event::Target},
    sys::host,
};

pub const DEFAULT_PATH: &str = "/var/lib/debugmon/grants.json";
/// Longest grant accepted unless configured otherwise.
pub const DEFAULT_MAX: Duration = Duration::from_secs(4 * 3600);

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock as it read when the process first asked, moved on by
/// the boot-time clock: a grant's hour is an hour even when someone (or
/// NTP) sets the wall clock forward or back meanwhile, and the kernel's
/// grant deadlines, which are boot-time, agree with the store's. Shared by
/// every `SystemClock` of the process, so the store and the code that
/// hands grants to the kernel read the same time.
pub struct SystemClock;

/// (wall time, boot-time ns) sampled together once per process.
static ANCHOR: OnceLock<(DateTime<Utc>, u64)> = OnceLock::new();

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        let (wall, boot) = *ANCHOR.get_or_init(|| (Utc::now(), host::boottime_ns()));
        let since = host::boottime_ns().saturating_sub(boot);
        wall + chrono::Duration::nanoseconds(i64::try_from(since).unwrap_or(i64::MAX))
    }
}

/// A clock that moves only when told to (tests, replays).
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(t: DateTime<Utc>) -> Self {
        Self(Mutex::new(t))
    }

    pub fn advance(&self, d: Duration) {
        let mut t = self.0.lock().expect("invariant: clock lock never poisoned");
        *t += chrono::Duration::from_std(d).expect("invariant: test durations fit");
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("invariant: clock lock never poisoned")
    }
}

/// A grants file refused on load because its seal did not verify: none
/// of its grants is used; the file was moved to `moved_to` for an
/// investigator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileRejection {
    pub path: String,
    pub moved_to: String,
    pub reason: String,
}

pub struct GrantStore {
    path: PathBuf,
    grants: Vec<Grant>,
    max: Duration,
    clock: Arc<dyn Clock>,
    signer: Arc<dyn GrantSigner>,
    rejection: Option<FileRejection>,
}

impl GrantStore {
    /// Loads `path` (missing: no grants), checking its seal with
    /// `signer`'s key: a file that does not verify is moved aside and
    /// none of its grants used ([`Self::file_rejection`] says why). Grants
    /// that expired while the agent was down are dropped and returned as
    /// `expired` events.
    pub fn open(
        path: impl Into<PathBuf>,
        max: Duration,
        clock: Arc<dyn Clock>,
        signer: Arc<dyn GrantSigner>,
    ) -> Result<(Self, Vec<GrantEvent>), GrantError> {
        let path = path.into();
        let mut rejection = None;
        let grants = match File::open(&path) {
            Ok(mut f) => {
                let mut text = String::new();
                f.read_to_string(&mut text).map_err(io("read", &path))?;
                let opened = serde_json::from_str::<SealedFile>(&text)
                    .map_err(|e| SealFault::Unreadable(e.to_string()))
                    .and_then(|file| seal::open(file, &*signer));
                match opened {
                    Ok(grants) => grants,
                    Err(fault) => {
                        rejection = Some(set_aside(&path, &fault, clock.now())?);
                        Vec::new()
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io("open", &path)(e)),
        };
        // A grant longer than the maximum was not made through the control
        // socket (it refuses those): someone edited the file. Never use it.
        let (grants, too_long): (Vec<Grant>, Vec<Grant>) = grants
            .into_iter()
            .partition(|g| (g.expires - g.created).to_std().is_ok_and(|d| d <= max));
        let mut store = Self {
            path,
            grants,
            max,
            clock,
            signer,
            rejection,
        };
        let mut events: Vec<GrantEvent> = too_long
            .into_iter()
            .map(|grant| {
                tracing::error!(id = %grant.id, user = %grant.user, expires = %grant.expires, max = %format_duration(max),
                    "grants file holds a grant longer than the maximum: rejected, not used");
                GrantEvent {
                    event: GrantEventKind::Rejected,
                    grant,
                }
            })
            .collect();
        if !events.is_empty() {
            store.save()?;
        }
        events.extend(store.expire()?);
        Ok((store, events))
    }

    /// Creates a grant for `user` on `target` for `dur`.
    pub fn grant(
        &mut self,
        user: &str,
        target: GrantTarget,
        mode: AccessMode,
        dur: Duration,
        reason: &str,
    ) -> Result<GrantEvent, GrantError> {
        self.grant_by(user, target, mode, dur, reason, None)
    }

    /// [`Self::grant`], naming who asked (the control socket's peer).
    pub fn grant_by(
        &mut self,
        user: &str,
        target: GrantTarget,
        mode: AccessMode,
        dur: Duration,
        reason: &str,
        requested_by: Option<Requester>,
    ) -> Result<GrantEvent, GrantError> {
        self.create(user, target, mode, dur, reason, (requested_by, None, None))
    }

    /// The grant of an approved request ([`super::approval`]): made like
    /// any other, carrying who asked and who approved.
    pub fn grant_approved(
        &mut self,
        req: &super::approval::RequestBody,
        approval: Approval,
    ) -> Result<GrantEvent, GrantError> {
        self.create(
            &req.user,
            req.target.clone(),
            req.mode,
            Duration::from_secs(req.duration_secs),
            &req.reason,
            (Some(req.requester.clone()), Some(approval), req.start_tick),
        )
    }

    /// `who`: who asked, who approved, and for a `pid:N` grant of a
    /// request the start time its process had when the request was made:
    /// a process that took the pid since is not the one approved.
    fn create(
        &mut self,
        user: &str,
        target: GrantTarget,
        mode: AccessMode,
        dur: Duration,
        reason: &str,
        who: (Option<Requester>, Option<Approval>, Option<u64>),
    ) -> Result<GrantEvent, GrantError> {
        let (requested_by, approved, asked_start) = who;
        if user.trim().is_empty() {
            return Err(GrantError::Empty("user"));
        }
        if reason.trim().is_empty() {
            return Err(GrantError::Empty("reason"));
        }
        if dur > self.max {
            return Err(GrantError::TooLong {
                requested: format_duration(dur),
                max: format_duration(self.max),
            });
        }
        let created = self.clock.now();
        let expires = created
            + chrono::Duration::from_std(dur).map_err(|_| GrantError::TooLong {
                requested: format_duration(dur),
                max: format_duration(self.max),
            })?;
        // A pid grant is for the process that has the pid now.
        let start_tick = match &target {
            GrantTarget::Pid(pid) => Some(process_start(*pid)?),
            _ => None,
        };
        if let (GrantTarget::Pid(pid), Some(asked)) = (&target, asked_start)
            && start_tick != Some(asked)
        {
            return Err(GrantError::PidReused(*pid));
        }
        let grant = Grant {
            id: new_id(created, &self.path)?,
            user: user.to_owned(),
            target,
            mode,
            reason: reason.to_owned(),
            created,
            expires,
            start_tick,
            requested_by,
            approved,
        };
        self.grants.push(grant.clone());
        if let Err(e) = self.save() {
            self.grants.pop();
            return Err(e);
        }
        Ok(GrantEvent {
            event: GrantEventKind::Created,
            grant,
        })
    }

    /// Ends grant `id` now.
    pub fn revoke(&mut self, id: &str) -> Result<GrantEvent, GrantError> {
        let now = self.clock.now();
        let i = self
            .grants
            .iter()
            .position(|g| g.id == id && g.expires > now)
            .ok_or_else(|| GrantError::UnknownGrant(id.to_owned()))?;
        let grant = self.grants.remove(i);
        if let Err(e) = self.save() {
            self.grants.insert(i, grant);
            return Err(e);
        }
        Ok(GrantEvent {
            event: GrantEventKind::Revoked,
            grant,
        })
    }

    /// Removes expired grants (persisting the change) and returns them as
    /// `expired` events. Call it on a timer, e.g. at [`Self::next_expiry`].
    pub fn expire(&mut self) -> Result<Vec<GrantEvent>, GrantError> {
        let now = self.clock.now();
        if self.grants.iter().all(|g| g.expires > now) {
            return Ok(Vec::new());
        }
        let (gone, kept): (Vec<Grant>, Vec<Grant>) =
            self.grants.drain(..).partition(|g| g.expires <= now);
        self.grants = kept;
        self.save()?;
        Ok(gone
            .into_iter()
            .map(|grant| GrantEvent {
                event: GrantEventKind::Expired,
                grant,
            })
            .collect())
    }

    /// Unexpired grants.
    pub fn list(&self) -> Vec<&Grant> {
        let now = self.clock.now();
        self.grants.iter().filter(|g| g.expires > now).collect()
    }

    /// The `used` event for grant `id`, when the engine's decision names it.
    pub fn used(&self, id: &str) -> Option<GrantEvent> {
        self.grants.iter().find(|g| g.id == id).map(|g| GrantEvent {
            event: GrantEventKind::Used,
            grant: g.clone(),
        })
    }

    /// When the next grant expires.
    pub fn next_expiry(&self) -> Option<DateTime<Utc>> {
        self.grants.iter().map(|g| g.expires).min()
    }

    pub fn max_duration(&self) -> Duration {
        self.max
    }

    /// The grants file refused at open, if it was.
    pub fn file_rejection(&self) -> Option<&FileRejection> {
        self.rejection.as_ref()
    }

    fn save(&self) -> Result<(), GrantError> {
        let body = serde_json::to_vec_pretty(&seal::seal(self.grants.clone(), &*self.signer))
            .expect("invariant: grants always serialize");
        replace_file(&self.path, &body)
    }
}

/// Moves a refused grants file to `<path>.rejected-<unix time>` (a free
/// name), where nothing reads it but an investigator, and says so.
fn set_aside(
    path: &Path,
    fault: &SealFault,
    now: DateTime<Utc>,
) -> Result<FileRejection, GrantError> {
    let base = format!("{}.rejected-{}", path.display(), now.timestamp());
    let mut to = PathBuf::from(&base);
    let mut n = 1;
    while to.exists() {
        to = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    // Never left in place: the next save would overwrite the evidence.
    fs::rename(path, &to).map_err(io("move aside the refused grants file", path))?;
    let rejection = FileRejection {
        path: path.display().to_string(),
        moved_to: to.display().to_string(),
        reason: format!("grants file refused: {fault}"),
    };
    tracing::error!(path = %rejection.path, moved_to = %rejection.moved_to,
        "{}; no grant from it is used", rejection.reason);
    Ok(rejection)
}

/// `g-YYYYMMDD-` and 8 random hex digits: sortable by day, unique enough
/// to name in a ticket, and never reused after a grant expires.
fn new_id(now: DateTime<Utc>, path: &Path) -> Result<String, GrantError> {
    let mut b = [0u8; 4];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io("read /dev/urandom for a grant id of", path))?;
    Ok(format!(
        "g-{}-{:08x}",
        now.format("%Y%m%d"),
        u32::from_be_bytes(b)
    ))
}

impl GrantLookup for GrantStore {
    /// A full grant when one covers the target, else a read-only one.
    fn active_for(&self, user: &str, target: Option<&Target>) -> Option<&Grant> {
        let now = self.clock.now();
        let mut active = self
            .grants
            .iter()
            .filter(|g| g.user == user && g.expires > now && g.covers(target));
        let first = active.next()?;
        if first.mode == AccessMode::Full {
            return Some(first);
        }
        Some(active.find(|g| g.mode == AccessMode::Full).unwrap_or(first))
    }
}

#[cfg(test)]
mod tests;
