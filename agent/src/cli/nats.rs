//! The NATS options `verify` and `tail` share: the server URL, a config
//! file whose `[nats]` section gives stream, TLS and credentials, and the
//! subject prefix.

use std::{path::PathBuf, process::ExitCode};

use super::load_config;
use crate::{
    error::error_chain,
    sink::nats::{NatsConfig, PREFIX_RULE, valid_prefix},
};

/// Where the NATS options come from.
#[derive(Debug, Default, Clone)]
pub struct NatsFlags {
    /// Server URL; overrides the config's `nats.urls`.
    pub url: Option<String>,
    /// Config file whose `[nats]` section gives stream, TLS and credentials.
    pub config: Option<PathBuf>,
    /// Overrides the config's `nats.subject_prefix`.
    pub subject_prefix: Option<String>,
}

impl NatsFlags {
    /// NATS settings: the config's `[nats]` when `--config` is given
    /// (built-in defaults otherwise), with `--nats` overriding the URLs
    /// and `--subject-prefix` the prefix.
    pub fn resolve(&self) -> Result<NatsConfig, ExitCode> {
        let mut n = match &self.config {
            Some(path) => {
                let (cfg, _) = load_config(Some(path), &[])?;
                cfg.nats_config().map_err(|e| {
                    eprintln!("debugmon: {}", error_chain(&e));
                    ExitCode::from(2)
                })?
            }
            None => NatsConfig::default(),
        };
        if let Some(u) = &self.url {
            n.urls = vec![u.clone()];
        }
        if let Some(p) = &self.subject_prefix {
            if !valid_prefix(p) {
                eprintln!("debugmon: --subject-prefix {p:?}: {PREFIX_RULE}");
                return Err(ExitCode::from(2));
            }
            n.subject_prefix.clone_from(p);
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nats_url_overrides_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[nats]\nstream = \"AUDIT\"\nurls = [\"nats://a:1\"]\n",
        )
        .unwrap();
        let n = NatsFlags {
            url: Some("nats://b:2".into()),
            config: Some(path.clone()),
            subject_prefix: None,
        }
        .resolve()
        .unwrap();
        assert_eq!(n.urls, ["nats://b:2"]);
        assert_eq!(n.stream.name, "AUDIT");
        assert_eq!(n.subject_prefix, "debugmon");
    }

    #[test]
    fn the_subject_prefix_comes_from_the_config_or_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[nats]\nsubject_prefix = \"acme.dm\"\n").unwrap();
        let flags = |config: Option<std::path::PathBuf>, prefix: Option<&str>| NatsFlags {
            url: None,
            config,
            subject_prefix: prefix.map(str::to_owned),
        };
        let from_file = flags(Some(path.clone()), None).resolve().unwrap();
        assert_eq!(from_file.audit_subjects(), "acme.dm.audit.>");
        let from_flag = flags(Some(path), Some("other")).resolve().unwrap();
        assert_eq!(from_flag.alert_subjects(), "other.alert.>");
        assert_eq!(
            flags(None, Some("a.>")).resolve().unwrap_err(),
            ExitCode::from(2)
        );
    }
}
