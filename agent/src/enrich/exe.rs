//! Which program an actor runs, in terms nobody can fake: the path it was
//! started by is only trusted when, seen from the host, that path leads to
//! the very file the kernel runs (same inode and device), and the record
//! then gives the path without symlinks; a policy exemption by executable
//! further needs that file to be root's and writable by nobody else, so
//! that only root could have put it there. A copy named `gdb` in `/tmp`, a
//! bind mount over `/usr/bin/debugmon` in a private mount namespace, or a
//! user-writable binary at an allowed path, all come out untrusted.

use std::{
    collections::HashMap,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use crate::event::ExeFile;

/// Distinct (path, file) pairs remembered; past it the cache starts over.
const CACHE_MAX: usize = 4096;

/// What the record says of an actor's program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExeView {
    /// The path without symlinks when it is the kernel's file, else the
    /// path as given (rendered by the caller).
    pub real: Option<Vec<u8>>,
    /// The path is the kernel's file, root's and writable only by root.
    pub trusted: bool,
}

#[derive(Default)]
pub struct ExeResolver {
    cache: HashMap<(Vec<u8>, u64, u32), ExeView>,
}

impl ExeResolver {
    /// The view of program `path` (as exec'd; relative paths against `cwd`)
    /// that the kernel says is `file`.
    pub fn view(&mut self, path: &[u8], cwd: Option<&[u8]>, file: ExeFile) -> ExeView {
        if file.ino == 0 || path.is_empty() {
            return ExeView {
                real: None,
                trusted: false,
            };
        }
        let key = (path.to_vec(), file.ino, file.dev);
        if let Some(v) = self.cache.get(&key) {
            return v.clone();
        }
        let v = resolve(path, cwd, file);
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(key, v.clone());
        v
    }
}

fn resolve(path: &[u8], cwd: Option<&[u8]>, file: ExeFile) -> ExeView {
    let p = Path::new(std::ffi::OsStr::from_bytes(path));
    let abs: PathBuf = if p.is_absolute() {
        p.to_path_buf()
    } else {
        match cwd {
            Some(c) => Path::new(std::ffi::OsStr::from_bytes(c)).join(p),
            None => {
                return ExeView {
                    real: None,
                    trusted: false,
                };
            }
        }
    };
    let same = std::fs::metadata(&abs)
        .map(|m| ExeFile::of(&m))
        .is_ok_and(|seen| seen.ino == file.ino && seen.dev == file.dev);
    if !same {
        return ExeView {
            real: None,
            trusted: false,
        };
    }
    let real = std::fs::canonicalize(&abs)
        .map(|r| r.as_os_str().as_bytes().to_vec())
        .unwrap_or_else(|_| abs.as_os_str().as_bytes().to_vec());
    ExeView {
        real: Some(real),
        trusted: file.root_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn file_of(p: &str) -> ExeFile {
        ExeFile::of(&std::fs::metadata(p).unwrap())
    }

    #[test]
    fn a_root_owned_program_is_trusted_by_its_real_path() {
        let mut r = ExeResolver::default();
        let sh = file_of("/bin/sh");
        let v = r.view(b"/bin/sh", None, sh);
        let real = std::fs::canonicalize("/bin/sh").unwrap();
        assert_eq!(v.real.as_deref(), Some(real.as_os_str().as_bytes()));
        assert!(v.trusted);
        // Relative, against the exec's cwd.
        assert!(r.view(b"sh", Some(b"/bin"), sh).trusted);
    }

    #[test]
    fn a_path_that_is_not_the_kernels_file_or_is_writable_is_not_trusted() {
        let mut r = ExeResolver::default();
        // The path names another file than the one the kernel runs (a
        // private mount, a renamed copy).
        let v = r.view(b"/bin/sh", None, file_of("/bin/true"));
        assert_eq!(v.real, None);
        assert!(!v.trusted);
        // The right file, but anyone may rewrite it.
        let dir = tempfile::tempdir().unwrap();
        let gdb = dir.path().join("gdb");
        std::fs::copy("/bin/true", &gdb).unwrap();
        std::fs::set_permissions(&gdb, std::fs::Permissions::from_mode(0o777)).unwrap();
        let v = r.view(
            gdb.as_os_str().as_bytes(),
            None,
            file_of(gdb.to_str().unwrap()),
        );
        assert!(v.real.is_some());
        assert!(!v.trusted);
        assert!(!r.view(b"sh", None, file_of("/bin/sh")).trusted, "no cwd");
    }
}
