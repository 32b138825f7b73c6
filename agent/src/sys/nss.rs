//! uid -> user name and groups through the host's name service switch
//! (NSS: `getpwuid_r`, `getgrouplist`, `getgrgid_r`), for users the
//! passwd and group files do not list: systemd's `DynamicUser=`, LDAP,
//! SSSD, `libnss-extrausers`. An NSS lookup can block for as long as a
//! directory server takes, so it never runs on the caller's thread: the
//! caller reads a cache and, on a miss, queues the uid for a resolver
//! thread (bounded queue; a full queue is a counted drop, retried at the
//! next miss). Until a name is resolved records carry the numeric id only;
//! events after the resolution carry the name. Answers are cached with a
//! TTL: found users for [`POSITIVE_TTL`], unknown ones for
//! [`NEGATIVE_TTL`]; an expired found entry keeps serving its name while
//! it is looked up again.

use std::{
    collections::{HashMap, HashSet},
    ffi::{CStr, CString},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering::Relaxed},
        mpsc::{Receiver, SyncSender, TrySendError, sync_channel},
    },
    time::{Duration, Instant},
};

/// How long a resolved name is used before it is looked up again.
pub const POSITIVE_TTL: Duration = Duration::from_secs(300);
/// How long "no such user" is believed (a new user shows up after this).
pub const NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Uids waiting for the resolver thread.
const QUEUE: usize = 256;

/// A user as NSS knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NssUser {
    pub name: String,
    /// Primary and supplementary group names.
    pub groups: Vec<String>,
}

#[derive(Debug)]
struct Entry {
    user: Option<NssUser>,
    at: Instant,
}

#[derive(Debug, Default)]
struct Shared {
    cache: Mutex<HashMap<u32, Entry>>,
    /// Uids queued or being resolved: one request per uid at a time.
    pending: Mutex<HashSet<u32>>,
    /// Misses that could not be queued (queue full or thread gone).
    dropped: AtomicU64,
    resolved: AtomicU64,
}

/// The cache the enricher reads, and the queue to the resolver thread.
#[derive(Debug, Clone)]
pub struct NssResolver {
    shared: Arc<Shared>,
    tx: SyncSender<u32>,
}

/// Why a lookup failed (other than "no such user").
type Lookup<T> = Result<Option<T>, std::io::Error>;

/// Runs a `get*_r` call with a growing buffer until it fits.
fn with_buffer<T>(mut call: impl FnMut(&mut [u8]) -> (libc::c_int, Option<T>)) -> Lookup<T> {
    let mut buf = vec![0u8; 1024];
    loop {
        let (rc, out) = call(&mut buf);
        match rc {
            0 => return Ok(out),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            // ENOENT, ESRCH and friends mean "not found" for some modules.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => return Err(std::io::Error::from_raw_os_error(e)),
        }
    }
}

/// `getpwuid_r`: name and primary gid.
fn passwd(uid: u32) -> Lookup<(String, u32)> {
    with_buffer(|buf| {
        // SAFETY: an all-zero passwd is a valid value for an out-parameter.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut res: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf outlives it.
        let rc = unsafe {
            libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut res)
        };
        if rc != 0 || res.is_null() || pwd.pw_name.is_null() {
            return (rc, None);
        }
        // SAFETY: pw_name points into buf, NUL-terminated by libc.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned();
        (0, Some((name, pwd.pw_gid)))
    })
}

/// `getgrgid_r`: a group's name.
fn group_name(gid: u32) -> Lookup<String> {
    with_buffer(|buf| {
        // SAFETY: an all-zero group is a valid value for an out-parameter.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut res: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; buf outlives it.
        let rc = unsafe {
            libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr().cast(), buf.len(), &mut res)
        };
        if rc != 0 || res.is_null() || grp.gr_name.is_null() {
            return (rc, None);
        }
        // SAFETY: gr_name points into buf, NUL-terminated by libc.
        let name = unsafe { CStr::from_ptr(grp.gr_name) }
            .to_string_lossy()
            .into_owned();
        (0, Some(name))
    })
}

/// `getgrouplist`: the gids of `name`, its primary `gid` first.
fn group_ids(name: &str, gid: u32) -> Vec<u32> {
    let Ok(cname) = CString::new(name) else {
        return vec![gid];
    };
    let mut n: libc::c_int = 32;
    loop {
        let mut gids = vec![0 as libc::gid_t; usize::try_from(n).unwrap_or(32)];
        let mut count = n;
        // SAFETY: gids has room for `count` entries; getgrouplist writes at
        // most that many and sets count to the number it needs.
        let rc = unsafe { libc::getgrouplist(cname.as_ptr(), gid, gids.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            gids.truncate(usize::try_from(count).unwrap_or(0));
            return gids;
        }
        if count <= n || count > 65_536 {
            return vec![gid];
        }
        n = count;
    }
}

/// The whole lookup for one uid, as the resolver thread does it.
pub fn lookup(uid: u32) -> Lookup<NssUser> {
    let Some((name, gid)) = passwd(uid)? else {
        return Ok(None);
    };
    let mut groups = Vec::new();
    for g in group_ids(&name, gid) {
        if let Ok(Some(n)) = group_name(g)
            && !groups.contains(&n)
        {
            groups.push(n);
        }
    }
    Ok(Some(NssUser { name, groups }))
}

impl NssResolver {
    /// Starts the resolver thread; `None` if the thread cannot be made
    /// (names then come from the files only).
    pub fn start() -> Option<Self> {
        Self::start_with(lookup)
    }

    /// Same, with another lookup (tests).
    pub fn start_with(resolve: fn(u32) -> Lookup<NssUser>) -> Option<Self> {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = sync_channel(QUEUE);
        let s = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("debugmon-nss".into())
            .spawn(move || serve(&s, &rx, resolve))
            .map_err(|e| tracing::warn!(error = %e, "no NSS resolver thread: names from /etc only"))
            .ok()?;
        Some(Self { shared, tx })
    }

    /// The cached user for `uid`, never blocking on NSS. A miss, or an
    /// expired entry, queues a lookup; a stale name is served meanwhile.
    pub fn user(&self, uid: u32) -> Option<NssUser> {
        let now = Instant::now();
        let (found, fresh) = {
            let cache = self
                .shared
                .cache
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match cache.get(&uid) {
                Some(e) => {
                    let ttl = if e.user.is_some() {
                        POSITIVE_TTL
                    } else {
                        NEGATIVE_TTL
                    };
                    (e.user.clone(), now.duration_since(e.at) < ttl)
                }
                None => (None, false),
            }
        };
        if !fresh {
            self.request(uid);
        }
        found
    }

    fn request(&self, uid: u32) {
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if pending.contains(&uid) {
            return;
        }
        match self.tx.try_send(uid) {
            Ok(()) => {
                pending.insert(uid);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.dropped.fetch_add(1, Relaxed);
            }
        }
    }

    /// Misses that could not be queued (the queue was full).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Relaxed)
    }

    /// Lookups the resolver thread has finished.
    pub fn resolved(&self) -> u64 {
        self.shared.resolved.load(Relaxed)
    }
}

fn serve(s: &Shared, rx: &Receiver<u32>, resolve: fn(u32) -> Lookup<NssUser>) {
    while let Ok(uid) = rx.recv() {
        let user = match resolve(uid) {
            Ok(u) => Some(u),
            Err(e) => {
                // A directory server that is down is not "no such user":
                // keep what was known and try again at the next miss.
                tracing::debug!(uid, error = %e, "NSS lookup failed");
                None
            }
        };
        if let Some(user) = user {
            let mut cache = s.cache.lock().unwrap_or_else(PoisonError::into_inner);
            cache.insert(
                uid,
                Entry {
                    user,
                    at: Instant::now(),
                },
            );
        }
        s.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&uid);
        s.resolved.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_resolved(r: &NssResolver, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.resolved() < n {
            assert!(
                Instant::now() < deadline,
                "the resolver thread never answered"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn fake(uid: u32) -> Lookup<NssUser> {
        match uid {
            7 => Ok(Some(NssUser {
                name: "dyn-7".into(),
                groups: vec!["dyn".into()],
            })),
            9 => Err(std::io::Error::from_raw_os_error(libc::ETIMEDOUT)),
            _ => Ok(None),
        }
    }

    #[test]
    fn a_miss_queues_and_a_later_call_has_the_name() {
        let r = NssResolver::start_with(fake).unwrap();
        assert_eq!(r.user(7), None, "the first call never waits");
        wait_resolved(&r, 1);
        let u = r.user(7).unwrap();
        assert_eq!(u.name, "dyn-7");
        assert_eq!(u.groups, vec!["dyn".to_owned()]);
        // Cached: no second lookup.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(r.resolved(), 1);
    }

    #[test]
    fn unknown_users_are_cached_and_failures_are_not() {
        let r = NssResolver::start_with(fake).unwrap();
        assert_eq!(r.user(5), None);
        wait_resolved(&r, 1);
        assert_eq!(r.user(5), None);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(r.resolved(), 1, "the negative answer is cached");
        assert_eq!(r.user(9), None);
        wait_resolved(&r, 2);
        assert_eq!(r.user(9), None);
        wait_resolved(&r, 3);
        assert_eq!(r.resolved(), 3, "a failed lookup is tried again");
    }

    #[test]
    fn the_real_nss_knows_root_and_not_a_free_uid() {
        let root = lookup(0).unwrap().unwrap();
        assert_eq!(root.name, "root");
        assert!(root.groups.contains(&"root".to_owned()), "{root:?}");
        assert_eq!(lookup(3_999_999_999).unwrap(), None);
    }
}
