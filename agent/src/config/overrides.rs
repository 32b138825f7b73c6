//! The keys that `DEBUGMON_<SECTION>_<KEY>` environment variables and
//! command-line flags can set, and how a string becomes each key's value.
//! Lists are comma-separated; an empty string unsets an optional key.

use std::{path::PathBuf, str::FromStr};

use super::{Config, LogFormat, Secret};

/// Every settable key, `section.key` (`section.table.key` when nested).
/// The environment variable is [`env_var`] of the key.
pub const KEYS: &[&str] = &[
    "agent.ring_mib",
    "agent.read_interval_ms",
    "agent.ancestry_depth",
    "agent.aggregate_window_secs",
    "agent.enforce",
    "agent.exit_grace_secs",
    "agent.table_max",
    "agent.heartbeat_secs",
    "inventory.interval_secs",
    "agent.kernel_log",
    "policy.dirs",
    "grants.path",
    "grants.max_duration",
    "grants.approvers",
    "grants.two_person",
    "grants.request_ttl",
    "grants.requests_path",
    "control.socket",
    "sinks.stdout",
    "sinks.format",
    "sinks.journal",
    "sinks.file.path",
    "sinks.file.max_bytes",
    "sinks.file.keep",
    "spool.dir",
    "spool.max_bytes",
    "spool.sync_interval_ms",
    "nats.enabled",
    "nats.urls",
    "nats.stream",
    "nats.subject_prefix",
    "nats.tls.ca",
    "nats.tls.cert",
    "nats.tls.key",
    "nats.tls.required",
    "nats.token",
    "nats.user",
    "nats.password",
    "nats.nkey_seed_file",
    "nats.creds_file",
    "nats.max_age",
    "nats.max_bytes",
    "nats.replicas",
    "metrics.listen",
    "log.level",
    "log.format",
    "host.key_path",
    "host.state_dir",
];

/// `agent.ring_mib` -> `DEBUGMON_AGENT_RING_MIB`.
pub fn env_var(key: &str) -> String {
    format!("DEBUGMON_{}", key.replace('.', "_").to_ascii_uppercase())
}

fn parse<T: FromStr>(v: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    v.trim()
        .parse()
        .map_err(|e| format!("cannot parse {v:?}: {e}"))
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{v:?} is not a boolean (true or false)")),
    }
}

fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn opt_path(v: &str) -> Option<PathBuf> {
    (!v.is_empty()).then(|| PathBuf::from(v))
}

fn opt_string(v: &str) -> Option<String> {
    (!v.is_empty()).then(|| v.to_owned())
}

/// Sets `key` from its string form; the error says what was wrong with the value.
pub fn set(c: &mut Config, key: &str, v: &str) -> Result<(), String> {
    match key {
        "agent.ring_mib" => c.agent.ring_mib = parse(v)?,
        "agent.read_interval_ms" => c.agent.read_interval_ms = parse(v)?,
        "agent.ancestry_depth" => c.agent.ancestry_depth = parse(v)?,
        "agent.aggregate_window_secs" => c.agent.aggregate_window_secs = parse(v)?,
        "agent.exit_grace_secs" => c.agent.exit_grace_secs = parse(v)?,
        "agent.table_max" => c.agent.table_max = parse(v)?,
        "agent.heartbeat_secs" => c.agent.heartbeat_secs = parse(v)?,
        "agent.enforce" => c.agent.enforce = boolean(v)?,
        "inventory.interval_secs" => c.inventory.interval_secs = parse(v)?,
        "agent.kernel_log" => c.agent.kernel_log = boolean(v)?,
        "policy.dirs" => c.policy.dirs = list(v).into_iter().map(PathBuf::from).collect(),
        "grants.path" => c.grants.path = PathBuf::from(v),
        "grants.max_duration" => c.grants.max_duration = parse(v)?,
        "grants.approvers" => c.grants.approvers = list(v),
        "grants.two_person" => c.grants.two_person = boolean(v)?,
        "grants.request_ttl" => c.grants.request_ttl = parse(v)?,
        "grants.requests_path" => c.grants.requests_path = PathBuf::from(v),
        "control.socket" => c.control.socket = PathBuf::from(v),
        "sinks.stdout" => c.sinks.stdout = boolean(v)?,
        "sinks.format" => c.sinks.format = parse(v)?,
        "sinks.journal" => c.sinks.journal = boolean(v)?,
        "sinks.file.path" => c.sinks.file.path = opt_path(v),
        "sinks.file.max_bytes" => c.sinks.file.max_bytes = parse(v)?,
        "sinks.file.keep" => c.sinks.file.keep = parse(v)?,
        "spool.dir" => c.spool.dir = PathBuf::from(v),
        "spool.max_bytes" => c.spool.max_bytes = parse(v)?,
        "spool.sync_interval_ms" => c.spool.sync_interval_ms = parse(v)?,
        "nats.enabled" => c.nats.enabled = boolean(v)?,
        "nats.urls" => c.nats.urls = list(v),
        "nats.stream" => c.nats.stream = v.to_owned(),
        "nats.subject_prefix" => c.nats.subject_prefix = v.to_owned(),
        "nats.tls.ca" => c.nats.tls.ca = opt_path(v),
        "nats.tls.cert" => c.nats.tls.cert = opt_path(v),
        "nats.tls.key" => c.nats.tls.key = opt_path(v),
        "nats.tls.required" => c.nats.tls.required = boolean(v)?,
        "nats.token" => c.nats.token = opt_string(v).map(Secret::new),
        "nats.user" => c.nats.user = opt_string(v),
        "nats.password" => c.nats.password = opt_string(v).map(Secret::new),
        "nats.nkey_seed_file" => c.nats.nkey_seed_file = opt_path(v),
        "nats.creds_file" => c.nats.creds_file = opt_path(v),
        "nats.max_age" => c.nats.max_age = parse(v)?,
        "nats.max_bytes" => c.nats.max_bytes = parse(v)?,
        "nats.replicas" => c.nats.replicas = parse(v)?,
        "metrics.listen" => c.metrics.listen = v.trim().to_owned(),
        "log.level" => c.log.level = v.trim().to_owned(),
        "log.format" => {
            c.log.format = match v.trim() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(format!("{v:?} is not a log format (text or json)")),
            }
        }
        "host.key_path" => c.host.key_path = PathBuf::from(v),
        "host.state_dir" => c.host.state_dir = PathBuf::from(v),
        _ => return Err(format!("unknown key {key:?}")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_settable() {
        for key in KEYS {
            let sample = match *key {
                k if k.ends_with("max_duration")
                    || k.ends_with("max_age")
                    || k.ends_with("request_ttl") =>
                {
                    "1h"
                }
                k if k.ends_with("max_bytes") => "1MiB",
                k if k.starts_with("sinks.stdout")
                    || k.ends_with("journal")
                    || k.ends_with("enabled")
                    || k.ends_with("required")
                    || k.ends_with("enforce")
                    || k.ends_with("two_person")
                    || k.ends_with("kernel_log") =>
                {
                    "true"
                }
                "log.format" => "json",
                "sinks.format" => "ecs",
                k if k.starts_with("agent.")
                    || k.ends_with("keep")
                    || k.ends_with("_ms")
                    || k.ends_with("_secs")
                    || k.ends_with("replicas") =>
                {
                    "7"
                }
                _ => "/x",
            };
            set(&mut Config::default(), key, sample).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
        assert!(set(&mut Config::default(), "agent.nope", "1").is_err());
    }

    #[test]
    fn env_var_names_follow_section_and_key() {
        assert_eq!(env_var("agent.ring_mib"), "DEBUGMON_AGENT_RING_MIB");
        assert_eq!(env_var("nats.tls.ca"), "DEBUGMON_NATS_TLS_CA");
    }

    #[test]
    fn lists_and_optionals() {
        let mut c = Config::default();
        set(&mut c, "nats.urls", "nats://a:1, tls://b:2").unwrap();
        assert_eq!(c.nats.urls, ["nats://a:1", "tls://b:2"]);
        set(&mut c, "nats.tls.ca", "/ca.pem").unwrap();
        set(&mut c, "nats.tls.ca", "").unwrap();
        assert_eq!(c.nats.tls.ca, None);
        assert!(set(&mut c, "sinks.stdout", "maybe").is_err());
        assert!(set(&mut c, "agent.ring_mib", "eight").is_err());
    }
}
