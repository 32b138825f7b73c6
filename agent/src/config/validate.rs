//! Checks on values that parsed but cannot work: a ring size the kernel
//! refuses, a relative path for a service with no meaningful working
//! directory, two NATS authentication methods at once, no sink at all.
//! Every problem is reported (not just the first), each with its key.

use std::{net::SocketAddr, path::Path};

use super::Config;
use crate::sink::nats::{PREFIX_RULE, valid_prefix};

/// One value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `section.key`, as in the file.
    pub key: &'static str,
    pub reason: String,
}

struct Checks(Vec<Problem>);

impl Checks {
    fn check(&mut self, ok: bool, key: &'static str, reason: impl FnOnce() -> String) {
        if !ok {
            self.0.push(Problem {
                key,
                reason: reason(),
            });
        }
    }

    fn range<T: PartialOrd + std::fmt::Display + Copy>(
        &mut self,
        key: &'static str,
        v: T,
        lo: T,
        hi: T,
    ) {
        self.check(v >= lo && v <= hi, key, || {
            format!("{v} is out of range: must be between {lo} and {hi}")
        });
    }

    fn absolute(&mut self, key: &'static str, p: &Path) {
        self.check(p.is_absolute(), key, || {
            format!(
                "{:?} must be an absolute path (the service's working directory is /)",
                p.display().to_string()
            )
        });
    }
}

fn bad_url(u: &str) -> Option<String> {
    let Some((scheme, rest)) = u.split_once("://") else {
        return Some(format!("{u:?} is not a URL (write nats://host:port)"));
    };
    if !matches!(scheme, "nats" | "tls" | "ws" | "wss") {
        return Some(format!(
            "{u:?}: scheme {scheme:?} is not one of nats, tls, ws, wss"
        ));
    }
    let host = rest.rsplit('@').next().unwrap_or(rest);
    if host.is_empty() || host.starts_with(':') || host.starts_with('/') {
        return Some(format!("{u:?} has no host"));
    }
    None
}

impl Config {
    /// All the problems of this configuration, or `Ok`.
    pub fn validate(&self) -> Result<(), Vec<Problem>> {
        let mut c = Checks(Vec::new());
        let a = &self.agent;
        c.check(
            a.ring_mib.is_power_of_two() && a.ring_mib <= 1024,
            "agent.ring_mib",
            || {
                format!(
                    "{} is not a power of two between 1 and 1024 (the kernel requires a power-of-two ring buffer)",
                    a.ring_mib
                )
            },
        );
        c.range("agent.ancestry_depth", a.ancestry_depth, 0, 128);
        c.range(
            "agent.aggregate_window_secs",
            a.aggregate_window_secs,
            1,
            3600,
        );
        c.range("agent.exit_grace_secs", a.exit_grace_secs, 1, 3600);
        // Past 100 ms a burst fills a small ring before the next read.
        c.range("agent.read_interval_ms", a.read_interval_ms, 1, 100);
        c.range("agent.table_max", a.table_max, 1024, 16 << 20);
        // 0 switches heartbeats off; an hour is the longest silence a
        // reader can be asked to wait out before calling a host silent.
        c.check(a.heartbeat_secs <= 3600, "agent.heartbeat_secs", || {
            format!(
                "{} is out of range: must be 0 (off) or between 1 and 3600",
                a.heartbeat_secs
            )
        });
        // 0 switches inventories off; a week is the most a fleet's view
        // of its exposure may lag.
        c.check(
            self.inventory.interval_secs <= 604_800,
            "inventory.interval_secs",
            || {
                format!(
                    "{} is out of range: must be 0 (off) or between 1 and 604800",
                    self.inventory.interval_secs
                )
            },
        );

        for d in &self.policy.dirs {
            c.absolute("policy.dirs", d);
        }
        c.absolute("grants.path", &self.grants.path);
        c.check(
            !self.grants.max_duration.0.is_zero(),
            "grants.max_duration",
            || "must be longer than 0".into(),
        );
        c.absolute("grants.requests_path", &self.grants.requests_path);
        let approvers = crate::grants::approval::Approvers::parse(&self.grants.approvers);
        c.check(approvers.is_ok(), "grants.approvers", || {
            approvers.err().map(|e| e.to_string()).unwrap_or_default()
        });
        c.check(
            !self.grants.request_ttl.0.is_zero(),
            "grants.request_ttl",
            || "must be longer than 0".into(),
        );
        c.absolute("control.socket", &self.control.socket);

        let s = &self.sinks;
        c.check(
            s.stdout || s.journal || s.file.path.is_some() || self.nats.enabled,
            "sinks.stdout",
            || {
                "no sink is enabled (stdout, journal, file or nats): records would go nowhere"
                    .into()
            },
        );
        if let Some(p) = &s.file.path {
            c.absolute("sinks.file.path", p);
        }
        c.check(
            s.file.max_bytes.0 >= 1 << 20,
            "sinks.file.max_bytes",
            || format!("{} is below the minimum of 1MiB", s.file.max_bytes),
        );
        c.range("sinks.file.keep", s.file.keep, 0, 1000);

        c.absolute("spool.dir", &self.spool.dir);
        c.check(self.spool.max_bytes.0 >= 1 << 20, "spool.max_bytes", || {
            format!("{} is below the minimum of 1MiB", self.spool.max_bytes)
        });
        c.range(
            "spool.sync_interval_ms",
            self.spool.sync_interval_ms,
            0,
            60_000,
        );

        self.validate_nats(&mut c);
        if let Err(e) = crate::record::redact::Redactor::new(&self.redact) {
            // The error names the pattern; compiling it is the only check.
            c.0.push(Problem {
                key: "redact.patterns",
                reason: crate::error::error_chain(&e),
            });
        }

        let listen = &self.metrics.listen;
        c.check(
            listen.is_empty() || listen.parse::<SocketAddr>().is_ok(),
            "metrics.listen",
            || format!("{listen:?} is not address:port (e.g. \"127.0.0.1:7464\"; \"\" disables)"),
        );
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            c.0.push(Problem {
                key: "log.level",
                reason: format!("{:?} is not a level or filter: {e}", self.log.level),
            });
        }
        c.absolute("host.key_path", &self.host.key_path);
        c.absolute("host.state_dir", &self.host.state_dir);

        if c.0.is_empty() { Ok(()) } else { Err(c.0) }
    }

    fn validate_nats(&self, c: &mut Checks) {
        let n = &self.nats;
        c.check(!n.enabled || !n.urls.is_empty(), "nats.urls", || {
            "nats.enabled is true but no server URL is given".into()
        });
        for u in &n.urls {
            if let Some(reason) = bad_url(u) {
                c.0.push(Problem {
                    key: "nats.urls",
                    reason,
                });
            }
        }
        c.check(
            !n.stream.is_empty()
                && n.stream
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'),
            "nats.stream",
            || format!("{:?}: use letters, digits, '_' and '-' only", n.stream),
        );
        c.check(
            valid_prefix(&n.subject_prefix),
            "nats.subject_prefix",
            || format!("{:?}: {PREFIX_RULE}", n.subject_prefix),
        );
        c.check(
            n.tls.cert.is_some() == n.tls.key.is_some(),
            "nats.tls.cert",
            || "nats.tls.cert and nats.tls.key go together: set both or neither".into(),
        );
        for (key, p) in [
            ("nats.tls.ca", &n.tls.ca),
            ("nats.tls.cert", &n.tls.cert),
            ("nats.tls.key", &n.tls.key),
            ("nats.nkey_seed_file", &n.nkey_seed_file),
            ("nats.creds_file", &n.creds_file),
        ] {
            if let Some(p) = p {
                c.absolute(key, p);
            }
        }
        let methods: Vec<&str> = [
            ("token", n.token.is_some()),
            ("user/password", n.user.is_some() || n.password.is_some()),
            ("nkey_seed_file", n.nkey_seed_file.is_some()),
            ("creds_file", n.creds_file.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        c.check(methods.len() <= 1, "nats.token", || {
            format!(
                "choose one authentication method; set: {}",
                methods.join(", ")
            )
        });
        c.check(
            n.user.is_some() == n.password.is_some(),
            "nats.password",
            || "nats.user and nats.password go together: set both or neither".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn keys(c: &Config) -> Vec<&'static str> {
        c.validate()
            .unwrap_err()
            .into_iter()
            .map(|p| p.key)
            .collect()
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn ring_size_must_be_a_power_of_two() {
        let mut c = Config::default();
        c.agent.ring_mib = 3;
        let p = c.validate().unwrap_err();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "agent.ring_mib");
        assert!(p[0].reason.contains("power of two"), "{}", p[0].reason);
    }

    #[test]
    fn every_problem_is_reported() {
        let mut c = Config::default();
        c.agent.ring_mib = 0;
        c.spool.dir = "spool".into();
        c.metrics.listen = "localhost".into();
        assert_eq!(keys(&c), ["agent.ring_mib", "spool.dir", "metrics.listen"]);
    }

    #[test]
    fn nats_settings_are_checked() {
        let mut c = Config::default();
        c.nats.enabled = true;
        c.nats.urls = vec!["http://x:1".into(), "nats://:4222".into()];
        c.nats.subject_prefix = "a..b".into();
        c.nats.stream = "DEBUG MON".into();
        c.nats.tls.cert = Some("/c.pem".into());
        c.nats.token = Some(Secret::new("t"));
        c.nats.user = Some("u".into());
        assert_eq!(
            keys(&c),
            [
                "nats.urls",
                "nats.urls",
                "nats.stream",
                "nats.subject_prefix",
                "nats.tls.cert",
                "nats.token",
                "nats.password"
            ]
        );
    }

    #[test]
    fn records_must_go_somewhere() {
        let mut c = Config::default();
        c.sinks.stdout = false;
        assert_eq!(keys(&c), ["sinks.stdout"]);
        c.nats.enabled = true;
        c.validate().unwrap();
    }

    #[test]
    fn read_interval_is_1_to_100_ms() {
        let mut c = Config::default();
        for ok in [1, 8, 100] {
            c.agent.read_interval_ms = ok;
            c.validate().unwrap();
        }
        for bad in [0, 101] {
            c.agent.read_interval_ms = bad;
            let p = c.validate().unwrap_err();
            assert_eq!(p.len(), 1);
            assert_eq!(p[0].key, "agent.read_interval_ms");
        }
    }

    #[test]
    fn heartbeat_is_off_or_up_to_an_hour() {
        let mut c = Config::default();
        for ok in [0, 1, 5, 3600] {
            c.agent.heartbeat_secs = ok;
            c.validate().unwrap();
        }
        c.agent.heartbeat_secs = 3601;
        let p = c.validate().unwrap_err();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "agent.heartbeat_secs");
        assert!(p[0].reason.contains("0 (off)"), "{}", p[0].reason);
    }

    #[test]
    fn log_level_must_be_a_filter() {
        let mut c = Config::default();
        c.log.level = "debugmon=verbose".into();
        assert_eq!(keys(&c), ["log.level"]);
        c.log.level = "warn,agent=debug".into();
        c.validate().unwrap();
    }
}
