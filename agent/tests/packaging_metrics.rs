//! The Grafana dashboard (packaging/grafana/debugmon.json) and the alert
//! rules (packaging/prometheus/debugmon.rules.yml) only query metrics the
//! agent serves: every metric name in their PromQL is extracted and looked
//! up in `agent::metrics::METRIC_NAMES`, the list a unit test checks
//! against the rendered `/metrics`. `promtool` checks the rules' syntax and
//! behaviour separately (`cargo xtask test`).

use std::{collections::BTreeSet, path::Path};

use agent::metrics::METRIC_NAMES;
use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

/// Series Prometheus makes itself for every scrape target.
const PROMETHEUS_OWN: [&str; 1] = ["up"];

/// Words that are not metric names: grouping and set keywords, and the
/// aggregation operators (which may be followed by `by (...)` rather than
/// their parenthesis).
const KEYWORDS: [&str; 26] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
];

fn read(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Removes the spans between `open` and its matching `close` (not nested
/// in PromQL for these: label matchers, range durations, string literals).
fn strip(expr: &str, open: char, close: char) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut inside = false;
    for c in expr.chars() {
        match (inside, c) {
            (false, c) if c == open => inside = true,
            (true, c) if c == close => {
                inside = false;
                out.push(' ');
            }
            (true, _) => {}
            (false, c) => out.push(c),
        }
    }
    assert!(!inside, "unbalanced {open}{close} in {expr}");
    out
}

/// The metric names a PromQL expression selects: identifiers that are not
/// functions (followed by `(`), keywords, label names in grouping clauses,
/// or numbers.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut e = strip(expr, '"', '"');
    e = strip(&e, '{', '}');
    e = strip(&e, '[', ']');
    let chars: Vec<char> = e.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // After `by`/`without`/`on`/`ignoring`/`group_*`, the parenthesised
    // list holds label names.
    let mut labels_next = false;
    let mut in_labels = false;
    while i < chars.len() {
        let c = chars[i];
        if in_labels {
            if c == ')' {
                in_labels = false;
            }
            i += 1;
            continue;
        }
        if c == '(' && labels_next {
            in_labels = true;
            labels_next = false;
            i += 1;
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace());
            if [
                "by",
                "without",
                "on",
                "ignoring",
                "group_left",
                "group_right",
            ]
            .contains(&word.as_str())
            {
                labels_next = true;
            } else if next != Some(&'(') && !KEYWORDS.contains(&word.to_lowercase().as_str()) {
                names.insert(word);
            }
            continue;
        }
        if c.is_ascii_digit() || c == '.' {
            // A number, or a duration such as 5m (already inside [] or
            // after `offset`): skip the whole token.
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        i += 1;
    }
    names
}

fn assert_exported(names: &BTreeSet<String>, source: &str) {
    assert!(!names.is_empty(), "{source}: no metric found");
    for n in names {
        assert!(
            METRIC_NAMES.contains(&n.as_str())
                || PROMETHEUS_OWN.contains(&n.as_str())
                || ["_sum", "_count"].iter().any(|s| n
                    .strip_suffix(s)
                    .is_some_and(|base| METRIC_NAMES.contains(&base))),
            "{source} uses {n}, which the agent does not export"
        );
    }
}

fn dashboard_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => dashboard_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

#[test]
fn extraction_finds_names_and_skips_functions_and_labels() {
    let got = metric_names(
        r#"sum by (job, instance) (increase(a_total{kind="x y"}[5m])) / on (instance) group_left(kernel) b_info > 3 * time()"#,
    );
    assert_eq!(
        got,
        ["a_total", "b_info"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    );
}

#[test]
fn every_dashboard_query_uses_exported_metrics() {
    let dash: Value = serde_json::from_str(&read("packaging/grafana/debugmon.json")).unwrap();
    let mut exprs = Vec::new();
    dashboard_exprs(&dash["panels"], &mut exprs);
    assert!(exprs.len() >= 10, "{exprs:?}");
    for e in &exprs {
        assert_exported(&metric_names(e), e);
    }
    // The instance picker: label_values(<selector>, instance).
    let vars = dash["templating"]["list"].as_array().unwrap();
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let q = v["definition"].as_str().unwrap();
        let inner = q
            .strip_prefix("label_values(")
            .and_then(|r| r.rsplit_once(','))
            .map(|(sel, _)| sel)
            .unwrap_or_else(|| panic!("unexpected variable query {q}"));
        assert_exported(&metric_names(inner), q);
    }
}

#[test]
fn every_alert_rule_uses_exported_metrics() {
    let docs = YamlLoader::load_from_str(&read("packaging/prometheus/debugmon.rules.yml")).unwrap();
    let mut alerts = 0;
    for group in docs[0]["groups"].as_vec().unwrap() {
        for rule in group["rules"].as_vec().unwrap() {
            let Yaml::String(expr) = &rule["expr"] else {
                panic!("rule without expr: {rule:?}");
            };
            assert_exported(&metric_names(expr), expr);
            alerts += 1;
        }
    }
    assert!(alerts >= 6, "{alerts} rules");
}
