//! Working directory of the actor. An exec event carries the identity of
//! the directory the kernel had as `fs->pwd` ([`CwdId`]); its path comes
//! from `/proc/PID/cwd` of the process, or of its parent when the process is
//! already gone or has moved on, and is used only when that directory is the
//! same inode on the same device. Paths are cached per identity for
//! [`PATH_TTL`], so a storm of execs in one directory costs one lookup a
//! second, and a process that exited before the agent looked still gets
//! its cwd. The price: after a directory (or one above it) is renamed, its
//! old path can appear for up to [`PATH_TTL`]. Events without an identity
//! (accesses) read `/proc/PID/cwd` at the time, best effort.

use std::{
    collections::HashMap,
    fs,
    os::unix::{ffi::OsStrExt as _, fs::MetadataExt as _},
    path::PathBuf,
    time::{Duration, Instant},
};

use agent_common::CwdId;

/// How long a cached path is trusted.
pub const PATH_TTL: Duration = Duration::from_secs(1);
/// Distinct directories kept; the map is emptied when it fills (a host
/// with more directories in use than this pays one lookup each).
const MAX_PATHS: usize = 4096;

pub struct CwdCache {
    proc_root: PathBuf,
    paths: HashMap<CwdId, (String, Instant)>,
}

impl CwdCache {
    pub fn new(proc_root: &std::path::Path) -> Self {
        Self {
            proc_root: proc_root.to_path_buf(),
            paths: HashMap::new(),
        }
    }

    /// The cwd of process `pid` (child of `ppid`); `id` is what the kernel
    /// saw at the event, if anything.
    pub fn lookup(&mut self, pid: u32, ppid: u32, id: Option<CwdId>) -> Option<String> {
        self.lookup_at(pid, ppid, id, Instant::now())
    }

    fn lookup_at(
        &mut self,
        pid: u32,
        ppid: u32,
        id: Option<CwdId>,
        now: Instant,
    ) -> Option<String> {
        let Some(id) = id else {
            return self.read_link(pid);
        };
        if let Some((path, at)) = self.paths.get(&id)
            && now.saturating_duration_since(*at) < PATH_TTL
        {
            return Some(path.clone());
        }
        let path = [pid, ppid]
            .into_iter()
            .filter(|&p| p != 0)
            .find_map(|p| self.path_if_same(p, &id))?;
        if self.paths.len() >= MAX_PATHS {
            self.paths.clear();
        }
        self.paths.insert(id, (path.clone(), now));
        Some(path)
    }

    fn read_link(&self, pid: u32) -> Option<String> {
        fs::read_link(self.proc_root.join(pid.to_string()).join("cwd"))
            .ok()
            .map(|p| render_path(p.as_os_str().as_bytes()))
    }

    /// Path of `pid`'s cwd if it is the directory `id` names. Opening the
    /// directory first and naming the open file makes the check and the
    /// path refer to the same directory even if `pid` changes directory
    /// meanwhile.
    fn path_if_same(&self, pid: u32, id: &CwdId) -> Option<String> {
        let dir = fs::File::open(self.proc_root.join(pid.to_string()).join("cwd")).ok()?;
        let meta = dir.metadata().ok()?;
        if meta.ino() != id.ino || kernel_dev(meta.dev()) != id.dev {
            return None;
        }
        let fd = std::os::fd::AsRawFd::as_raw_fd(&dir);
        let path = fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
        Some(render_path(path.as_os_str().as_bytes()))
    }
}

fn render_path(b: &[u8]) -> String {
    crate::record::render(b).0.into_owned()
}

/// `st_dev` as the kernel's internal `dev_t` (`MAJOR << 20 | MINOR`), the
/// form `super_block.s_dev` has.
fn kernel_dev(st_dev: u64) -> u32 {
    let (major, minor) = (libc::major(st_dev), libc::minor(st_dev));
    (major << 20) | (minor & 0xf_ffff)
}

#[cfg(test)]
mod tests {
    use std::process::{Child, Command};

    use super::*;

    fn id_of(dir: &std::path::Path) -> CwdId {
        let m = fs::metadata(dir).unwrap();
        CwdId {
            mnt: 0x1000,
            dentry: m.ino() ^ 0xffff_0000,
            ino: m.ino(),
            dev: kernel_dev(m.dev()),
            _pad: 0,
        }
    }

    fn sleeper_in(dir: &std::path::Path) -> Child {
        Command::new("sleep")
            .arg("30")
            .current_dir(dir)
            .spawn()
            .unwrap()
    }

    fn gone(mut c: Child) -> u32 {
        let pid = c.id();
        c.kill().unwrap();
        c.wait().unwrap();
        pid
    }

    #[test]
    fn a_path_is_cached_per_directory_and_outlives_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let want = fs::canonicalize(dir.path()).unwrap().display().to_string();
        let mut c = CwdCache::new(std::path::Path::new("/proc"));
        let child = sleeper_in(dir.path());
        let t0 = Instant::now();
        let id = id_of(dir.path());
        assert_eq!(c.lookup_at(child.id(), 0, Some(id), t0), Some(want.clone()));
        let pid = gone(child);
        // The process is gone: only the cache can answer now.
        assert_eq!(c.lookup_at(pid, 0, Some(id), t0), Some(want.clone()));
        let other = CwdId {
            ino: id.ino + 1,
            ..id
        };
        assert_eq!(c.lookup_at(pid, 0, Some(other), t0), None);
        // After the TTL the cache no longer answers for it.
        assert_eq!(c.lookup_at(pid, 0, Some(id), t0 + PATH_TTL), None);
        // Without an identity there is nothing to cache: /proc or nothing.
        assert_eq!(c.lookup_at(pid, 0, None, t0), None);
    }

    #[test]
    fn a_process_elsewhere_than_the_kernel_saw_gives_no_path_unless_its_parent_is_there() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let mut c = CwdCache::new(std::path::Path::new("/proc"));
        let child = sleeper_in(a.path());
        let now = Instant::now();
        // The kernel saw directory b, but the process is in a now.
        assert_eq!(c.lookup_at(child.id(), 0, Some(id_of(b.path())), now), None);
        // Its parent (this test) is in our own cwd, which the identity names.
        let own = std::env::current_dir().unwrap();
        let want = fs::canonicalize(&own).unwrap().display().to_string();
        let got = c.lookup_at(child.id(), std::process::id(), Some(id_of(&own)), now);
        assert_eq!(got, Some(want));
        gone(child);
    }

    #[test]
    fn without_an_identity_the_cwd_is_read_at_the_time() {
        let mut c = CwdCache::new(std::path::Path::new("/proc"));
        let want = std::env::current_dir().unwrap().display().to_string();
        assert_eq!(c.lookup(std::process::id(), 0, None), Some(want));
        assert_eq!(c.lookup(u32::MAX - 1, 0, None), None);
    }

    #[test]
    fn kernel_dev_matches_the_kernel_encoding() {
        // 259:3 (an NVMe partition) in the kernel is 259 << 20 | 3.
        assert_eq!(kernel_dev(libc::makedev(259, 3)), (259 << 20) | 3);
        assert_eq!(kernel_dev(libc::makedev(8, 300)), (8 << 20) | 300);
    }
}
