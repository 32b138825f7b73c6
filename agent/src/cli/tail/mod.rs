//! `debugmon tail`: follows records from the JetStream stream, from a
//! point in time (`--since`) or live, filtered by host, kind or severity
//! (`--alerts` reads the alert subjects), printing raw JSON or one human
//! line per record; and a line for each host that went silent
//! ([`silence`]), checked once a second whether records arrive or not.
//! Heartbeats are `agent` records: with `--alerts` or another `--kind` the
//! subject leaves them out, and no host is judged.

pub mod silence;

use std::{future::Future, io::Write, path::PathBuf, process::ExitCode, time::Duration};

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures::StreamExt;
use serde_json::Value;
use thiserror::Error;
use tokio::time::MissedTickBehavior;

use self::silence::Watch;
use super::{nats::NatsFlags, runtime};
use crate::{
    error::error_chain,
    sink::nats::{NatsConfig, NatsError, connect, jetstream, subject_token},
};

#[derive(Debug, Error)]
pub enum TailError {
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// `why` is empty or the duration parser's reason in parentheses.
    #[error("--since {0:?}: expected an RFC 3339 time or a duration like 30s, 10m, 1h30m, 1d{1}")]
    Since(String, String),
    #[error("writing the output")]
    Write(#[source] std::io::Error),
}

#[derive(Debug, Clone, Default)]
pub struct TailArgs {
    pub nats: NatsConfig,
    /// Read `<prefix>.alert.>` instead of `<prefix>.audit.>` (the prefix
    /// is `nats.subject_prefix`, `debugmon` by default).
    pub alerts: bool,
    pub host: Option<String>,
    pub kind: Option<String>,
    pub severity: Option<String>,
    /// RFC 3339 time or a duration back from now (`10m`); `None`: live only.
    pub since: Option<String>,
    /// Raw JSON lines instead of summaries.
    pub json: bool,
    /// Stop after this many records (tests, scripts).
    pub limit: Option<u64>,
}

/// Parses `--since` ([`crate::duration::parse_instant`]: an RFC 3339
/// time, or a duration ago like `10m`).
pub fn parse_since(
    s: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<time::OffsetDateTime, TailError> {
    let bad = || TailError::Since(s.to_owned(), " (out of range)".into());
    let at = crate::duration::parse_instant(s, now).map_err(|e| match e {
        crate::duration::InstantError::Neither(e) => {
            TailError::Since(s.to_owned(), format!(" ({e})"))
        }
        crate::duration::InstantError::OutOfRange => bad(),
    })?;
    let nanos = at.timestamp_nanos_opt().ok_or_else(bad)?;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)).map_err(|_| bad())
}

/// The subject to consume for these filters.
pub fn subject(args: &TailArgs) -> String {
    let host = args
        .host
        .as_deref()
        .map_or_else(|| "*".to_owned(), subject_token);
    if args.alerts {
        let sev = args
            .severity
            .as_deref()
            .map_or_else(|| "*".to_owned(), subject_token);
        format!("{}.alert.{host}.{sev}", args.nats.subject_prefix)
    } else {
        let kind = args
            .kind
            .as_deref()
            .map_or_else(|| "*".to_owned(), subject_token);
        format!("{}.audit.{host}.{kind}", args.nats.subject_prefix)
    }
}

/// Filters the subject cannot express (kind on alerts, severity on audit).
fn wanted(args: &TailArgs, v: &Value) -> bool {
    let kind_ok = !args.alerts || args.kind.as_deref().is_none_or(|k| v["kind"] == k);
    let sev_ok = args.alerts
        || args
            .severity
            .as_deref()
            .is_none_or(|s| v["decision"]["severity"] == s);
    kind_ok && sev_ok
}

/// One human line: time host seq kind, who, what, to whom, decision.
pub fn summary(v: &Value) -> String {
    let s = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    let mut out = format!(
        "{} {} #{} {}",
        s(&v["time"]),
        s(&v["host"]["name"]),
        s(&v["seq"]),
        s(&v["kind"])
    );
    let a = &v["actor"];
    if a.is_object() {
        let user = a["user"]
            .as_str()
            .map_or_else(|| format!("uid={}", s(&a["uid"])), str::to_owned);
        out.push_str(&format!(" {user} {}[{}]", s(&a["comm"]), s(&a["pid"])));
        if let Some(argv) = a["argv"].as_array() {
            let words: Vec<String> = argv.iter().map(s).collect();
            out.push_str(&format!(" `{}`", words.join(" ")));
        }
    }
    let t = &v["target"];
    if t.is_object() {
        out.push_str(&format!(" -> {}[{}]", s(&t["comm"]), s(&t["pid"])));
    }
    let d = &v["detail"];
    for key in ["ptrace_request", "via", "event", "total"] {
        if !d[key].is_null() {
            out.push_str(&format!(" {key}={}", s(&d[key])));
        }
    }
    let dec = &v["decision"];
    if dec.is_object() {
        out.push_str(&format!(
            " [{} {} rule={}]",
            s(&dec["action"]),
            s(&dec["severity"]),
            s(&dec["rule"])
        ));
    }
    out
}

/// Prints the hosts silent at `now`, each once per silence.
fn print_silent<W: Write>(
    watch: &mut Watch,
    now: std::time::Instant,
    json: bool,
    out: &mut W,
) -> Result<(), TailError> {
    for s in watch.silent(now) {
        writeln!(out, "{}", s.line(json)).map_err(TailError::Write)?;
        out.flush().map_err(TailError::Write)?;
    }
    Ok(())
}

/// Prints matching records to `out` until `shutdown`, the limit, or the
/// end of the connection, and a line for each host that goes silent.
/// Returns how many records were printed.
pub async fn run_tail<W: Write>(
    args: &TailArgs,
    out: &mut W,
    shutdown: impl Future<Output = ()>,
) -> Result<u64, TailError> {
    let deliver_policy = match &args.since {
        Some(s) => DeliverPolicy::ByStartTime {
            start_time: parse_since(s, chrono::Utc::now())?,
        },
        None => DeliverPolicy::New,
    };
    let name = args.nats.stream.name.clone();
    let cerr = |e: Box<dyn std::error::Error + Send + Sync>| {
        TailError::Nats(NatsError::Consumer {
            name: name.clone(),
            source: e,
        })
    };
    let client = connect(&args.nats).await?;
    let js = jetstream(&args.nats, client);
    let stream = js.get_stream(&name).await.map_err(|e| cerr(Box::new(e)))?;
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject(args),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| cerr(Box::new(e)))?;
    let mut messages = consumer.messages().await.map_err(|e| cerr(Box::new(e)))?;
    tokio::pin!(shutdown);
    let mut watch = Watch::default();
    // A silent host sends nothing that could wake the loop: a timer must.
    let mut check = tokio::time::interval(Duration::from_secs(1));
    check.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut printed = 0;
    while args.limit.is_none_or(|l| printed < l) {
        let msg = tokio::select! {
            () = &mut shutdown => break,
            _ = check.tick() => {
                print_silent(&mut watch, std::time::Instant::now(), args.json, out)?;
                continue;
            }
            m = messages.next() => m,
        };
        let Some(msg) = msg else { break };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                // The ordered consumer recreates itself; keep following.
                tracing::warn!(error = %error_chain(&e), "tail: consumer hiccup");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Ok(v) = serde_json::from_slice::<Value>(&msg.payload) else {
            tracing::warn!(subject = %msg.subject, "tail: message is not JSON; skipped");
            continue;
        };
        // Filtered out or not, the record shows its host is alive.
        watch.heard(&v, std::time::Instant::now());
        if !wanted(args, &v) {
            continue;
        }
        if args.json {
            out.write_all(msg.payload.trim_ascii_end())
                .map_err(TailError::Write)?;
            out.write_all(b"\n").map_err(TailError::Write)?;
        } else {
            writeln!(out, "{}", summary(&v)).map_err(TailError::Write)?;
        }
        out.flush().map_err(TailError::Write)?;
        printed += 1;
    }
    Ok(printed)
}

#[derive(clap::Args)]
pub struct Args {
    /// Alerts and denials (<nats.subject_prefix>.alert.>) instead of every record
    #[arg(long)]
    alerts: bool,
    /// Only records from this host (its name as records carry it in host.name)
    #[arg(long)]
    host: Option<String>,
    /// Only records of this kind: exec, ptrace, mem_access, agent, ... (docs/records.md)
    #[arg(long)]
    kind: Option<String>,
    /// Only records whose decision has this severity: info, low, medium, high, critical
    #[arg(long)]
    severity: Option<String>,
    /// From this RFC 3339 time or this long ago (30s, 10m, 1h30m, 1d) [default: new records only]
    #[arg(long)]
    since: Option<String>,
    /// Raw JSON lines instead of one summary line per record
    #[arg(long)]
    json: bool,
    /// Stop after this many records
    #[arg(long)]
    limit: Option<u64>,
    /// First tokens of the records' subjects [default: nats.subject_prefix of the config, else
    /// debugmon]
    #[arg(long, value_name = "PREFIX")]
    subject_prefix: Option<String>,
    /// Server URL [default: nats.urls of the config, else nats://127.0.0.1:4222]
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// Config file whose [nats] section gives servers, stream, TLS and credentials
    #[arg(long)]
    config: Option<PathBuf>,
}

/// `debugmon tail`: until Ctrl-C, `--limit`, or the connection ends.
pub fn main(a: Args) -> ExitCode {
    let flags = NatsFlags {
        url: a.nats,
        config: a.config,
        subject_prefix: a.subject_prefix,
    };
    let nats = match flags.resolve() {
        Ok(n) => n,
        Err(code) => return code,
    };
    let args = TailArgs {
        nats,
        alerts: a.alerts,
        host: a.host,
        kind: a.kind,
        severity: a.severity,
        since: a.since,
        json: a.json,
        limit: a.limit,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let mut out = std::io::stdout().lock();
    let stop = async {
        // Without a handler Ctrl-C would still end the process; with one
        // the output is flushed first. A failed install just means that.
        let _ = tokio::signal::ctrl_c().await;
    };
    match rt.block_on(run_tail(&args, &mut out, stop)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e @ TailError::Since(..)) => {
            eprintln!("debugmon tail: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("debugmon tail: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn subjects_from_filters() {
        let mut a = TailArgs::default();
        assert_eq!(subject(&a), "debugmon.audit.*.*");
        a.host = Some("db.1".into());
        a.kind = Some("ptrace".into());
        assert_eq!(subject(&a), "debugmon.audit.db_1.ptrace");
        a.alerts = true;
        a.severity = Some("critical".into());
        assert_eq!(subject(&a), "debugmon.alert.db_1.critical");
        a.nats.subject_prefix = "acme.prod".into();
        assert_eq!(subject(&a), "acme.prod.alert.db_1.critical");
    }

    #[test]
    fn since_accepts_times_and_durations() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            parse_since("10m", now).unwrap().unix_timestamp(),
            now.timestamp() - 600
        );
        assert_eq!(
            parse_since("2026-01-01T00:00:00Z", now)
                .unwrap()
                .unix_timestamp(),
            1_767_225_600
        );
        assert_eq!(
            parse_since("1h30m", now).unwrap().unix_timestamp(),
            now.timestamp() - 5400
        );
        // Far past the clock's range: an error, not a panic.
        for bad in [
            "",
            "10",
            "5x",
            "yesterday",
            "m",
            "9223372036854775807s",
            "99999999999d",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn summaries_and_filters() {
        let v = json!({"time": "T", "host": {"name": "h"}, "seq": 4, "kind": "ptrace",
            "actor": {"uid": 1000, "comm": "gdb", "pid": 7, "argv": ["gdb", "-p", "9"]},
            "target": {"comm": "postgres", "pid": 9}, "detail": {"ptrace_request": "ATTACH"},
            "decision": {"action": "deny", "severity": "critical", "rule": "r1"}});
        assert_eq!(
            summary(&v),
            "T h #4 ptrace uid=1000 gdb[7] `gdb -p 9` -> postgres[9] ptrace_request=ATTACH [deny critical rule=r1]"
        );
        let mut a = TailArgs {
            severity: Some("low".into()),
            ..TailArgs::default()
        };
        assert!(!wanted(&a, &v));
        a.severity = Some("critical".into());
        assert!(wanted(&a, &v));
        a.alerts = true;
        a.kind = Some("exec".into());
        assert!(!wanted(&a, &v));
    }
}
