//! Loading policy files: `*.yaml` of each directory in name order, all
//! parsed and checked before anything is used, every problem reported with
//! its `file:line:column`. Also the content hash `status` shows and the
//! polling watcher behind hot reload.

use std::{
    fs,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use super::{
    compile::{self, SourceFile},
    diag::Diagnostic,
    set::PolicySet,
    yaml,
};

/// Where the shipped policies and the site's drop-ins live.
pub const DEFAULT_DIRS: [&str; 2] = ["/usr/share/debugmon/policies", "/etc/debugmon/policies.d"];

/// The `*.yaml` files of `dir` in name order. A directory that does not
/// exist holds no files: the drop-in directory is optional.
fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, Diagnostic> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(Diagnostic::new(
                dir,
                None,
                format!("cannot read directory: {e}"),
            ));
        }
    };
    let mut files = Vec::new();
    for entry in rd {
        let entry =
            entry.map_err(|e| Diagnostic::new(dir, None, format!("cannot read directory: {e}")))?;
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "yaml") && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Files named by `paths`: a directory stands for its `*.yaml` files.
fn expand(paths: &[PathBuf], diags: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            match yaml_files(p) {
                Ok(f) => out.extend(f),
                Err(d) => diags.push(d),
            }
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// Reads `files`; unreadable ones become diagnostics.
fn read_texts(files: &[PathBuf], diags: &mut Vec<Diagnostic>) -> Vec<(PathBuf, String)> {
    let mut out = Vec::with_capacity(files.len());
    for path in files {
        match fs::read_to_string(path) {
            Ok(t) => out.push((path.clone(), t)),
            Err(e) => diags.push(Diagnostic::new(path, None, format!("cannot read: {e}"))),
        }
    }
    out
}

/// SHA-256 (hex) over the names and contents, length-prefixed so that
/// moving text between files changes it.
fn hash_texts(texts: &[(PathBuf, String)]) -> String {
    let mut hasher = Sha256::new();
    for (path, text) in texts {
        let name = path.as_os_str().as_encoded_bytes();
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name);
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            s.push_str(&format!("{b:02x}"));
            s
        })
}

fn compile_texts(
    texts: &[(PathBuf, String)],
    mut diags: Vec<Diagnostic>,
) -> Result<PolicySet, Vec<Diagnostic>> {
    let mut parsed = Vec::with_capacity(texts.len());
    for (path, text) in texts {
        match yaml::parse(text) {
            Ok(root) => parsed.push(SourceFile {
                path: path.clone(),
                root,
            }),
            Err(e) => diags.push(Diagnostic::new(path, Some(e.pos), e.message)),
        }
    }
    match compile::compile(&parsed, hash_texts(texts)) {
        Ok(set) if diags.is_empty() => Ok(set),
        Ok(_) => Err(diags),
        Err(more) => {
            diags.extend(more);
            Err(diags)
        }
    }
}

fn load(files: &[PathBuf], mut diags: Vec<Diagnostic>) -> Result<PolicySet, Vec<Diagnostic>> {
    let texts = read_texts(files, &mut diags);
    compile_texts(&texts, diags)
}

/// `debugmon policy check`: every problem in `paths` (files, or directories
/// standing for their `*.yaml`), checked as one set. Empty means valid.
pub fn check_paths(paths: &[PathBuf]) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let files = expand(paths, &mut diags);
    load(&files, diags).err().unwrap_or_default()
}

impl PolicySet {
    /// Loads the `*.yaml` files of `dirs` (each in name order, directories in
    /// the order given) as one set. Missing directories are skipped.
    pub fn load_dirs(dirs: &[PathBuf]) -> Result<PolicySet, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let mut files = Vec::new();
        for d in dirs {
            match yaml_files(d) {
                Ok(f) => files.extend(f),
                Err(e) => diags.push(e),
            }
        }
        load(&files, diags)
    }

    /// Loads exactly these files, in this order.
    pub fn load_files(files: &[PathBuf]) -> Result<PolicySet, Vec<Diagnostic>> {
        load(files, Vec::new())
    }

    /// Compiles policy texts given as (file name, YAML) pairs, in order;
    /// the names only label diagnostics.
    pub fn from_texts(texts: &[(&str, &str)]) -> Result<PolicySet, Vec<Diagnostic>> {
        let texts: Vec<(PathBuf, String)> = texts
            .iter()
            .map(|(n, t)| (PathBuf::from(n), (*t).to_owned()))
            .collect();
        compile_texts(&texts, Vec::new())
    }

    /// SHA-256 (hex) over the names and contents of the loaded files.
    pub fn content_hash(&self) -> &str {
        &self.hash
    }

    /// The files the set was loaded from, in load order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

/// Hot reload by polling: policy files are few and small, so hashing their
/// contents on each poll is cheap and, unlike mtimes, never misses an edit
/// made within one timestamp tick.
pub struct PolicyWatcher {
    dirs: Vec<PathBuf>,
    hash: String,
}

impl PolicyWatcher {
    /// Watches `dirs`; `current` is the hash of the set in use.
    pub fn new(dirs: Vec<PathBuf>, current: &str) -> Self {
        Self {
            dirs,
            hash: current.to_owned(),
        }
    }

    /// The watched directories.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// `None` when nothing changed since the last poll; otherwise the new set
    /// or the reasons it could not be loaded. On error the caller keeps its
    /// old set; the same broken content is not reported again.
    pub fn poll(&mut self) -> Option<Result<PolicySet, Vec<Diagnostic>>> {
        let mut diags = Vec::new();
        let mut files = Vec::new();
        for d in &self.dirs {
            match yaml_files(d) {
                Ok(f) => files.extend(f),
                Err(e) => diags.push(e),
            }
        }
        let texts = read_texts(&files, &mut diags);
        let hash = hash_texts(&texts);
        // An unreadable file drops out of the hash, so it too is a change,
        // reported once.
        if hash == self.hash {
            return None;
        }
        self.hash = hash;
        Some(compile_texts(&texts, diags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: &str = "rules:\n  - { name: r, on: [exec], action: alert }\n";

    #[test]
    fn watcher_reports_changes_once_and_errors_without_losing_the_set() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = vec![dir.path().to_owned(), dir.path().join("missing.d")];
        fs::write(dir.path().join("a.yaml"), RULE).unwrap();
        fs::write(dir.path().join("ignored.txt"), "not yaml").unwrap();
        let set = PolicySet::load_dirs(&dirs).unwrap();
        assert_eq!(set.rule_count(), 1);
        assert_eq!(set.files(), [dir.path().join("a.yaml")]);
        let mut w = PolicyWatcher::new(dirs, set.content_hash());
        assert!(w.poll().is_none(), "nothing changed");

        fs::write(dir.path().join("b.yaml"), RULE.replace("r,", "s,")).unwrap();
        let new = w.poll().unwrap().unwrap();
        assert_eq!(new.rule_count(), 2);
        assert_ne!(new.content_hash(), set.content_hash());
        assert!(w.poll().is_none());

        fs::write(dir.path().join("b.yaml"), RULE).unwrap();
        let errs = w.poll().unwrap().unwrap_err();
        assert!(
            errs[0].to_string().contains("duplicate rule name `r`"),
            "{}",
            errs[0]
        );
        assert!(
            w.poll().is_none(),
            "the same broken content is reported once"
        );

        fs::remove_file(dir.path().join("b.yaml")).unwrap();
        let back = w.poll().unwrap().unwrap();
        assert_eq!(back.content_hash(), set.content_hash());
    }

    #[test]
    fn check_paths_takes_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.yaml");
        fs::write(&f, "rules: [").unwrap();
        let by_dir = check_paths(&[dir.path().to_owned()]);
        assert_eq!(by_dir, check_paths(std::slice::from_ref(&f)));
        assert_eq!(by_dir.len(), 1);
        assert!(
            by_dir[0]
                .to_string()
                .starts_with(&format!("{}:", f.display()))
        );
        let missing = check_paths(&[dir.path().join("nope.yaml")]);
        assert!(
            missing[0].to_string().contains("cannot read"),
            "{}",
            missing[0]
        );
    }
}
