//! cgroup id (as the kernel reports it: the cgroup v2 directory's inode) ->
//! cgroup path -> systemd unit and container id. Paths are cached; an
//! unknown id triggers a rescan of the cgroup tree, at most once per
//! second, so a storm of new cgroups cannot turn into a storm of scans.

use std::{
    collections::HashMap,
    fs,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

pub struct CgroupResolver {
    root: PathBuf,
    paths: HashMap<u64, String>,
    last_scan: Option<Instant>,
    min_rescan: Duration,
}

impl CgroupResolver {
    pub fn new(root: &Path) -> Self {
        let mut r = Self {
            root: root.to_path_buf(),
            paths: HashMap::new(),
            last_scan: None,
            min_rescan: Duration::from_secs(1),
        };
        r.scan();
        r
    }

    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        let mut paths = HashMap::new();
        let mut stack = vec![self.root.clone()];
        // Stay on the cgroup2 filesystem: on hybrid hosts v1 hierarchies are
        // mounted beside it, with colliding inode numbers.
        let dev = fs::metadata(&self.root).map(|m| m.dev()).ok();
        // Bounded walk: cgroup trees are shallow; this guards against loops.
        let mut budget = 100_000usize;
        while let Some(dir) = stack.pop() {
            let Ok(meta) = fs::metadata(&dir) else {
                continue;
            };
            if Some(meta.dev()) != dev {
                continue;
            }
            let rel = dir
                .strip_prefix(&self.root)
                .map(|p| format!("/{}", p.display()))
                .unwrap_or_default();
            paths.insert(meta.ino(), if rel == "/" { "/".to_owned() } else { rel });
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                if budget == 0 {
                    break;
                }
                budget -= 1;
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        self.paths = paths;
    }

    /// Ids of the cgroups whose last path component is `name`, after a fresh
    /// scan (a unit's cgroup appears when the unit starts).
    pub fn ids_named(&mut self, name: &str) -> Vec<u64> {
        self.scan();
        let suffix = format!("/{name}");
        let mut ids: Vec<u64> = self
            .paths
            .iter()
            .filter(|(_, p)| p.ends_with(&suffix))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Path of cgroup `id` relative to the cgroup2 root, e.g.
    /// `/system.slice/ssh.service`.
    pub fn path(&mut self, id: u64) -> Option<&str> {
        if !self.paths.contains_key(&id)
            && self
                .last_scan
                .is_none_or(|t| t.elapsed() >= self.min_rescan)
        {
            self.scan();
        }
        self.paths.get(&id).map(String::as_str)
    }
}

/// Mount point of the cgroup v2 hierarchy, from `/proc/self/mountinfo`
/// text: `/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on
/// hybrid ones.
pub fn cgroup2_root(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // ... mount-point ... - fstype source options
        let (pre, post) = line.split_once(" - ")?;
        if post.split_ascii_whitespace().next()? != "cgroup2" {
            return None;
        }
        pre.split_ascii_whitespace().nth(4).map(PathBuf::from)
    })
}

/// Mount points of the cgroup v1 hierarchies, from `/proc/self/mountinfo`
/// text (none on unified hosts).
pub fn cgroup1_roots(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            if post.split_ascii_whitespace().next()? != "cgroup" {
                return None;
            }
            pre.split_ascii_whitespace().nth(4).map(PathBuf::from)
        })
        .collect()
}

/// Whether reading `/proc/<pid>/cgroup` can tell more than the v2 tree:
/// true when a v1 hierarchy holds a unit or container cgroup. On unified
/// hosts there is none, and on hybrid hosts without systemd units or
/// containers every such read would find nothing (it was a tenth of the
/// agent's CPU per exec record). Checked at most every 10 s.
pub struct V1Probe {
    roots: Vec<PathBuf>,
    useful: bool,
    checked: Option<Instant>,
}

impl V1Probe {
    pub fn new(roots: Vec<PathBuf>) -> Self {
        Self {
            roots,
            useful: false,
            checked: None,
        }
    }

    pub fn useful(&mut self) -> bool {
        if self.roots.is_empty() {
            return false;
        }
        if self
            .checked
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.checked = Some(Instant::now());
            self.useful = self.roots.iter().any(|r| holds_unit_or_container(r));
        }
        self.useful
    }
}

fn holds_unit_or_container(root: &Path) -> bool {
    let mut stack = vec![root.to_path_buf()];
    let mut budget = 100_000usize;
    while let Some(dir) = stack.pop() {
        let Ok(rd) = fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            if budget == 0 {
                return false;
            }
            budget -= 1;
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = e.file_name();
            let name = name.to_string_lossy();
            if unit_of(&name).is_some() || container_of(&name).is_some() {
                return true;
            }
            stack.push(e.path());
        }
    }
    false
}

/// Unit and container from `/proc/<pid>/cgroup` text, any hierarchy: the
/// fallback on hybrid hosts whose v2 tree holds nothing.
pub fn from_proc_cgroup(text: &str) -> (Option<String>, Option<String>) {
    let mut unit = None;
    let mut container = None;
    for line in text.lines() {
        let Some(path) = line.splitn(3, ':').nth(2) else {
            continue;
        };
        if unit.is_none() {
            unit = unit_of(path).map(str::to_owned);
        }
        if container.is_none() {
            container = container_of(path).map(str::to_owned);
        }
    }
    (unit, container)
}

/// The systemd unit a cgroup path belongs to: the innermost `.service` or
/// `.scope` component (e.g. `ssh.service`, `session-3.scope`).
pub fn unit_of(path: &str) -> Option<&str> {
    path.rsplit('/')
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A container id (64 hex digits) from the runtimes' cgroup naming schemes:
/// `docker-<id>.scope`, `cri-containerd-<id>.scope`, `crio-<id>.scope`,
/// `libpod-<id>.scope`, or a bare `/docker/<id>` / `kubepods/.../<id>`.
pub fn container_of(path: &str) -> Option<&str> {
    for comp in path.rsplit('/') {
        let core = comp.strip_suffix(".scope").unwrap_or(comp);
        let id = core.rsplit(['-', ':']).next().unwrap_or(core);
        if is_container_id(id) {
            return Some(id);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn units() {
        assert_eq!(unit_of("/system.slice/ssh.service"), Some("ssh.service"));
        assert_eq!(
            unit_of("/user.slice/user-1000.slice/session-3.scope"),
            Some("session-3.scope")
        );
        assert_eq!(unit_of("/"), None);
        assert_eq!(
            unit_of("/system.slice/docker.service/x"),
            Some("docker.service")
        );
    }

    #[test]
    fn containers() {
        assert_eq!(
            container_of(&format!("/system.slice/docker-{ID}.scope")),
            Some(ID)
        );
        assert_eq!(
            container_of(&format!(
                "/kubepods.slice/kubepods-pod1.slice/cri-containerd-{ID}.scope"
            )),
            Some(ID)
        );
        assert_eq!(
            container_of(&format!("/machine.slice/libpod-{ID}.scope")),
            Some(ID)
        );
        assert_eq!(container_of(&format!("/docker/{ID}")), Some(ID));
        assert_eq!(container_of("/system.slice/ssh.service"), None);
        assert_eq!(container_of(&format!("/x/{}", &ID[..63])), None);
    }

    #[test]
    fn finds_the_cgroup2_mount_in_unified_and_hybrid_layouts() {
        let unified = "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_root(unified), Some(PathBuf::from("/sys/fs/cgroup")));
        let hybrid = "25 24 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
                      26 25 0:23 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                      27 25 0:24 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(
            cgroup2_root(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(cgroup2_root("1 2 0:3 / /proc rw - proc proc rw\n"), None);
    }

    #[test]
    fn proc_cgroup_fallback_finds_unit_and_container() {
        let text = format!("9:name=systemd:/system.slice/docker-{ID}.scope\n0::/\n");
        assert_eq!(
            from_proc_cgroup(&text),
            (Some(format!("docker-{ID}.scope")), Some(ID.to_owned()))
        );
        assert_eq!(from_proc_cgroup("0::/\n"), (None, None));
    }

    #[test]
    fn resolves_our_own_cgroup_on_this_host() {
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let Some(root) = cgroup2_root(&mounts) else {
            eprintln!("skipping: no cgroup v2 on this host");
            return;
        };
        let own = fs::read_to_string("/proc/self/cgroup").unwrap();
        let rel = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        let ino = fs::metadata(root.join(rel.trim_start_matches('/')))
            .unwrap()
            .ino();
        let mut r = CgroupResolver::new(&root);
        assert_eq!(r.path(ino), Some(rel));
        assert_eq!(r.path(u64::MAX - 7), None);
    }

    #[test]
    fn the_proc_fallback_is_used_only_where_a_v1_tree_can_answer() {
        let hybrid = "30 23 0:26 / /sys/fs/cgroup/unified rw shared:9 - cgroup2 cgroup2 rw\n\
                      31 23 0:27 / /sys/fs/cgroup/systemd rw shared:10 - cgroup cgroup rw,name=systemd\n";
        assert_eq!(
            cgroup1_roots(hybrid),
            [PathBuf::from("/sys/fs/cgroup/systemd")]
        );
        let unified = "30 23 0:26 / /sys/fs/cgroup rw shared:9 - cgroup2 cgroup2 rw\n";
        assert!(cgroup1_roots(unified).is_empty());
        assert!(!V1Probe::new(Vec::new()).useful());

        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("systemd");
        fs::create_dir_all(root.join("user.slice/other")).unwrap();
        let mut probe = V1Probe::new(vec![root.clone()]);
        assert!(!probe.useful(), "no unit or container cgroup in the tree");
        fs::create_dir_all(root.join("system.slice/ssh.service")).unwrap();
        let mut probe = V1Probe::new(vec![root]);
        assert!(probe.useful());
    }
}
