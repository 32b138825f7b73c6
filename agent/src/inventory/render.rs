//! The inventory as a table for a person (`debugmon inventory` without
//! `--json`): one section per part, a line per finding, and what could
//! not be read.

use std::fmt::Write as _;

use super::{Inventory, ProcRef};

fn who(p: &ProcRef) -> String {
    let exe = if p.exe.is_empty() { "?" } else { &p.exe };
    format!("{} {} ({exe}, uid {})", p.pid, p.comm, p.uid)
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string)
}

/// The table.
pub fn table(inv: &Inventory) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "DEBUGGERS AND PROFILERS INSTALLED ({})",
        inv.debuggers.len()
    );
    for d in &inv.debuggers {
        let _ = writeln!(s, "  {:<14} {}", d.class, d.path);
    }
    let _ = writeln!(s, "\nPROCESSES TRACED NOW ({})", inv.traced.len());
    for t in &inv.traced {
        let by = t.debugger.as_deref().map_or_else(
            || "NOT A KNOWN DEBUGGER".to_owned(),
            |c| format!("debugger {c}"),
        );
        let _ = writeln!(
            s,
            "  {}\n    traced by {} [{by}]",
            who(&t.process),
            who(&t.tracer)
        );
    }
    let _ = writeln!(s, "\nDEBUG PORTS LISTENING ({})", inv.debug_ports.len());
    for p in &inv.debug_ports {
        let risk = p.risk.map_or(String::new(), |r| format!(" [{r}]"));
        let _ = writeln!(
            s,
            "  {:<16} {}:{}{risk}  {}",
            p.interface,
            p.bind,
            p.port,
            who(&p.process)
        );
    }
    let _ = writeln!(
        s,
        "\nPROCESSES WITH DEBUG OR INJECTION SWITCHES ({})",
        inv.switches.len()
    );
    for w in &inv.switches {
        let names: Vec<String> = w
            .switches
            .iter()
            .map(|x| match x.risk {
                Some(r) => format!("{}:{r} ({})", x.interface, x.via),
                None => format!("{} ({})", x.interface, x.via),
            })
            .collect();
        let _ = writeln!(s, "  {}\n    {}", who(&w.process), names.join(", "));
    }
    let _ = writeln!(s, "\nINJECTION FOR EVERY PROGRAM");
    match &inv.ld_so_preload {
        Some(p) => {
            let _ = writeln!(s, "  {}: {}", p.path, p.libraries.join(" "));
        }
        None => {
            let _ = writeln!(s, "  /etc/ld.so.preload: none");
        }
    }
    let k = &inv.kernel;
    let _ = writeln!(s, "\nKERNEL SETTINGS");
    for (name, value) in [
        ("kernel.yama.ptrace_scope", opt(&k.ptrace_scope)),
        ("kernel.perf_event_paranoid", opt(&k.perf_event_paranoid)),
        (
            "kernel.unprivileged_bpf_disabled",
            opt(&k.unprivileged_bpf_disabled),
        ),
        ("kernel.kptr_restrict", opt(&k.kptr_restrict)),
        ("kernel.core_pattern", opt(&k.core_pattern)),
        ("fs.suid_dumpable", opt(&k.suid_dumpable)),
        ("lockdown", opt(&k.lockdown)),
        ("lsm", opt(&k.lsm.as_ref().map(|l| l.join(",")))),
        ("bpf_lsm", opt(&k.bpf_lsm)),
    ] {
        let _ = writeln!(s, "  {name:<34} {value}");
    }
    let all = inv.all_findings();
    let _ = writeln!(s, "\nFINDINGS ({})", all.len());
    for f in &all {
        let _ = writeln!(s, "  {f}");
    }
    let _ = write!(
        s,
        "\nskipped: {} (processes that exited while read, files that could not be read)",
        inv.skipped
    );
    s
}
