//! Grants persisted to a JSON file (default /var/lib/debugmon/grants.json),
//! rewritten atomically (temp file, fsync, rename, fsync of the directory)
//! so a crash leaves the old or the new list, never half of one. Expiry is
//! checked against an injectable [`Clock`]: a lookup never returns a grant
//! past its expiry, even before [`GrantStore::expire`] has removed it.

use std::{
    fs::{self, File, OpenOptions},
    io::{Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    AccessMode, Grant, GrantError, GrantEvent, GrantEventKind, GrantTarget, Requester,
    format_duration,
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

#[derive(Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    grants: Vec<Grant>,
}

pub struct GrantStore {
    path: PathBuf,
    grants: Vec<Grant>,
    max: Duration,
    clock: Arc<dyn Clock>,
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> GrantError {
    let path = path.display().to_string();
    move |io_error| GrantError::Io {
        what,
        path,
        io_error,
    }
}

/// Start time (clock ticks since boot) of process `pid` now.
fn process_start(pid: u32) -> Result<u64, GrantError> {
    std::fs::read(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|b| crate::process::procfs::parse_stat(&b))
        .map(|s| s.start_ticks)
        .ok_or(GrantError::NoProcess(pid))
}

impl GrantStore {
    /// Loads `path` (missing: no grants). Grants that expired while the
    /// agent was down are dropped and returned as `expired` events.
    pub fn open(
        path: impl Into<PathBuf>,
        max: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Vec<GrantEvent>), GrantError> {
        let path = path.into();
        let grants = match File::open(&path) {
            Ok(mut f) => {
                let mut text = String::new();
                f.read_to_string(&mut text).map_err(io("read", &path))?;
                let file: FileFormat =
                    serde_json::from_str(&text).map_err(|json_error| GrantError::Corrupt {
                        path: path.display().to_string(),
                        json_error,
                    })?;
                file.grants
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

    fn save(&self) -> Result<(), GrantError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        let name = self.path.file_name().map_or_else(
            || "grants.json".into(),
            |n| n.to_string_lossy().into_owned(),
        );
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let body = serde_json::to_vec_pretty(&FileFormat {
            version: 1,
            grants: self.grants.clone(),
        })
        .expect("invariant: grants always serialize");
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.write_all(&body).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &self.path).map_err(io("rename into", &self.path))?;
        // The rename is durable only once the directory entry is.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync", dir))
    }
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
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_system_clock_moves_with_boot_time_from_the_wall_time_it_started_at() {
        let (a, boot_a) = (SystemClock.now(), host::boottime_ns());
        std::thread::sleep(Duration::from_millis(20));
        let (b, boot_b) = (SystemClock.now(), host::boottime_ns());
        let moved = (b - a).num_nanoseconds().unwrap();
        let booted = i64::try_from(boot_b - boot_a).unwrap();
        // Each pair is read back to back (a preempted pair may lag a little).
        assert!((moved - booted).abs() < 100_000_000, "{moved} vs {booted}");
        // Anchored at the wall clock: on a host whose clock is not being
        // set, the two agree.
        assert!((Utc::now() - b).num_seconds().abs() < 5, "{b}");
    }

    fn clock() -> Arc<ManualClock> {
        Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap(),
        ))
    }

    fn unit(u: &str) -> Target {
        Target {
            unit: Some(u.into()),
            ..Target::default()
        }
    }

    #[test]
    fn a_grant_longer_than_the_maximum_is_rejected_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grants.json");
        let c = clock();
        let (mut s, _) = GrantStore::open(&path, DEFAULT_MAX, c.clone()).unwrap();
        let t = GrantTarget::Unit("pg.service".into());
        let ok = s
            .grant(
                "alice",
                t.clone(),
                AccessMode::Full,
                Duration::from_secs(1800),
                "INC-1",
            )
            .unwrap();
        s.grant(
            "bob",
            t,
            AccessMode::Full,
            Duration::from_secs(1800),
            "INC-2",
        )
        .unwrap();
        drop(s);
        // Someone stretches bob's grant to a day in the file.
        let text = fs::read_to_string(&path).unwrap();
        let mut file: FileFormat = serde_json::from_str(&text).unwrap();
        file.grants[1].expires = file.grants[1].created + chrono::Duration::days(1);
        fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
        let (s, ev) = GrantStore::open(&path, DEFAULT_MAX, c.clone()).unwrap();
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert_eq!(ev[0].event, GrantEventKind::Rejected);
        assert_eq!(ev[0].grant.user, "bob");
        let left: Vec<&str> = s.list().iter().map(|g| g.user.as_str()).collect();
        assert_eq!(left, ["alice"]);
        assert_eq!(s.list()[0].id, ok.grant.id);
        // And it is gone from the file: the next load finds nothing to reject.
        let (_, again) = GrantStore::open(&path, DEFAULT_MAX, c).unwrap();
        assert!(again.is_empty(), "{again:?}");
    }

    #[test]
    fn grants_persist_expire_and_never_outlive_their_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/grants.json");
        let c = clock();
        let (mut s, ev) = GrantStore::open(&path, DEFAULT_MAX, c.clone()).unwrap();
        assert!(ev.is_empty());
        let t = GrantTarget::Unit("pg.service".into());
        let created = s
            .grant(
                "alice",
                t.clone(),
                AccessMode::Full,
                Duration::from_secs(1800),
                "INC-1",
            )
            .unwrap();
        assert_eq!(created.event, GrantEventKind::Created);
        let id = created.grant.id.clone();
        assert!(id.starts_with("g-20240301-"), "{id}");
        assert_eq!(
            s.active_for("alice", Some(&unit("pg.service")))
                .map(|g| &g.id),
            Some(&id)
        );
        assert!(s.active_for("bob", Some(&unit("pg.service"))).is_none());
        assert!(s.active_for("alice", Some(&unit("other"))).is_none());
        assert_eq!(s.used(&id).unwrap().event, GrantEventKind::Used);

        // Persisted with mode 0600 and reloaded.
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (s2, ev) = GrantStore::open(&path, DEFAULT_MAX, c.clone()).unwrap();
        assert!(ev.is_empty());
        assert_eq!(s2.list().len(), 1);

        // At the expiry instant the grant is already gone from lookups,
        // before `expire` runs.
        c.advance(Duration::from_secs(1800));
        assert!(s.active_for("alice", Some(&unit("pg.service"))).is_none());
        assert!(s.list().is_empty());
        let gone = s.expire().unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].event, GrantEventKind::Expired);
        assert_eq!(gone[0].grant.id, id);
        assert!(s.expire().unwrap().is_empty());

        // A store opened after expiry drops and reports it too.
        let (s3, ev) = GrantStore::open(&path, DEFAULT_MAX, c).unwrap();
        assert!(ev.is_empty(), "already removed from the file");
        assert!(s3.list().is_empty());
    }

    #[test]
    fn expired_grants_are_dropped_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grants.json");
        let c = clock();
        let (mut s, _) = GrantStore::open(&path, DEFAULT_MAX, c.clone()).unwrap();
        s.grant(
            "alice",
            GrantTarget::Any,
            AccessMode::Full,
            Duration::from_secs(60),
            "x",
        )
        .unwrap();
        s.grant(
            "bob",
            GrantTarget::Pid(7),
            AccessMode::Full,
            Duration::from_secs(3600),
            "y",
        )
        .unwrap();
        drop(s);
        c.advance(Duration::from_secs(61));
        let (s, ev) = GrantStore::open(&path, DEFAULT_MAX, c).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].grant.user, "alice");
        assert_eq!(s.list().len(), 1);
    }

    #[test]
    fn too_long_empty_and_unknown_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = GrantStore::open(dir.path().join("g.json"), DEFAULT_MAX, clock()).unwrap();
        let e = s
            .grant(
                "alice",
                GrantTarget::Any,
                AccessMode::Full,
                Duration::from_secs(5 * 3600),
                "x",
            )
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "grant of 5h refused: longer than the maximum of 4h"
        );
        assert!(matches!(
            s.grant(
                "alice",
                GrantTarget::Any,
                AccessMode::Full,
                Duration::from_secs(60),
                " "
            ),
            Err(GrantError::Empty("reason"))
        ));
        assert!(matches!(s.revoke("nope"), Err(GrantError::UnknownGrant(_))));
        let g = s
            .grant(
                "alice",
                GrantTarget::Any,
                AccessMode::Full,
                Duration::from_secs(60),
                "x",
            )
            .unwrap();
        assert_eq!(
            s.revoke(&g.grant.id).unwrap().event,
            GrantEventKind::Revoked
        );
        assert!(s.active_for("alice", None).is_none());
    }

    #[test]
    fn corrupt_file_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.json");
        fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            GrantStore::open(&path, DEFAULT_MAX, clock()),
            Err(GrantError::Corrupt { .. })
        ));
    }
}
