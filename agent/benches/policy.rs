//! Policy evaluation cost: the shipped set, and the shipped set plus 1,000
//! generated rules (the goal is p99 < 1 µs per evaluation there). Criterion
//! reports means; per-evaluation p50/p99 are measured separately by timing
//! individual evaluations, and printed with the timer's own overhead.

use std::{
    fmt::Write,
    hint::black_box,
    path::Path,
    time::{Duration, Instant},
};

use agent::policy::{EvalContext, NoGrants, PolicyEvent, PolicySet};
use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};

fn shipped_texts() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("policies/ exists")
        .map(|e| e.expect("readable dir").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable policy");
            (p.display().to_string(), text)
        })
        .collect()
}

/// 1,000 rules of four shapes, keyed on different fields, plus rules with
/// only numeric conditions (never keyed, so always scanned).
fn generated() -> String {
    let mut y = String::from("roles:\n");
    for r in 0..20 {
        let _ = writeln!(y, "  team-{r}: {{ users: [lead{r}], groups: [grp{r}] }}");
    }
    y.push_str("rules:\n");
    for i in 0..1000 {
        let _ = write!(
            y,
            "  - name: gen-{i}\n    action: alert\n    severity: medium\n"
        );
        let body = match i % 5 {
            0 => format!(
                "    on: [ptrace_attach, mem_access]\n    target: {{ comm: [svc-{i}] }}\n    unless: {{ role: [team-{}], grant: true }}\n",
                i % 20
            ),
            1 => format!(
                "    on: [exec, debugger_exec]\n    actor: {{ exe: [\"/opt/tool{i}/bin/*\"] }}\n"
            ),
            2 => format!(
                "    on: [ptrace_attach, ptrace_access]\n    target: {{ unit: [app-{i}.service] }}\n    actor: {{ users: [user{i}] }}\n"
            ),
            3 => format!(
                "    on: [mem_read, mem_write]\n    target: {{ exe: [\"/srv/app{i}/**\"] }}\n"
            ),
            _ => format!(
                "    on: [ptrace_attach]\n    actor: {{ uids: [{}], tty: true }}\n",
                20000 + i
            ),
        };
        y.push_str(&body);
    }
    y
}

fn load(extra: Option<&str>) -> PolicySet {
    let mut texts = shipped_texts();
    if let Some(e) = extra {
        texts.push(("generated.yaml".into(), e.to_owned()));
    }
    let refs: Vec<(&str, &str)> = texts
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    PolicySet::from_texts(&refs).unwrap_or_else(|d| panic!("{}", d[0]))
}

fn events() -> Vec<(&'static str, PolicyEvent)> {
    let actor = r#"{"pid":4242,"uid":1001,"euid":1001,"auid":1001,"user":"bob","login_user":"bob",
        "groups":["dev","grp3"],"comm":"gdb","exe":"/usr/bin/gdb","argv":["gdb","-p","77"],"tty":"pts/0"}"#;
    let ev = |j: String| PolicyEvent::from_json(&j).expect("valid event");
    vec![
        (
            "attach-db (deny)",
            ev(format!(
                r#"{{"kind":"ptrace","actor":{actor},"target":{{"pid":77,"comm":"postgres","uid":105,
                "exe":"/usr/lib/postgresql/15/bin/postgres","unit":"postgresql.service"}},
                "detail":{{"ptrace_request":"PTRACE_ATTACH"}}}}"#
            )),
        ),
        (
            "attach-own (no match)",
            ev(format!(
                r#"{{"kind":"ptrace","actor":{actor},"target":{{"pid":78,"comm":"svc-500","uid":1001,
                "exe":"/srv/app503/bin/app","unit":"app-502.service"}},"detail":{{"ptrace_request":"PTRACE_ATTACH"}}}}"#
            )),
        ),
        (
            "exec (generated glob)",
            ev(format!(
                r#"{{"kind":"exec","actor":{}}}"#,
                actor.replace("/usr/bin/gdb", "/opt/tool6/bin/run")
            )),
        ),
        (
            "mem read (generated exe glob)",
            ev(format!(
                r#"{{"kind":"mem_access","actor":{actor},"target":{{"pid":79,"comm":"x","uid":1001,
                "exe":"/srv/app3/lib/x"}},"detail":{{"via":"process_vm_readv","access":"read"}}}}"#
            )),
        ),
    ]
}

fn percentiles(
    set: &PolicySet,
    e: &PolicyEvent,
    ctx: &EvalContext<'_>,
) -> (Duration, Duration, Duration) {
    const N: usize = 200_000;
    for _ in 0..10_000 {
        black_box(set.evaluate(black_box(e), ctx));
    }
    let mut overhead = Vec::with_capacity(N);
    let mut samples = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        overhead.push(t.elapsed());
        let t = Instant::now();
        black_box(set.evaluate(black_box(e), ctx));
        samples.push(t.elapsed());
    }
    samples.sort_unstable();
    overhead.sort_unstable();
    (samples[N / 2], samples[N * 99 / 100], overhead[N / 2])
}

fn bench(c: &mut Criterion) {
    let ctx = EvalContext {
        now: Utc
            .with_ymd_and_hms(2024, 1, 1, 10, 0, 0)
            .single()
            .expect("valid time"),
        grants: &NoGrants,
    };
    let gen_text = generated();
    for (label, set) in [
        ("default", load(None)),
        ("default+1000", load(Some(&gen_text))),
    ] {
        println!("{label}: {} rules", set.rule_count());
        for (name, e) in events() {
            c.bench_function(&format!("{label}/{name}"), |b| {
                b.iter(|| black_box(set.evaluate(black_box(&e), &ctx)));
            });
            let (p50, p99, timer) = percentiles(&set, &e, &ctx);
            let d = set.evaluate(&e, &ctx);
            println!(
                "{label}/{name}: p50 {} ns, p99 {} ns per evaluation (timer overhead {} ns included; decision {} {:?})",
                p50.as_nanos(),
                p99.as_nanos(),
                timer.as_nanos(),
                d.action,
                d.rule
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
