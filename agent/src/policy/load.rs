//! Loading policy files: the `*.yaml` files of the policy directories,
//! overlaid by file name (a file in a later directory replaces the one of
//! the same name in an earlier one, as the site's
//! `/etc/debugmon/policies.d/` does for the shipped
//! `/usr/share/debugmon/policies/`), loaded in file-name order, all parsed
//! and checked before anything is used, every problem reported with its
//! `file:line:column`. Also the content hash `status` shows and the
//! polling watcher behind hot reload.

use std::{
    collections::BTreeMap,
    ffi::OsString,
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

/// Where the shipped policies and the site's drop-ins live, in overlay
/// order: the package's files first, the site's replace them by name.
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

/// The files `paths` name, overlaid by file name: a directory stands for its
/// `*.yaml` files, a file for itself, and a later path's file replaces an
/// earlier one of the same name. The result is in file-name order, so a
/// replacement keeps the replaced file's place in the load order.
/// Unreadable directories become diagnostics.
pub fn overlay(paths: &[PathBuf], diags: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let mut by_name: BTreeMap<OsString, PathBuf> = BTreeMap::new();
    let mut add = |p: PathBuf| {
        // A path without a file name (`/`, `..`) cannot be a policy file;
        // it stays under its full text so reading it reports the problem.
        let name = p
            .file_name()
            .map_or_else(|| p.as_os_str().to_owned(), ToOwned::to_owned);
        by_name.insert(name, p);
    };
    for p in paths {
        if p.is_dir() {
            match yaml_files(p) {
                Ok(f) => f.into_iter().for_each(&mut add),
                Err(d) => diags.push(d),
            }
        } else {
            // A missing file stays in: reading it reports it.
            add(p.clone());
        }
    }
    by_name.into_values().collect()
}

/// [`overlay`] of directories only: a missing one holds no files (the
/// site's drop-in directory is optional); a plain file given as a policy
/// directory is an error, not a policy.
fn overlay_dirs(dirs: &[PathBuf], diags: &mut Vec<Diagnostic>) -> Vec<PathBuf> {
    let mut real = Vec::with_capacity(dirs.len());
    for d in dirs {
        if d.is_dir() {
            real.push(d.clone());
        } else if d.exists() {
            diags.push(Diagnostic::new(d, None, "is not a directory"));
        }
    }
    overlay(&real, diags)
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
    let files = overlay(paths, &mut diags);
    load(&files, diags).err().unwrap_or_default()
}

impl PolicySet {
    /// Loads the `*.yaml` files of `dirs` as one set, overlaid by file name
    /// (see [`overlay`]). Missing directories are skipped.
    pub fn load_dirs(dirs: &[PathBuf]) -> Result<PolicySet, Vec<Diagnostic>> {
        let mut diags = Vec::new();
        let files = overlay_dirs(dirs, &mut diags);
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

    /// Watches `dirs` instead; the next poll compares against the set in use.
    pub fn set_dirs(&mut self, dirs: Vec<PathBuf>) {
        self.dirs = dirs;
    }

    /// The watched directories.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// `None` when nothing changed since the last poll; otherwise the new set
    /// or the reasons it could not be loaded. On error the caller keeps its
    /// old set; the same broken content is not reported again.
    pub fn poll(&mut self) -> Option<Result<PolicySet, Vec<Diagnostic>>> {
        let (texts, diags, hash) = self.read();
        // An unreadable file drops out of the hash, so it too is a change,
        // reported once.
        if hash == self.hash {
            return None;
        }
        self.hash = hash;
        Some(compile_texts(&texts, diags))
    }

    /// Loads the set now, changed or not (SIGHUP); later polls compare
    /// against what this read, so the same content is not loaded twice.
    pub fn reload(&mut self) -> Result<PolicySet, Vec<Diagnostic>> {
        let (texts, diags, hash) = self.read();
        self.hash = hash;
        compile_texts(&texts, diags)
    }

    /// The texts of the watched files, read problems, and their hash.
    fn read(&self) -> (Vec<(PathBuf, String)>, Vec<Diagnostic>, String) {
        let mut diags = Vec::new();
        let files = overlay_dirs(&self.dirs, &mut diags);
        let texts = read_texts(&files, &mut diags);
        let hash = hash_texts(&texts);
        (texts, diags, hash)
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

    #[test]
    fn a_site_file_replaces_the_shipped_file_of_the_same_name() {
        let shipped = tempfile::tempdir().unwrap();
        let site = tempfile::tempdir().unwrap();
        let rule = |name: &str, action: &str| {
            format!("rules:\n  - {{ name: {name}, on: [exec], action: {action} }}\n")
        };
        fs::write(shipped.path().join("20-a.yaml"), rule("a", "deny")).unwrap();
        fs::write(shipped.path().join("30-b.yaml"), rule("b", "alert")).unwrap();
        // Same name: replaces the shipped rule `a` (no duplicate-name error).
        fs::write(site.path().join("20-a.yaml"), rule("a", "alert")).unwrap();
        // New name: added, and sorted between the shipped files.
        fs::write(site.path().join("25-site.yaml"), rule("s", "alert")).unwrap();
        let dirs = vec![
            shipped.path().to_owned(),
            site.path().to_owned(),
            site.path().join("missing.d"),
        ];
        let set = PolicySet::load_dirs(&dirs).unwrap();
        assert_eq!(
            set.files(),
            [
                site.path().join("20-a.yaml"),
                site.path().join("25-site.yaml"),
                shipped.path().join("30-b.yaml"),
            ]
        );
        assert_eq!(set.rule_count(), 3);
        // `policy check` of the same directories sees the same set.
        assert!(check_paths(&dirs[..2]).is_empty());

        // An empty site file switches a shipped file off.
        fs::write(site.path().join("30-b.yaml"), "").unwrap();
        let set = PolicySet::load_dirs(&dirs).unwrap();
        assert_eq!(set.rule_count(), 2);
        assert_eq!(set.files()[2], site.path().join("30-b.yaml"));

        // Directories in the other order: the shipped files win.
        let set =
            PolicySet::load_dirs(&[site.path().to_owned(), shipped.path().to_owned()]).unwrap();
        assert_eq!(set.files()[0], shipped.path().join("20-a.yaml"));
        assert_eq!(set.rule_count(), 3);
    }

    #[test]
    fn a_file_given_as_a_policy_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.yaml");
        fs::write(&f, RULE).unwrap();
        let errs = PolicySet::load_dirs(std::slice::from_ref(&f)).unwrap_err();
        assert!(
            errs[0].to_string().contains("is not a directory"),
            "{}",
            errs[0]
        );
    }
}
