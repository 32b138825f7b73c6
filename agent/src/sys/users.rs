//! uid/gid -> names from the host's passwd and group files, cached and
//! re-read when a file changes (checked at most once per `recheck`). A
//! missing or unreadable file leaves names unknown, never stops the agent.
//! Users the files do not list (DynamicUser, LDAP, SSSD, extrausers) are
//! resolved through NSS by [`super::nss`], off the enricher's thread.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime},
};

#[derive(Debug, Default)]
struct Db {
    users: HashMap<u32, String>,
    /// user name -> primary gid
    primary: HashMap<String, u32>,
    groups: HashMap<u32, String>,
    /// user name -> supplementary group names
    member_of: HashMap<String, Vec<String>>,
    /// user name -> uid
    by_name: HashMap<String, u32>,
}

pub struct UserDb {
    passwd: PathBuf,
    group: PathBuf,
    stamp: (Option<SystemTime>, Option<SystemTime>),
    last_check: Option<Instant>,
    recheck: Duration,
    db: Db,
}

fn mtime(p: &Path) -> Option<SystemTime> {
    fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// Parses passwd lines `name:x:uid:gid:...`.
fn parse_passwd(text: &str, db: &mut Db) {
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            continue;
        }
        if let (Ok(uid), Ok(gid)) = (f[2].parse::<u32>(), f[3].parse::<u32>()) {
            // First entry wins, as with getpwuid.
            db.users.entry(uid).or_insert_with(|| f[0].to_owned());
            db.primary.entry(f[0].to_owned()).or_insert(gid);
            db.by_name.entry(f[0].to_owned()).or_insert(uid);
        }
    }
}

/// Parses group lines `name:x:gid:member,member`.
fn parse_group(text: &str, db: &mut Db) {
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 4 || line.starts_with('#') {
            continue;
        }
        let Ok(gid) = f[2].parse::<u32>() else {
            continue;
        };
        db.groups.entry(gid).or_insert_with(|| f[0].to_owned());
        for m in f[3].split(',').filter(|m| !m.is_empty()) {
            db.member_of
                .entry(m.to_owned())
                .or_default()
                .push(f[0].to_owned());
        }
    }
}

impl UserDb {
    pub fn new(etc: &Path) -> Self {
        let mut db = Self {
            passwd: etc.join("passwd"),
            group: etc.join("group"),
            stamp: (None, None),
            last_check: None,
            recheck: Duration::from_secs(2),
            db: Db::default(),
        };
        db.refresh();
        db
    }

    /// Checks the files on every [`Self::refresh`], not at most every 2 s.
    #[cfg(test)]
    pub fn check_always(&mut self) {
        self.recheck = Duration::ZERO;
    }

    /// Re-reads the files if they changed since the last read: true when
    /// they were re-read.
    pub fn refresh(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last_check
            .is_some_and(|t| now.duration_since(t) < self.recheck)
        {
            return false;
        }
        self.last_check = Some(now);
        let stamp = (mtime(&self.passwd), mtime(&self.group));
        if stamp == self.stamp && self.stamp != (None, None) {
            return false;
        }
        let mut db = Db::default();
        if let Ok(t) = fs::read_to_string(&self.passwd) {
            parse_passwd(&t, &mut db);
        }
        if let Ok(t) = fs::read_to_string(&self.group) {
            parse_group(&t, &mut db);
        }
        self.db = db;
        self.stamp = stamp;
        true
    }

    pub fn user(&self, uid: u32) -> Option<&str> {
        self.db.users.get(&uid).map(String::as_str)
    }

    pub fn group(&self, gid: u32) -> Option<&str> {
        self.db.groups.get(&gid).map(String::as_str)
    }

    pub fn uid_of(&self, name: &str) -> Option<u32> {
        self.db.by_name.get(name).copied()
    }

    /// Uids of the members of group `group` (primary or supplementary).
    pub fn uids_in_group(&self, group: &str) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        for (user, uid) in &self.db.by_name {
            if self.groups_of(user).iter().any(|g| g == group) && !out.contains(uid) {
                out.push(*uid);
            }
        }
        out.sort_unstable();
        out
    }

    /// Primary and supplementary group names of `user`.
    pub fn groups_of(&self, user: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(g) = self.db.primary.get(user).and_then(|g| self.group(*g)) {
            out.push(g.to_owned());
        }
        if let Some(extra) = self.db.member_of.get(user) {
            for g in extra {
                if !out.contains(g) {
                    out.push(g.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(passwd: &str, group: &str) -> tempdir::Dir {
        let d = tempdir::Dir::new();
        fs::write(d.path().join("passwd"), passwd).unwrap();
        fs::write(d.path().join("group"), group).unwrap();
        d
    }

    mod tempdir {
        use std::path::{Path, PathBuf};

        pub(super) struct Dir(PathBuf);
        impl Dir {
            pub(super) fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "debugmon-users-{}-{:?}",
                    std::process::id(),
                    std::thread::current().id()
                ));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).unwrap();
                Self(p)
            }
            pub(super) fn path(&self) -> &Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn names_and_groups() {
        let d = dir(
            "root:x:0:0:root:/root:/bin/bash\n#c\nalice:x:1001:1001::/home/alice:/bin/sh\nbad line\n",
            "root:x:0:\nalice:x:1001:\nsre:x:2000:alice,bob\n",
        );
        let db = UserDb::new(d.path());
        assert_eq!(db.user(0), Some("root"));
        assert_eq!(db.user(1001), Some("alice"));
        assert_eq!(db.user(5), None);
        assert_eq!(db.group(2000), Some("sre"));
        assert_eq!(
            db.groups_of("alice"),
            vec!["alice".to_owned(), "sre".to_owned()]
        );
        assert!(db.groups_of("nobody-here").is_empty());
        assert_eq!(db.uid_of("alice"), Some(1001));
        assert_eq!(db.uids_in_group("sre"), vec![1001]);
        assert_eq!(db.uids_in_group("root"), vec![0]);
    }

    #[test]
    fn missing_files_mean_unknown_names() {
        let db = UserDb::new(Path::new("/nonexistent-debugmon-etc"));
        assert_eq!(db.user(0), None);
    }

    #[test]
    fn a_changed_file_is_reread() {
        let d = dir("root:x:0:0::/:/bin/sh\n", "root:x:0:\n");
        let mut db = UserDb::new(d.path());
        db.recheck = Duration::ZERO;
        assert_eq!(db.user(1002), None);
        fs::write(
            d.path().join("passwd"),
            "root:x:0:0::/:/bin/sh\ncarol:x:1002:1002::/:/bin/sh\n",
        )
        .unwrap();
        // Set the mtime explicitly: coarse filesystem clocks could leave it unchanged.
        let f = fs::File::options()
            .write(true)
            .open(d.path().join("passwd"))
            .unwrap();
        f.set_modified(SystemTime::now() + Duration::from_secs(5))
            .unwrap();
        db.refresh();
        assert_eq!(db.user(1002), Some("carol"));
    }
}
