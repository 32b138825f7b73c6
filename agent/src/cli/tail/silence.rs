//! Silent hosts while `tail` follows: a host that sent a heartbeat (or
//! whose start record declared them) and then nothing for more than three
//! of its intervals is reported once, and again only after it was heard
//! from and went quiet again. Silence is measured on this machine's clock
//! from when `tail` received the host's last record: the host's own clock
//! can be wrong or set by whoever froze its agent. A clean `stopped`
//! record is not silence; the host is judged again from its next start or
//! heartbeat. [`Watch`] is pure: the caller says what arrived and when.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// Intervals without a record after which a host counts as silent (as
/// `verify` judges it).
pub const SILENT_AFTER: u32 = 3;

#[derive(Debug)]
struct Host {
    name: String,
    /// When `tail` received its last record, and that record's `time`.
    heard: Instant,
    last_time: Option<String>,
    /// Its heartbeat interval; `None`: not judged (no heartbeat yet, off,
    /// or stopped cleanly).
    interval: Option<Duration>,
    /// This silence was reported already.
    reported: bool,
}

/// The last record of every host seen, and which of them went silent.
#[derive(Debug, Default)]
pub struct Watch {
    /// By machine-id, else name (as `verify` keys hosts).
    hosts: HashMap<String, Host>,
}

/// One host gone silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SilentHost {
    pub name: String,
    /// Since `tail` received its last record.
    pub seconds: u64,
    /// `time` of that record.
    pub last: Option<String>,
}

impl SilentHost {
    /// The line `tail` prints: text, or a JSON object in `--json` mode.
    pub fn line(&self, json: bool) -> String {
        if json {
            json!({"silent_host": self.name, "seconds": self.seconds, "last": self.last})
                .to_string()
        } else {
            format!(
                "-- host {} silent for {}s (last record {})",
                self.name,
                self.seconds,
                self.last.as_deref().unwrap_or("without a time")
            )
        }
    }
}

/// What an `agent` record says about the host's heartbeat from now on:
/// `Some(None)` stops judging it, `None` changes nothing.
fn interval_change(v: &Value) -> Option<Option<Duration>> {
    if v["kind"] != "agent" {
        return None;
    }
    let d = &v["detail"];
    let secs = match d["event"].as_str()? {
        "heartbeat" => d["interval_s"].as_u64(),
        // An agent from before heartbeats declares nothing: unknown until
        // a heartbeat says.
        "started" => Some(d["heartbeat_s"].as_u64()?),
        "stopped" => None,
        _ => return None,
    };
    Some(secs.filter(|&s| s > 0).map(Duration::from_secs))
}

impl Watch {
    /// Record `v` arrived at `now`.
    pub fn heard(&mut self, v: &Value, now: Instant) {
        let h = &v["host"];
        let name = h["name"].as_str().unwrap_or_default();
        let key = h["id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .unwrap_or(name)
            .to_owned();
        let host = self.hosts.entry(key).or_insert_with(|| Host {
            name: name.to_owned(),
            heard: now,
            last_time: None,
            interval: None,
            reported: false,
        });
        host.heard = now;
        host.last_time = v["time"].as_str().map(str::to_owned);
        host.reported = false;
        if let Some(interval) = interval_change(v) {
            host.interval = interval;
        }
    }

    /// Hosts silent for more than [`SILENT_AFTER`] intervals at `now` and
    /// not reported yet, by name.
    pub fn silent(&mut self, now: Instant) -> Vec<SilentHost> {
        let mut out: Vec<SilentHost> = self
            .hosts
            .values_mut()
            .filter_map(|h| {
                let quiet = now.saturating_duration_since(h.heard);
                let limit = h.interval?.saturating_mul(SILENT_AFTER);
                if h.reported || quiet <= limit {
                    return None;
                }
                h.reported = true;
                Some(SilentHost {
                    name: h.name.clone(),
                    seconds: quiet.as_secs(),
                    last: h.last_time.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn rec(host: &str, kind: &str, detail: Value, time: &str) -> Value {
        json!({"host": {"name": host, "id": format!("id-{host}")}, "kind": kind,
            "detail": detail, "time": time})
    }

    fn beat(host: &str, interval_s: u64, time: &str) -> Value {
        rec(
            host,
            "agent",
            json!({"event": "heartbeat", "interval_s": interval_s}),
            time,
        )
    }

    #[test]
    fn silence_is_reported_once_and_again_after_the_host_came_back() {
        let t0 = Instant::now();
        let mut w = Watch::default();
        w.heard(&beat("db-7", 5, "T1"), t0);
        assert_eq!(w.silent(t0 + 15 * S), [], "three intervals: not yet");
        let silent = w.silent(t0 + 16 * S);
        assert_eq!(
            silent,
            [SilentHost {
                name: "db-7".into(),
                seconds: 16,
                last: Some("T1".into())
            }]
        );
        assert_eq!(
            silent[0].line(false),
            "-- host db-7 silent for 16s (last record T1)"
        );
        assert_eq!(
            serde_json::from_str::<Value>(&silent[0].line(true)).unwrap(),
            json!({"silent_host": "db-7", "seconds": 16, "last": "T1"})
        );
        assert_eq!(w.silent(t0 + 100 * S), [], "once per silence");
        // Heard from again (any record), then silent again.
        w.heard(&rec("db-7", "exec", json!({}), "T2"), t0 + 101 * S);
        assert_eq!(w.silent(t0 + 110 * S), []);
        let again = w.silent(t0 + 117 * S);
        assert_eq!(again.len(), 1);
        assert_eq!(
            (again[0].seconds, again[0].last.as_deref()),
            (16, Some("T2"))
        );
    }

    #[test]
    fn only_hosts_with_heartbeats_are_judged_each_by_its_own_interval() {
        let t0 = Instant::now();
        let mut w = Watch::default();
        w.heard(&rec("old", "exec", json!({}), "T"), t0);
        w.heard(&beat("fast", 1, "T"), t0);
        w.heard(&beat("slow", 60, "T"), t0);
        let names = |v: Vec<SilentHost>| v.into_iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(names(w.silent(t0 + 4 * S)), ["fast"]);
        assert_eq!(names(w.silent(t0 + 181 * S)), ["slow"]);
        assert_eq!(w.silent(t0 + 3600 * S), [], "no heartbeat: not judged");
        // A start record that declares heartbeats is judged before its
        // first one (a run killed or frozen at once).
        w.heard(
            &rec(
                "old",
                "agent",
                json!({"event": "started", "heartbeat_s": 5}),
                "T",
            ),
            t0 + 3600 * S,
        );
        assert_eq!(names(w.silent(t0 + 3616 * S)), ["old"]);
    }

    #[test]
    fn a_clean_stop_is_not_silence_and_a_start_or_heartbeat_judges_again() {
        let t0 = Instant::now();
        let mut w = Watch::default();
        w.heard(&beat("h", 5, "T"), t0);
        w.heard(&rec("h", "agent", json!({"event": "stopped"}), "T"), t0 + S);
        assert_eq!(w.silent(t0 + 600 * S), []);
        w.heard(
            &rec(
                "h",
                "agent",
                json!({"event": "started", "heartbeat_s": 0}),
                "T",
            ),
            t0 + 600 * S,
        );
        assert_eq!(w.silent(t0 + 1200 * S), [], "heartbeats off");
        w.heard(&beat("h", 5, "T"), t0 + 1200 * S);
        assert_eq!(w.silent(t0 + 1216 * S).len(), 1);
    }
}
