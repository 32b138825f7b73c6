//! From the file's `[host]`, `[sinks]`, `[spool]` and `[nats]` sections to
//! the settings of the delivery stage ([`DeliveryConfig`]) and of the NATS
//! client that `run`, `verify` and `tail` share ([`NatsConfig`]).

use super::Config;
use crate::{
    sink::{
        delivery::DeliveryConfig,
        file::FileSinkConfig,
        nats::{NatsAuth, NatsConfig, NatsError, StreamSettings, TlsConfig},
    },
    spool::SpoolConfig,
};

/// The agent's reply-inbox prefix on host `name`.
pub fn agent_inbox(name: &str) -> String {
    format!("_INBOX.{}", crate::sink::nats::subject_token(name))
}

impl Config {
    /// NATS client settings from `[nats]` (whether or not it is enabled:
    /// `verify` and `tail` use them too). Reads the nkey seed file, so the
    /// seed never sits in the config struct.
    pub fn nats_config(&self) -> Result<NatsConfig, NatsError> {
        let n = &self.nats;
        let auth = if let Some(t) = &n.token {
            NatsAuth::Token {
                token: t.expose().to_owned(),
            }
        } else if let (Some(user), Some(password)) = (&n.user, &n.password) {
            NatsAuth::UserPassword {
                user: user.clone(),
                password: password.expose().to_owned(),
            }
        } else if let Some(path) = &n.nkey_seed_file {
            let seed = std::fs::read_to_string(path).map_err(|io_error| NatsError::Creds {
                path: path.clone(),
                io_error,
            })?;
            NatsAuth::Nkey {
                seed: seed.trim().to_owned(),
            }
        } else if let Some(file) = &n.creds_file {
            NatsAuth::Creds { file: file.clone() }
        } else {
            NatsAuth::None
        };
        let defaults = NatsConfig::default();
        Ok(NatsConfig {
            urls: n.urls.clone(),
            tls: TlsConfig {
                ca_file: n.tls.ca.clone(),
                cert_file: n.tls.cert.clone(),
                key_file: n.tls.key.clone(),
                require: n.tls.required,
            },
            auth,
            stream: StreamSettings {
                name: n.stream.clone(),
                max_age_secs: n.max_age.0.as_secs(),
                // The file says 0 for "unlimited"; JetStream says -1.
                max_bytes: match i64::try_from(n.max_bytes.0) {
                    Ok(0) | Err(_) => -1,
                    Ok(b) => b,
                },
                replicas: n.replicas.clamp(1, 5),
                ..StreamSettings::default()
            },
            client_name: format!("debugmon {}", env!("CARGO_PKG_VERSION")),
            subject_prefix: n.subject_prefix.clone(),
            ..defaults
        })
    }

    /// Settings of the delivery stage. `nats` is the result of
    /// [`Self::nats_config`], taken only when `[nats] enabled`.
    pub fn delivery_config(&self) -> Result<DeliveryConfig, NatsError> {
        let nats = if self.nats.enabled {
            let mut n = self.nats_config()?;
            // Replies (acks) come to `_INBOX.<host>.*`: a server can then
            // let this agent read its own replies and nothing else.
            n.inbox_prefix = Some(agent_inbox(&crate::sys::host::Host::detect().name));
            Some(n)
        } else {
            None
        };
        Ok(DeliveryConfig {
            state_dir: self.host.state_dir.clone(),
            key_path: self.host.key_path.clone(),
            spool: SpoolConfig {
                dir: self.spool.dir.clone(),
                max_bytes: self.spool.max_bytes.0,
                ..SpoolConfig::default()
            },
            stdout: self.sinks.stdout,
            format: self.sinks.format,
            journal: self.sinks.journal,
            file: self.sinks.file.path.as_ref().map(|path| FileSinkConfig {
                path: path.clone(),
                max_bytes: self.sinks.file.max_bytes.0,
                keep: self.sinks.file.keep as usize,
            }),
            nats,
            sync_interval: std::time::Duration::from_millis(self.spool.sync_interval_ms),
            redact: self.redact.clone(),
            ..DeliveryConfig::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, overrides::set};

    #[test]
    fn nats_settings_carry_auth_tls_retention_and_prefix() {
        let mut c = Config::default();
        assert_eq!(c.nats_config().unwrap().subject_prefix, "debugmon");
        set(&mut c, "nats.subject_prefix", "acme.dm").unwrap();
        set(&mut c, "nats.urls", "tls://a:1,tls://b:2").unwrap();
        set(&mut c, "nats.max_bytes", "0").unwrap();
        set(&mut c, "nats.tls.required", "true").unwrap();
        c.nats.user = Some("u".into());
        c.nats.password = Some(Secret::new("p"));
        let n = c.nats_config().unwrap();
        assert_eq!(n.urls, ["tls://a:1", "tls://b:2"]);
        assert!(n.tls.require);
        assert_eq!(n.stream.max_bytes, -1);
        assert_eq!(n.stream.name, "DEBUGMON");
        assert_eq!(n.audit_subjects(), "acme.dm.audit.>");
        assert_eq!(n.alert_subjects(), "acme.dm.alert.>");
        assert!(
            matches!(n.auth, NatsAuth::UserPassword { ref user, ref password }
            if user == "u" && password == "p")
        );
    }

    #[test]
    fn an_unreadable_nkey_seed_names_the_file() {
        let mut c = Config::default();
        set(&mut c, "nats.nkey_seed_file", "/nonexistent-debugmon/seed").unwrap();
        let e = c.nats_config().unwrap_err();
        assert!(e.to_string().contains("/nonexistent-debugmon/seed"), "{e}");
    }

    #[test]
    fn delivery_follows_sinks_spool_and_host() {
        let mut c = Config::default();
        let d = c.delivery_config().unwrap();
        assert!(d.stdout && !d.journal && d.file.is_none() && d.nats.is_none());
        assert_eq!(d.spool.dir, c.spool.dir);
        set(&mut c, "nats.enabled", "true").unwrap();
        set(&mut c, "sinks.file.path", "/tmp/x.jsonl").unwrap();
        set(&mut c, "host.state_dir", "/srv/dm").unwrap();
        let d = c.delivery_config().unwrap();
        assert!(d.nats.is_some());
        assert_eq!(d.file.unwrap().keep, 5);
        assert_eq!(d.state_dir, std::path::Path::new("/srv/dm"));
    }
}
