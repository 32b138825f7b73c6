//! Silence: a host whose agent was stopped (SIGSTOP), frozen
//! (cgroup.freeze), killed or given up on by systemd writes nothing, and a
//! hash chain cannot show what was never written. Heartbeats can: an agent
//! that sends one every `interval_s` and then nothing for longer than
//! [`SILENT_AFTER`] intervals went silent, unless it said it was stopping
//! (a clean `stopped` record, then a `started` one).
//!
//! A run (the records from one `started` record to the next) is judged
//! with its interval: that of its heartbeats, else the `heartbeat_s` its
//! start record declares, so a run killed or frozen before its first
//! heartbeat is judged too. A run with neither is not judged.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

/// Intervals without a record after which a host counts as silent: one
/// late heartbeat (a busy tick) is not silence, three missing ones are.
pub(super) const SILENT_AFTER: u64 = 3;

const NS_PER_S: u64 = 1_000_000_000;

/// An `agent` record that matters to silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AgentEvent {
    /// `heartbeat_s` as declared (0: heartbeats off; `None`: an agent from
    /// before heartbeats).
    Started {
        heartbeat_s: Option<u64>,
    },
    Stopped,
    Heartbeat {
        interval_s: u64,
    },
}

/// What judging silence needs of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    pub(super) seq: u64,
    /// `time` as Unix ns; `None` when missing or not RFC 3339.
    pub(super) time_ns: Option<i64>,
    pub(super) monotonic_ns: Option<u64>,
    /// The host's `boot_id`, interned: `monotonic_ns` compares only
    /// within one boot.
    pub(super) boot: u32,
    pub(super) agent: Option<AgentEvent>,
}

/// `time` of a record as Unix ns.
pub(super) fn time_ns(record: &Map<String, Value>) -> Option<i64> {
    let t = record.get("time")?.as_str()?;
    DateTime::parse_from_rfc3339(t).ok()?.timestamp_nanos_opt()
}

/// The record's `agent` event, if it is one that matters here.
pub(super) fn agent_event(record: &Map<String, Value>) -> Option<AgentEvent> {
    if record.get("kind").and_then(Value::as_str) != Some("agent") {
        return None;
    }
    let d = record.get("detail")?.as_object()?;
    let num = |k: &str| d.get(k).and_then(Value::as_u64);
    match d.get("event")?.as_str()? {
        "started" => Some(AgentEvent::Started {
            heartbeat_s: num("heartbeat_s"),
        }),
        "stopped" => Some(AgentEvent::Stopped),
        "heartbeat" => Some(AgentEvent::Heartbeat {
            interval_s: num("interval_s")?,
        }),
        _ => None,
    }
}

/// RFC 3339 with nanoseconds, as records write `time`.
pub(super) fn rfc3339(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// A stretch longer than [`SILENT_AFTER`] intervals with no record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Silence {
    pub(super) from_seq: u64,
    pub(super) to_seq: u64,
    pub(super) seconds: u64,
    pub(super) interval_s: u64,
}

/// The latest heartbeat of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LastBeat {
    pub(super) seq: u64,
    pub(super) time_ns: Option<i64>,
    pub(super) interval_s: u64,
}

/// The host's last record, when its run is judged and it is not a clean
/// stop: the input may end with the host silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OpenEnd {
    pub(super) seq: u64,
    pub(super) time_ns: i64,
    pub(super) interval_s: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Judged {
    /// Unexplained silences, in seq order.
    pub(super) silences: Vec<Silence>,
    pub(super) last_beat: Option<LastBeat>,
    pub(super) open_end: Option<OpenEnd>,
}

/// The interval each run is judged with, by run (run 0 holds the records
/// before the first `started` one, when the input starts mid-run).
fn run_intervals(marks: &[Mark]) -> (Vec<usize>, Vec<Option<u64>>) {
    let mut run_of = Vec::with_capacity(marks.len());
    let (mut beat, mut declared) = (vec![None], vec![None]);
    for m in marks {
        match m.agent {
            Some(AgentEvent::Started { heartbeat_s }) => {
                beat.push(None);
                declared.push(heartbeat_s);
            }
            Some(AgentEvent::Heartbeat { interval_s }) if interval_s > 0 => {
                let last = beat.len() - 1;
                beat[last] = beat[last].or(Some(interval_s));
            }
            _ => {}
        }
        run_of.push(beat.len() - 1);
    }
    let interval = beat
        .into_iter()
        .zip(declared)
        .map(|(b, d)| b.or(d).filter(|&s| s > 0))
        .collect();
    (run_of, interval)
}

/// Time from `a` to `b`: on the boot-time clock within one boot (wall
/// time can be set), on wall time across boots; `None` when the records
/// do not say. Never negative: a clock set back is not silence.
fn elapsed_ns(a: &Mark, b: &Mark) -> Option<u64> {
    if a.boot == b.boot
        && let (Some(x), Some(y)) = (a.monotonic_ns, b.monotonic_ns)
    {
        return Some(y.saturating_sub(x));
    }
    let (x, y) = (a.time_ns?, b.time_ns?);
    Some(u64::try_from(y.saturating_sub(x)).unwrap_or(0))
}

/// Judges one host's records, in seq order without duplicates. Only the
/// agent's own records (start, heartbeat, stop) measure silence: the
/// others carry the time their event happened, and a frozen agent's
/// backlog, written when it thaws, would cover the time it was frozen.
pub(super) fn judge(marks: &[Mark]) -> Judged {
    let (run_of, interval) = run_intervals(marks);
    let mut out = Judged::default();
    let own: Vec<usize> = (0..marks.len())
        .filter(|&i| marks[i].agent.is_some())
        .collect();
    for pair in own.windows(2) {
        let (k, a, b) = (pair[0], &marks[pair[0]], &marks[pair[1]]);
        let Some(interval_s) = interval[run_of[k]] else {
            continue;
        };
        let Some(ns) = elapsed_ns(a, b) else {
            continue;
        };
        let clean = a.agent == Some(AgentEvent::Stopped)
            && matches!(b.agent, Some(AgentEvent::Started { .. }));
        if ns > SILENT_AFTER * interval_s * NS_PER_S && !clean {
            out.silences.push(Silence {
                from_seq: a.seq,
                to_seq: b.seq,
                seconds: ns / NS_PER_S,
                interval_s,
            });
        }
    }
    out.last_beat = marks.iter().rev().find_map(|m| match m.agent {
        Some(AgentEvent::Heartbeat { interval_s }) => Some(LastBeat {
            seq: m.seq,
            time_ns: m.time_ns,
            interval_s,
        }),
        _ => None,
    });
    let last_own = own.last().map(|&i| (&marks[i], run_of[i]));
    if let Some((last, run)) = last_own
        && last.agent != Some(AgentEvent::Stopped)
        && let (Some(interval_s), Some(time_ns)) = (interval[run], last.time_ns)
    {
        out.open_end = Some(OpenEnd {
            seq: last.seq,
            time_ns,
            interval_s,
        });
    }
    out
}

/// A chain that ends open: no `stopped` record, and its last own record
/// (start or heartbeat) more than [`SILENT_AFTER`] intervals older than
/// `now_ns` (`--now`, else the newest record of any host in the input;
/// wall time: hosts share no other clock). Its tail was cut, or the agent
/// stopped writing. Returns how many seconds behind it is.
pub(super) fn end_silence(end: &OpenEnd, now_ns: i64) -> Option<u64> {
    let behind = u64::try_from(now_ns.saturating_sub(end.time_ns)).unwrap_or(0);
    (behind > SILENT_AFTER * end.interval_s * NS_PER_S).then_some(behind / NS_PER_S)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NS_PER_S;
    const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z

    /// A record at `t` seconds on boot 0.
    fn at(seq: u64, t: u64, agent: Option<AgentEvent>) -> Mark {
        Mark {
            seq,
            time_ns: Some(T0 + i64::try_from(t * S).expect("small")),
            monotonic_ns: Some(t * S),
            boot: 0,
            agent,
        }
    }

    fn beat(seq: u64, t: u64) -> Mark {
        at(seq, t, Some(AgentEvent::Heartbeat { interval_s: 5 }))
    }

    fn started(seq: u64, t: u64, heartbeat_s: Option<u64>) -> Mark {
        at(seq, t, Some(AgentEvent::Started { heartbeat_s }))
    }

    #[test]
    fn steady_heartbeats_are_not_silence_and_a_long_gap_is() {
        let mut marks = vec![started(1, 0, Some(5))];
        marks.extend((1..=4).map(|i| beat(i + 1, i * 5)));
        marks.push(beat(6, 35));
        assert_eq!(judge(&marks).silences, [], "15 s: late, not silent");
        // An event record at 60 s does not cover the gap: it carries the
        // time its event happened, and a frozen agent writes its backlog
        // when it thaws.
        marks.push(at(7, 60, None));
        marks.push(beat(8, 82));
        let j = judge(&marks);
        assert_eq!(
            j.silences,
            [Silence {
                from_seq: 6,
                to_seq: 8,
                seconds: 47,
                interval_s: 5
            }]
        );
        assert_eq!(
            j.last_beat,
            Some(LastBeat {
                seq: 8,
                time_ns: marks[7].time_ns,
                interval_s: 5
            })
        );
    }

    #[test]
    fn a_clean_stop_then_a_start_is_not_silence_and_a_kill_is() {
        let stopped = at(3, 10, Some(AgentEvent::Stopped));
        let marks = [
            started(1, 0, Some(5)),
            beat(2, 5),
            stopped,
            started(4, 600, Some(5)),
        ];
        let j = judge(&marks);
        assert_eq!(j.silences, []);
        // Killed: the run ends without `stopped`.
        let marks = [started(1, 0, Some(5)), beat(2, 5), started(3, 600, Some(5))];
        assert_eq!(judge(&marks).silences.len(), 1);
        // A stop that is not followed by a start is not explained: the
        // records after it came from an agent that never said it started.
        let marks = [started(1, 0, Some(5)), stopped, beat(4, 600)];
        assert_eq!(judge(&marks).silences.len(), 1);
    }

    #[test]
    fn across_boots_wall_time_decides() {
        // The new boot's boot-time clock starts near zero: comparing it
        // with the old one would hide the gap (or invent one).
        let mut after = started(3, 0, Some(5));
        after.boot = 1;
        after.time_ns = Some(T0 + i64::try_from(100 * S).expect("small"));
        let marks = [started(1, 0, Some(5)), beat(2, 5), after];
        assert_eq!(
            judge(&marks).silences,
            [Silence {
                from_seq: 2,
                to_seq: 3,
                seconds: 95,
                interval_s: 5
            }]
        );
        // A wall clock set back across the reboot is not silence.
        let mut back = after;
        back.time_ns = Some(T0 - 1_000);
        assert_eq!(judge(&[beat(2, 5), back]).silences, []);
        // Within one boot the boot-time clock decides, whatever wall
        // time says (root can set it).
        let mut forward = beat(3, 10);
        forward.time_ns = Some(T0 + i64::try_from(500 * S).expect("small"));
        assert_eq!(judge(&[beat(2, 5), forward]).silences, []);
    }

    #[test]
    fn runs_without_heartbeats_are_not_judged_unless_declared() {
        // An agent from before heartbeats: no interval, nothing judged.
        let old = [started(1, 0, None), at(2, 1000, None)];
        assert_eq!(judge(&old), Judged::default());
        // Heartbeats off: not judged either.
        let off = [started(1, 0, Some(0)), at(2, 1000, None)];
        assert_eq!(judge(&off).silences, []);
        // Declared but killed (or frozen) before the first heartbeat: the
        // run ends open at its start record, whatever came after it.
        let early = [started(1, 0, Some(5)), at(2, 1000, None)];
        let end = judge(&early).open_end.expect("never stopped");
        assert_eq!(end.seq, 1);
        assert!(end_silence(&end, T0 + i64::try_from(1000 * S).expect("small")).is_some());
        // A stream that starts mid-run learns the interval from the
        // heartbeats, and measures from the first of the agent's records.
        let mid = [at(7, 0, None), beat(8, 5), at(9, 100, None), beat(10, 105)];
        assert_eq!(judge(&mid).silences.len(), 1);
        // A restart with heartbeats off is judged by its own run.
        let restarted = [beat(2, 5), started(3, 6, Some(0)), at(4, 1000, None)];
        assert_eq!(judge(&restarted).silences, []);
    }

    #[test]
    fn a_host_silent_at_the_end_is_noted_against_the_newest_record() {
        let marks = [started(1, 0, Some(5)), beat(2, 5)];
        let end = judge(&marks).open_end.expect("judged, not stopped");
        assert_eq!(end.seq, 2);
        let newest = |t: u64| T0 + i64::try_from(t * S).expect("small");
        assert_eq!(end_silence(&end, newest(20)), None, "15 s: three intervals");
        assert_eq!(end_silence(&end, newest(65)), Some(60), "60 s behind");
        // A clean stop at the end is not silence.
        let stopped = [beat(2, 5), at(3, 6, Some(AgentEvent::Stopped))];
        assert_eq!(judge(&stopped).open_end, None);
    }

    #[test]
    fn agent_events_are_read_from_records() {
        let rec = |v: Value| match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        let hb = rec(
            serde_json::json!({"kind": "agent", "time": "2026-01-01T00:00:01.5Z",
            "detail": {"event": "heartbeat", "interval_s": 5}}),
        );
        assert_eq!(
            agent_event(&hb),
            Some(AgentEvent::Heartbeat { interval_s: 5 })
        );
        assert_eq!(time_ns(&hb), Some(T0 + 1_500_000_000));
        let tamper = rec(serde_json::json!({"kind": "agent", "detail": {"event": "tamper"}}));
        assert_eq!(agent_event(&tamper), None);
        let exec = rec(serde_json::json!({"kind": "exec", "detail": {"event": "stopped"}}));
        assert_eq!(agent_event(&exec), None);
        assert_eq!(
            time_ns(&rec(serde_json::json!({"time": "yesterday"}))),
            None
        );
    }
}
