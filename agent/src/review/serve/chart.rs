//! The timeline: decisions over the selected records' time range, one lane
//! per host and one per rule, each a row of bars stacked by decision
//! (deny, alert, allow, none). Inline SVG written on the server: no
//! script library, nothing the page's Content-Security-Policy has to
//! allow. Labels are record text, escaped like everything else.

use std::{collections::BTreeMap, fmt::Write as _};

use super::html::esc;
use crate::review::{Entry, fields};

/// Time buckets across the range.
const BUCKETS: usize = 48;
/// Lanes drawn at most of each sort (the busiest); the rest are counted.
const MAX_LANES: usize = 12;
const LABEL_W: usize = 230;
const BAR_W: usize = 14;
const LANE_H: usize = 26;
/// Decisions bottom to top, with their colours.
const DECISIONS: [(&str, &str); 4] = [
    ("deny", "#c62828"),
    ("alert", "#ef8f00"),
    ("allow", "#7a9cc6"),
    ("none", "#c8c8c8"),
];

/// Counts per bucket and decision for one lane.
type Lane = Vec<[usize; 4]>;

fn decision_index(e: &Entry) -> usize {
    match fields::action(&e.record) {
        Some("deny") => 0,
        Some("alert") => 1,
        Some("allow") => 2,
        _ => 3,
    }
}

/// The busiest lanes of one sort, by total count, then name.
fn busiest(lanes: BTreeMap<String, Lane>) -> (Vec<(String, Lane)>, usize) {
    let mut v: Vec<(String, Lane)> = lanes.into_iter().collect();
    let total = |l: &Lane| l.iter().flatten().sum::<usize>();
    v.sort_by(|a, b| total(&b.1).cmp(&total(&a.1)).then(a.0.cmp(&b.0)));
    let more = v.len().saturating_sub(MAX_LANES);
    v.truncate(MAX_LANES);
    (v, more)
}

fn stamp(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

/// The chart for `entries` (records without a readable time are left out
/// of it, and said to be).
pub fn timeline(entries: &[&Entry]) -> String {
    let timed: Vec<(&Entry, i64)> = entries
        .iter()
        .filter_map(|e| fields::time_ns(&e.record).map(|t| (*e, t)))
        .collect();
    let (Some(lo), Some(hi)) = (
        timed.iter().map(|(_, t)| *t).min(),
        timed.iter().map(|(_, t)| *t).max(),
    ) else {
        return "<p>No records with a time to chart.</p>".to_owned();
    };
    // Times are what records claim (a forged one may sit centuries
    // away): no step may overflow.
    let span = hi.saturating_sub(lo).max(1);
    let bucket = |t: i64| {
        let i = (i128::from(t) - i128::from(lo)) * BUCKETS as i128 / (i128::from(span) + 1);
        usize::try_from(i).unwrap_or(0).min(BUCKETS - 1)
    };
    let mut hosts: BTreeMap<String, Lane> = BTreeMap::new();
    let mut rules: BTreeMap<String, Lane> = BTreeMap::new();
    for (e, t) in &timed {
        let (b, d) = (bucket(*t), decision_index(e));
        hosts
            .entry(format!("host {}", fields::host(&e.record)))
            .or_insert_with(|| vec![[0; 4]; BUCKETS])[b][d] += 1;
        if let Some(rule) = fields::rule(&e.record) {
            rules
                .entry(format!("rule {rule}"))
                .or_insert_with(|| vec![[0; 4]; BUCKETS])[b][d] += 1;
        }
    }
    let (hosts, more_hosts) = busiest(hosts);
    let (rules, more_rules) = busiest(rules);
    let lanes: Vec<&(String, Lane)> = hosts.iter().chain(&rules).collect();
    let peak = lanes
        .iter()
        .flat_map(|(_, l)| l.iter().map(|c| c.iter().sum::<usize>()))
        .max()
        .unwrap_or(1)
        .max(1);
    let width = LABEL_W + BUCKETS * BAR_W + 10;
    let height = lanes.len() * LANE_H + 40;
    let bucket_ns = span / BUCKETS as i64;
    let mut out = format!(
        "<svg id=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" \
         aria-label=\"decisions per host and per rule over time\">"
    );
    for (i, (name, lane)) in lanes.iter().enumerate() {
        let base = 10 + (i + 1) * LANE_H;
        let _ = write!(
            out,
            "<text x=\"4\" y=\"{}\" font-size=\"12\" font-family=\"sans-serif\">{}</text>\
             <line x1=\"{LABEL_W}\" x2=\"{}\" y1=\"{base}\" y2=\"{base}\" stroke=\"#ddd\"/>",
            base - 8,
            esc(&shorten(name)),
            width - 10
        );
        for (b, counts) in lane.iter().enumerate() {
            let mut y = base;
            for (d, (label, colour)) in DECISIONS.iter().enumerate() {
                let n = counts[d];
                if n == 0 {
                    continue;
                }
                let h = (n * (LANE_H - 4)).div_ceil(peak).max(1);
                y -= h;
                let start = lo.saturating_add(bucket_ns.saturating_mul(b as i64));
                let _ = write!(
                    out,
                    "<rect x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{h}\" fill=\"{colour}\">\
                     <title>{}: {n} {label} from {}</title></rect>",
                    LABEL_W + b * BAR_W,
                    BAR_W - 2,
                    esc(name),
                    stamp(start)
                );
            }
        }
    }
    let axis = 10 + lanes.len() * LANE_H + 20;
    let _ = write!(
        out,
        "<text x=\"{LABEL_W}\" y=\"{axis}\" font-size=\"11\" font-family=\"sans-serif\">{}</text>\
         <text x=\"{}\" y=\"{axis}\" font-size=\"11\" font-family=\"sans-serif\" \
         text-anchor=\"end\">{}</text></svg>",
        stamp(lo),
        width - 10,
        stamp(hi)
    );
    let mut notes = vec![
        "<span class=\"key deny\">deny</span> <span class=\"key alert\">alert</span> \
         <span class=\"key allow\">allow</span> <span class=\"key none\">no decision</span>"
            .to_owned(),
    ];
    if more_hosts + more_rules > 0 {
        notes.push(format!(
            "{more_hosts} more hosts and {more_rules} more rules not drawn"
        ));
    }
    if timed.len() < entries.len() {
        notes.push(format!(
            "{} lines without a time left out",
            entries.len() - timed.len()
        ));
    }
    let _ = write!(out, "<p class=\"meta\">{}</p>", notes.join("; "));
    out
}

/// A label that fits the label column.
fn shorten(s: &str) -> String {
    const MAX: usize = 34;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(MAX - 1).collect();
        t.push('…');
        t
    }
}
