//! Evaluation must not allocate (policies/README.md): a counting allocator
//! checks it for the shipped set and a range of events, after one warm-up
//! pass has grown the per-thread scratch buffers.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
};

use agent::policy::{EvalContext, NoGrants, PolicyEvent, PolicySet};
use chrono::{TimeZone, Utc};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: forwards to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn evaluation_does_not_allocate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let set = PolicySet::load_dirs(&[dir]).unwrap();
    let actor = r#"{"pid":4242,"uid":1001,"euid":0,"auid":1001,"user":"root","login_user":"bob",
        "groups":["dev"],"comm":"gdb","exe":"/usr/bin/gdb","argv":["gdb","-p","77"],"tty":"pts/0"}"#;
    let events: Vec<PolicyEvent> = [
        format!(r#"{{"kind":"ptrace","actor":{actor},"target":{{"pid":77,"comm":"postgres","uid":105}},"detail":{{"ptrace_request":"PTRACE_ATTACH"}}}}"#),
        format!(r#"{{"kind":"ptrace","actor":{actor},"target":{{"pid":78,"comm":"app","uid":1002}},"detail":{{"ptrace_request":"PTRACE_POKEDATA"}}}}"#),
        format!(r#"{{"kind":"ptrace","actor":{actor},"detail":{{"ptrace_request":"PTRACE_TRACEME"}}}}"#),
        format!(r#"{{"kind":"mem_access","actor":{actor},"target":{{"pid":79,"uid":1002}},"detail":{{"via":"process_vm_writev","access":"write"}}}}"#),
        format!(r#"{{"kind":"exec","actor":{actor},"detail":{{"debugger":"gdb"}}}}"#),
        format!(r#"{{"kind":"bpf","actor":{actor},"detail":{{"prog_type":"kprobe"}}}}"#),
        format!(r#"{{"kind":"perf_attach","actor":{actor}}}"#),
    ]
    .iter()
    .map(|j| PolicyEvent::from_json(j).unwrap())
    .collect();
    let ctx = EvalContext {
        now: Utc.with_ymd_and_hms(2024, 1, 1, 10, 0, 0).unwrap(),
        grants: &NoGrants,
    };
    let mut fired = 0;
    for e in &events {
        fired += usize::from(set.evaluate(e, &ctx).rule.is_some());
    }
    // Warm up on the same inputs as measured: regex engines build their
    // lazy DFA states on first sight of an input, once.
    let programs = [
        ("/usr/bin/strace", "strace"),
        ("/usr/bin/perf_6.1", "perf_6.1"),
        ("/usr/bin/ls", "ls"),
    ];
    for (exe, comm) in programs {
        assert_eq!(set.debugger_class(exe, comm).is_some(), comm != "ls");
    }
    assert!(fired >= 5, "the events exercise real rules");
    COUNTING.with(|c| c.set(true));
    for _ in 0..100 {
        for e in &events {
            std::hint::black_box(set.evaluate(e, &ctx));
            for (exe, comm) in programs {
                std::hint::black_box(set.debugger_class(exe, comm));
            }
        }
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(ALLOCS.load(Ordering::Relaxed), 0);
}
