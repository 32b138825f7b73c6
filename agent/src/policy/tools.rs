//! `process_tools:`: the host's own process tools (ps, top, pgrep, ...)
//! by the absolute path of their executable. Their reads of another
//! process's environment are inventory, not theft: the event falls in its
//! own class ([`crate::policy::EventClass::InventoryRead`], trigger
//! `inventory_read`), which rules on `mem_read` do not match. A process
//! is a tool only by the file the kernel ran (`actor.exe_trusted`), never
//! by a name: a bare file name or a relative pattern is refused, since
//! anyone can give a copy that name.

use globset::{Glob, GlobSet, GlobSetBuilder};

/// The compiled list.
#[derive(Debug, Clone)]
pub(crate) struct ProcessTools {
    patterns: Vec<String>,
    set: GlobSet,
}

impl Default for ProcessTools {
    fn default() -> Self {
        Self {
            patterns: Vec::new(),
            set: GlobSet::empty(),
        }
    }
}

/// One pattern, checked: absolute, and a valid glob whose `*` stays
/// within one directory.
pub(crate) fn check(pattern: &str) -> Result<Glob, String> {
    if !pattern.starts_with('/') {
        return Err(format!(
            "process tool `{pattern}` must be an absolute path: a file name alone can be \
             given to any copy"
        ));
    }
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| format!("bad glob `{pattern}`: {}", e.kind()))
}

impl ProcessTools {
    /// Builds from patterns already [`check`]ed.
    pub(crate) fn build(patterns: Vec<String>) -> Self {
        let mut b = GlobSetBuilder::new();
        for p in &patterns {
            if let Ok(g) = check(p) {
                b.add(g);
            }
        }
        Self {
            set: b.build().unwrap_or_else(|_| GlobSet::empty()),
            patterns,
        }
    }

    pub(crate) fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `exe` (a real path the kernel's view of the file confirmed)
    /// is a listed tool.
    pub(crate) fn matches(&self, exe: &str) -> bool {
        self.set.is_match(exe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_globs_only_and_star_stays_in_its_directory() {
        assert!(check("ps").is_err());
        assert!(check("bin/ps").is_err());
        assert!(check("/usr/bin/[").is_err());
        let t = ProcessTools::build(vec!["/usr/bin/ps".into(), "/usr/lib/procps/*".into()]);
        assert!(t.matches("/usr/bin/ps"));
        assert!(!t.matches("/tmp/ps"));
        assert!(t.matches("/usr/lib/procps/top"));
        assert!(!t.matches("/usr/lib/procps/x/top"));
    }
}
