//! Reloading the configuration on SIGHUP (`systemctl reload debugmon`):
//! the file, its drop-ins, the environment and the flags are read again
//! exactly as at start. A configuration that does not load is rejected
//! whole and the running one stays. Of a loaded one, the `[policy]`
//! section takes effect at once (the policy is then reloaded from its
//! directories); every other section that changed is named as needing a
//! restart, because it shaped what was set up at start (the ring buffer,
//! sockets, sinks, the NATS connection, the host key).

use std::path::PathBuf;

use super::{Config, ConfigError, Flag, load};
use crate::{
    runtime::{Reloaded, Reloader},
    sys::env::{ProcessEnv, Strings},
};

/// What a reload reads again, and the configuration in effect.
#[derive(Debug, Clone)]
pub struct ConfigReload {
    /// `--config`, or `None` for the default path.
    pub path: Option<PathBuf>,
    /// The flags `run` was given that set config keys.
    pub flags: Vec<Flag>,
    /// `--policies` was given: it names the directories, not the config.
    pub policy_dirs_pinned: bool,
    /// The configuration in effect (its `[policy]` as last reloaded).
    pub running: Config,
}

impl ConfigReload {
    /// Reads the configuration again. On error nothing changes.
    pub fn reload(&mut self, env: &dyn Strings) -> Result<Reloaded, ConfigError> {
        let (new, _) = load(self.path.as_deref(), env, &self.flags)?;
        let needs_restart = changed_sections(&self.running, &new)
            .into_iter()
            .filter(|s| *s != "policy")
            .collect();
        let policy_dirs = (!self.policy_dirs_pinned && new.policy != self.running.policy)
            .then(|| new.policy.dirs.clone());
        self.running.policy = new.policy;
        Ok(Reloaded {
            policy_dirs,
            needs_restart,
        })
    }
}

impl Reloader for ConfigReload {
    fn reload_config(&mut self) -> Result<Reloaded, String> {
        self.reload(&ProcessEnv).map_err(|e| e.to_string())
    }
}

/// The top-level sections that differ between `a` and `b`.
fn changed_sections(a: &Config, b: &Config) -> Vec<&'static str> {
    [
        ("agent", a.agent != b.agent),
        ("policy", a.policy != b.policy),
        ("grants", a.grants != b.grants),
        ("control", a.control != b.control),
        ("sinks", a.sinks != b.sinks),
        ("spool", a.spool != b.spool),
        ("nats", a.nats != b.nats),
        ("metrics", a.metrics != b.metrics),
        ("log", a.log != b.log),
        ("host", a.host != b.host),
        ("redact", a.redact != b.redact),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, fs};

    use super::*;

    fn setup(text: &str) -> (tempfile::TempDir, ConfigReload) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, text).unwrap();
        let (running, _) = load(Some(&path), &HashMap::<String, String>::new(), &[]).unwrap();
        let r = ConfigReload {
            path: Some(path),
            flags: Vec::new(),
            policy_dirs_pinned: false,
            running,
        };
        (dir, r)
    }

    #[test]
    fn a_changed_policy_section_applies_and_other_sections_need_a_restart() {
        let (dir, mut r) = setup("[policy]\ndirs = [\"/a\"]\n");
        let env = HashMap::<String, String>::new();
        assert_eq!(
            r.reload(&env).unwrap(),
            Reloaded {
                policy_dirs: None,
                needs_restart: Vec::new()
            }
        );
        // A drop-in changes the policy dirs and the ring size.
        let d = dir.path().join("config.d");
        fs::create_dir(&d).unwrap();
        fs::write(
            d.join("50-site.toml"),
            "[policy]\ndirs = [\"/a\", \"/b\"]\n[agent]\nring_mib = 16\n",
        )
        .unwrap();
        let got = r.reload(&env).unwrap();
        assert_eq!(
            got.policy_dirs,
            Some(vec![PathBuf::from("/a"), PathBuf::from("/b")])
        );
        assert_eq!(got.needs_restart, ["agent"]);
        // Applied once: the next reload has nothing new for the policy,
        // and still says the ring size waits for a restart.
        let again = r.reload(&env).unwrap();
        assert_eq!(again.policy_dirs, None);
        assert_eq!(again.needs_restart, ["agent"]);
    }

    #[test]
    fn a_broken_configuration_is_rejected_and_nothing_changes() {
        let (dir, mut r) = setup("[policy]\ndirs = [\"/a\"]\n");
        let before = r.running.clone();
        fs::write(
            dir.path().join("config.toml"),
            "[policy]\ndirs = [\"/b\"]\n[agent]\nring_mib = 3\n",
        )
        .unwrap();
        let e = r.reload(&HashMap::<String, String>::new()).unwrap_err();
        assert!(e.to_string().contains("agent.ring_mib"), "{e}");
        assert_eq!(r.running, before);
    }

    #[test]
    fn pinned_policy_dirs_stay() {
        let (dir, mut r) = setup("[policy]\ndirs = [\"/a\"]\n");
        r.policy_dirs_pinned = true;
        fs::write(
            dir.path().join("config.toml"),
            "[policy]\ndirs = [\"/b\"]\n",
        )
        .unwrap();
        let got = r.reload(&HashMap::<String, String>::new()).unwrap();
        assert_eq!(got.policy_dirs, None);
    }
}
