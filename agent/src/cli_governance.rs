//! The engineer- and security-facing commands around policy and grants:
//! `debugmon policy check`, `debugmon policy explain`, and `debugmon grant`
//! (create, list, revoke over the root-only control socket). Exit codes:
//! 0 ok, 1 runtime error or a refused request, 2 usage or invalid input.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use crate::{
    enforce::kernel_policy,
    enrich::users::UserDb,
    grants::control::{self, Request, Response},
    policy::{self, EvalContext, NoGrants, PolicyEvent, PolicySet},
};

/// `debugmon policy check [PATHS]`: every error as `file:line:column: reason`,
/// then the deny rules the kernel cannot enforce (notes, not errors).
pub fn policy_check(paths: &[PathBuf]) -> ExitCode {
    let diags = policy::check_paths(paths);
    if !diags.is_empty() {
        for d in &diags {
            eprintln!("{d}");
        }
        eprintln!("{} error(s)", diags.len());
        return ExitCode::from(2);
    }
    match PolicySet::load_files(&expand(paths)) {
        Ok(set) => {
            let (k, notes) = kernel_policy(&set, &UserDb::new(Path::new("/etc")));
            for n in &notes {
                println!("note: {n}");
            }
            println!(
                "ok: {} rules ({} enforced in the kernel), hash {}",
                set.rule_count(),
                k.rules.len(),
                set.content_hash()
            );
            ExitCode::SUCCESS
        }
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            ExitCode::from(2)
        }
    }
}

/// Files for `paths`: a directory stands for its `*.yaml` files, in name order.
fn expand(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map(|rd| {
                    rd.flatten()
                        .map(|e| e.path())
                        .filter(|f| f.extension().is_some_and(|e| e == "yaml"))
                        .collect()
                })
                .unwrap_or_default();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    out
}

/// `debugmon policy explain --event FILE [--policies DIR...]`.
pub fn policy_explain(event: &Path, dirs: &[PathBuf]) -> ExitCode {
    let text = match std::fs::read_to_string(event) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("debugmon: cannot read {}: {e}", event.display());
            return ExitCode::from(2);
        }
    };
    let ev = match PolicyEvent::from_json(&text) {
        Ok(ev) => ev,
        Err(e) => {
            eprintln!("debugmon: {} is not a record: {e}", event.display());
            return ExitCode::from(2);
        }
    };
    let set = match PolicySet::load_dirs(dirs) {
        Ok(s) => s,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            return ExitCode::from(2);
        }
    };
    let ctx = EvalContext {
        now: chrono::Utc::now(),
        grants: &NoGrants,
    };
    print!("{}", policy::explain(&set, &ev, &ctx));
    ExitCode::SUCCESS
}

/// Sends one request to the agent's control socket and prints the answer.
pub fn grant_request(socket: &Path, req: &Request) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("debugmon: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(control::request(socket, req)) {
        Ok(resp) => print_response(&resp),
        Err(e) => {
            eprintln!(
                "debugmon: {} (is the agent running, and are you root?)",
                crate::ebpf::loader::error_chain(&e)
            );
            ExitCode::from(1)
        }
    }
}

fn print_response(r: &Response) -> ExitCode {
    if !r.ok {
        eprintln!(
            "debugmon: refused: {}",
            r.error.as_deref().unwrap_or("unknown error")
        );
        return ExitCode::from(1);
    }
    if let Some(g) = &r.grant {
        println!(
            "grant {} for {} on {} until {} ({})",
            g.id,
            g.user,
            g.target,
            g.expires.to_rfc3339(),
            g.reason
        );
    }
    if let Some(list) = &r.grants {
        if list.is_empty() {
            println!("no active grants");
        }
        for g in list {
            println!(
                "{}  {}  {}  until {}  {}",
                g.id,
                g.user,
                g.target,
                g.expires.to_rfc3339(),
                g.reason
            );
        }
    }
    ExitCode::SUCCESS
}
