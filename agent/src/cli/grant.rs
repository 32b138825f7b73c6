//! `debugmon grant`: ask for, list or revoke time-boxed access, as root,
//! over the agent's control socket; with `--request`, ask for a grant an
//! approver must approve (`debugmon approve`) before the agent makes it. Exit codes: 0 ok, 1 runtime error or
//! a refused request, 2 usage error.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::Subcommand;

use super::runtime;
use crate::{
    error::error_chain,
    grants::control::{self, GrantFields, Request, Response},
};

#[derive(clap::Args)]
pub struct Args {
    /// User the grant is for
    #[arg(long)]
    user: Option<String>,
    /// unit:NAME | pid:N | exe:/PATH | any
    #[arg(long)]
    target: Option<String>,
    /// How long, e.g. 30m, 2h (at most the configured maximum)
    #[arg(long = "for", value_name = "DURATION")]
    duration: Option<String>,
    /// Why: a ticket or incident id
    #[arg(long)]
    reason: Option<String>,
    /// read: attach and look (backtraces, strace, perf, gcore), never
    /// write the target's memory or registers; full: everything
    #[arg(long, value_parser = ["read", "full"], default_value = "full")]
    mode: String,
    /// Do not grant now: publish a signed request for an approver's
    /// `debugmon approve` (needs NATS and approver keys in the config)
    #[arg(long)]
    request: bool,
    /// Control socket of the agent
    #[arg(long, default_value = "/run/debugmon/control.sock")]
    socket: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// List active grants
    List,
    /// Revoke a grant by id
    Revoke {
        /// The grant's id, as `debugmon grant list` shows it
        id: String,
    },
}

pub fn main(a: Args) -> ExitCode {
    let req = match a.command {
        Some(Command::List) => Request::List,
        Some(Command::Revoke { id }) => Request::Revoke { id },
        None => match (a.user, a.target, a.duration, a.reason) {
            (Some(user), Some(target), Some(duration), Some(reason)) => {
                let asked = GrantFields {
                    user,
                    target,
                    duration,
                    reason,
                    mode: Some(a.mode),
                };
                if a.request {
                    Request::Request(asked)
                } else {
                    Request::Grant(asked)
                }
            }
            _ => {
                eprintln!("debugmon grant: --user, --target, --for and --reason are all required");
                return ExitCode::from(2);
            }
        },
    };
    grant_request(&a.socket, &req)
}

/// Sends one request to the agent's control socket and prints the answer.
pub fn grant_request(socket: &Path, req: &Request) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(control::request(socket, req)) {
        Ok(resp) => print_response(&resp),
        Err(e) => {
            eprintln!(
                "debugmon: {} (is the agent running, and are you root?)",
                error_chain(&e)
            );
            ExitCode::from(1)
        }
    }
}

/// `  (asked by uid 0, login alice (1000), pid 4242)`.
fn asked_by(r: &crate::grants::Requester) -> String {
    let login = match (&r.login_user, r.login_uid) {
        (Some(name), Some(uid)) => format!(", login {name} ({uid})"),
        (None, Some(uid)) => format!(", login uid {uid}"),
        _ => ", no login session".to_owned(),
    };
    let pid = r.pid.map_or_else(String::new, |p| format!(", pid {p}"));
    format!("  (asked by uid {}{login}{pid})", r.uid)
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
            "grant {} for {} on {} ({}) until {} ({})",
            g.id,
            g.user,
            g.target,
            g.mode.as_str(),
            g.expires.to_rfc3339(),
            g.reason
        );
    }
    if let Some(q) = &r.request {
        println!(
            "request {} on {}: {} on {} ({}) for {} ({}); waiting for approval until {}",
            q.id,
            q.host,
            q.user,
            q.target,
            q.mode.as_str(),
            crate::grants::format_duration(std::time::Duration::from_secs(q.duration_secs)),
            q.reason,
            q.expires.to_rfc3339()
        );
        println!(
            "an approver runs: debugmon approve {} --key APPROVER.key",
            q.id
        );
    }
    if let Some(list) = &r.grants {
        if list.is_empty() {
            println!("no active grants");
        }
        for g in list {
            println!(
                "{}  {}  {}  {}  until {}  {}{}",
                g.id,
                g.user,
                g.target,
                g.mode.as_str(),
                g.expires.to_rfc3339(),
                g.reason,
                g.requested_by.as_ref().map_or_else(String::new, asked_by)
            );
            if let Some(a) = &g.approved {
                println!(
                    "    approved by {} (key {}) for request {} at {}",
                    a.approver,
                    a.key,
                    a.request,
                    a.approved_at.to_rfc3339()
                );
            }
        }
    }
    ExitCode::SUCCESS
}
