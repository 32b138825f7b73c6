//! `debugmon review`: security's reader. Reads records from a file, stdin
//! or the JetStream stream (the reader `verify` uses), verifies them all
//! as it reads ([`crate::review`]), then shows those the filters select,
//! or a summary of them, as a table, JSON lines or CSV; with `--serve`, as
//! a read-only web page that follows the source ([`crate::review::serve`]). Exit 1 when any
//! record of the input failed verification (it is shown, marked), or the
//! input could not be read; 2 on bad flags.

use std::{io::Write as _, net::SocketAddr, path::PathBuf, process::ExitCode};

use super::{
    runtime,
    verify::{SourceArgs, VerifySource, parse_now, read_source, source_of, trust_of},
};
use crate::{
    error::error_chain,
    record::verify::trust::Trust,
    review::{
        Format, Review, Reviewed, Status,
        filter::{self, Filter},
        render,
        serve::{DEFAULT_LISTEN, Exposure, TOKEN_ENV, http, live},
        summary::Summary,
    },
};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: SourceArgs,
    /// Records from this RFC 3339 time or this long ago (30m, 2h, 7d)
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Records before this RFC 3339 time or this long ago
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only this host (host.name or host.id); repeatable, any matches
    #[arg(long)]
    host: Vec<String>,
    /// Only this user: the actor's user or login user (name or uid), a grant's user or requester
    #[arg(long)]
    user: Vec<String>,
    /// Only records decided by this policy rule
    #[arg(long)]
    rule: Vec<String>,
    /// Only this decision: allow, alert, deny, or none
    #[arg(long)]
    decision: Vec<String>,
    /// Only this record kind: exec, ptrace, mem_access, grant, agent, ... (docs/records.md)
    #[arg(long)]
    kind: Vec<String>,
    /// Only this target: its unit, program name or path, pid, container, or a grant's target
    #[arg(long)]
    target: Vec<String>,
    /// Only records whose rule carries this MITRE ATT&CK tag (t1055 also matches t1055.008)
    #[arg(long)]
    tag: Vec<String>,
    /// Only records that failed verification (or are not records)
    #[arg(long)]
    failed: bool,
    /// A summary instead of the records
    #[arg(long, value_enum)]
    summary: Option<Summary>,
    /// Group the records by login session (across hosts where login and origin match)
    #[arg(long, conflicts_with = "summary")]
    sessions: bool,
    /// JSON lines: each record untouched beside its verdict, or each summary row as an object
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// CSV with a header row
    #[arg(long)]
    csv: bool,
    /// Serve a read-only web page instead of printing: live alerts and denials, the records with
    /// the filters in the URL, a timeline, each record's detail (docs/review.md)
    #[arg(long, conflicts_with_all = [
        "summary", "sessions", "json", "csv", "since", "until", "host", "user", "rule", "decision",
        "kind", "target", "tag", "failed",
    ])]
    serve: bool,
    /// Address for --serve; one that is not loopback needs --tls-cert, --tls-key and a token
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN, requires = "serve")]
    listen: SocketAddr,
    /// PEM certificate chain for --serve over HTTPS
    #[arg(long, value_name = "PATH", requires = "serve")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, value_name = "PATH", requires = "serve")]
    tls_key: Option<PathBuf>,
    /// File whose first line is the token every request to --serve must carry (or set
    /// DEBUGMON_REVIEW_TOKEN); a browser asks for it as the password
    #[arg(long, value_name = "PATH", requires = "serve")]
    token_file: Option<PathBuf>,
}

/// The filters from flags; a time that does not parse is a usage error.
fn filter_of(a: &Args, now: chrono::DateTime<chrono::Utc>) -> Result<Filter, String> {
    let at = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| filter::instant_ns(flag, s, now))
            .transpose()
    };
    Ok(Filter {
        since_ns: at("since", &a.since)?,
        until_ns: at("until", &a.until)?,
        hosts: a.host.clone(),
        users: a.user.clone(),
        rules: a.rule.clone(),
        decisions: a.decision.clone(),
        kinds: a.kind.clone(),
        targets: a.target.clone(),
        tags: a.tag.clone(),
        failed_only: a.failed,
    })
}

/// Records of the input that did not verify (unsigned ones aside: their
/// seal holds and a later signature is what is missing).
fn not_verified(r: &Reviewed) -> usize {
    r.entries
        .iter()
        .filter(|e| !matches!(e.status, Status::Verified | Status::Unsigned))
        .count()
}

pub fn main(a: Args) -> ExitCode {
    let vflags = a.source.flags(false);
    let usage = |e: String| {
        eprintln!("debugmon review: {e}");
        ExitCode::from(2)
    };
    let source = match source_of(&vflags, "review") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let (trust, now_ns, filter) = match (
        trust_of(&vflags),
        a.source.now().map(parse_now).transpose(),
        filter_of(&a, chrono::Utc::now()),
    ) {
        (Ok(t), Ok(n), Ok(f)) => (t, n, f),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => return usage(e),
    };
    if a.serve {
        let end = match (a.source.now(), now_ns) {
            (Some("now"), _) => live::End::Now,
            (_, Some(ns)) => live::End::At(ns),
            (_, None) => live::End::Newest,
        };
        return serve(&a, source, trust, end);
    }
    let format = match (a.json, a.csv) {
        (true, _) => Format::Json,
        (_, true) => Format::Csv,
        _ => Format::Table,
    };
    let review = match Review::new(trust, now_ns) {
        Ok(r) => r,
        Err(e) => return usage(error_chain(&e)),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let reviewed = match rt.block_on(read_source(source, review)) {
        Ok(r) => r.finish(),
        Err(e) => {
            eprintln!("debugmon review: {}", error_chain(&e));
            return ExitCode::from(1);
        }
    };
    let text = render(&reviewed, &filter, a.summary, a.sessions, format);
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        eprintln!("debugmon review: writing the output: {e}");
        return ExitCode::from(1);
    }
    let bad = not_verified(&reviewed);
    if bad > 0 {
        eprintln!(
            "debugmon review: {bad} of {} input lines did not verify (marked in the output; `--failed` lists them)",
            reviewed.entries.len()
        );
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

/// `--serve`: follows the source and serves the page until interrupted.
fn serve(a: &Args, source: VerifySource, trust: Trust, end: live::End) -> ExitCode {
    let exposure = Exposure {
        tls_cert: a.tls_cert.clone(),
        tls_key: a.tls_key.clone(),
        token_file: a.token_file.clone(),
        token_env: std::env::var(TOKEN_ENV).ok(),
    };
    let guard = match exposure.check(a.listen) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("debugmon review: {}", error_chain(&e));
            return ExitCode::from(2);
        }
    };
    let source = match source {
        VerifySource::File(p) => live::LiveSource::File(p),
        VerifySource::Stdin => live::LiveSource::Stdin,
        VerifySource::Stream { nats, subject } => {
            let subject = subject.unwrap_or_else(|| nats.audit_subjects());
            live::LiveSource::Stream { nats, subject }
        }
    };
    // Verifying the input again after each batch runs beside the server.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("debugmon review: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let scheme = if guard.tls.is_some() { "https" } else { "http" };
    let result = rt.block_on(async {
        let listener = http::bind(a.listen).await.map_err(|e| error_chain(&e))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let snapshots = live::start(source, trust, end).map_err(|e| error_chain(&e))?;
        // The address first on stdout, so a script (or a test) that asked
        // for port 0 learns it.
        println!("debugmon review: serving {scheme}://{addr}/");
        let _ = std::io::stdout().flush();
        tokio::select! {
            () = http::serve(listener, guard, snapshots) => Ok(()),
            r = tokio::signal::ctrl_c() => r.map_err(|e| e.to_string()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("debugmon review: {e}");
            ExitCode::from(1)
        }
    }
}
