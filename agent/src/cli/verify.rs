//! `debugmon verify`: reads sealed records from a file, stdin or the
//! JetStream stream, checks them ([`crate::record::verify`]) and prints the
//! report; exit 1 on any problem.

use std::{
    io::{self, Write as _},
    path::PathBuf,
    process::ExitCode,
};

use thiserror::Error;

use super::{nats::NatsFlags, runtime};
use crate::{
    error::error_chain,
    record::verify::{
        LineSink, Verifier, VerifyError, VerifyReport, read_lines,
        trust::{DEFAULT_TRUSTED_KEYS, Trust, TrustedKeys},
    },
    sink::nats::{NatsConfig, NatsError, read::read_subject},
};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    source: SourceArgs,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

/// Where the records come from and whose keys to believe: the flags
/// `verify` and `review` share.
#[derive(clap::Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["file", "stdin", "nats"])))]
pub struct SourceArgs {
    /// A file of records, one JSON object per line (the file sink's, or an ECS file)
    #[arg(long)]
    file: Option<PathBuf>,
    /// Records on standard input (e.g. rotated files, through `zcat records.*.gz`)
    #[arg(long)]
    stdin: bool,
    /// Read the JetStream stream at this server URL
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// Subject to read from the stream [default: <nats.subject_prefix>.audit.>, debugmon.audit.>
    /// without --config]
    #[arg(long)]
    subject: Option<String>,
    /// First tokens of the records' subjects [default: nats.subject_prefix of the config, else
    /// debugmon]
    #[arg(long, value_name = "PREFIX")]
    subject_prefix: Option<String>,
    /// Config file whose [nats] section gives servers, stream, TLS and credentials
    #[arg(long)]
    config: Option<PathBuf>,
    /// Trusted host public key (hex) for every host; repeatable [default: each host's keys from
    /// the trusted-keys file]
    #[arg(long = "key", value_name = "HEX")]
    keys: Vec<String>,
    /// File of trusted host keys, `HOST HEXKEY` a line (written by `debugmon key add`)
    #[arg(long, value_name = "PATH", default_value = DEFAULT_TRUSTED_KEYS)]
    trusted_keys: PathBuf,
    /// Trust the key a host's start record carries when the trusted-keys file does not name
    /// the host (or there is no file): proves the chain intact, not who wrote it
    #[arg(long)]
    trust_on_first_use: bool,
    /// Judge whether each chain ends open (no stop record, no recent heartbeat), and silent
    /// hosts, as of this time (RFC 3339, or `now`) [default: the newest record in the input]
    #[arg(long, value_name = "TIME")]
    now: Option<String>,
}

impl SourceArgs {
    /// The flags as the readers take them.
    pub(crate) fn flags(&self, json: bool) -> VerifyFlags {
        VerifyFlags {
            file: self.file.clone(),
            stdin: self.stdin,
            nats: NatsFlags {
                url: self.nats.clone(),
                config: self.config.clone(),
                subject_prefix: self.subject_prefix.clone(),
            },
            subject: self.subject.clone(),
            keys: self.keys.clone(),
            trusted_keys: Some(self.trusted_keys.clone()),
            trust_on_first_use: self.trust_on_first_use,
            now: self.now.clone(),
            json,
        }
    }

    /// `--now` as given.
    pub(crate) fn now(&self) -> Option<&str> {
        self.now.as_deref()
    }
}

/// `debugmon verify`'s flags. Exactly one source: `file`, `stdin` or `nats.url`.
#[derive(Debug, Default)]
pub struct VerifyFlags {
    pub file: Option<PathBuf>,
    pub stdin: bool,
    pub nats: NatsFlags,
    /// `None`: every record, `<nats.subject_prefix>.audit.>`.
    pub subject: Option<String>,
    pub keys: Vec<String>,
    /// `None`: [`DEFAULT_TRUSTED_KEYS`].
    pub trusted_keys: Option<PathBuf>,
    pub trust_on_first_use: bool,
    /// `--now` as given.
    pub now: Option<String>,
    /// The report as JSON instead of text.
    pub json: bool,
}

/// Where the records come from.
#[derive(Debug, Clone)]
pub enum VerifySource {
    File(PathBuf),
    Stdin,
    /// Every message of `subject` in the configured stream, read with an
    /// ephemeral ordered consumer; `None`: every record,
    /// `<nats.subject_prefix>.audit.>`.
    Stream {
        nats: Box<NatsConfig>,
        subject: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct VerifyArgs {
    pub source: VerifySource,
    /// Whose keys to believe.
    pub trust: Trust,
    /// The end of the input, Unix ns (`None`: its newest record).
    pub now_ns: Option<i64>,
}

#[derive(Debug, Error)]
pub enum VerifyRunError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error("the record reader task failed")]
    Task(#[source] tokio::task::JoinError),
}

/// Reads the source and verifies it.
pub async fn run_verify(args: VerifyArgs) -> Result<VerifyReport, VerifyRunError> {
    let v = Verifier::with_trust(args.trust)?.with_now(args.now_ns);
    Ok(read_source(args.source, v).await?.finish())
}

/// Feeds every record of `source` to `sink` and hands it back: the one
/// reader of files, stdin and the stream that `verify` and `review` share.
pub async fn read_source<S: LineSink + Send + 'static>(
    source: VerifySource,
    mut sink: S,
) -> Result<S, VerifyRunError> {
    match source {
        VerifySource::File(path) => {
            let what = path.display().to_string();
            tokio::task::spawn_blocking(move || {
                let f = std::fs::File::open(&path).map_err(|io_error| VerifyError::Read {
                    what: what.clone(),
                    io_error,
                })?;
                read_lines(io::BufReader::new(f), &what, &mut sink)?;
                Ok::<_, VerifyRunError>(sink)
            })
            .await
            .map_err(VerifyRunError::Task)?
        }
        VerifySource::Stdin => tokio::task::spawn_blocking(move || {
            read_lines(io::stdin().lock(), "stdin", &mut sink)?;
            Ok(sink)
        })
        .await
        .map_err(VerifyRunError::Task)?,
        VerifySource::Stream { nats, subject } => {
            let subject = subject.unwrap_or_else(|| nats.audit_subjects());
            read_subject(&nats, &subject, |line| sink.push_line(line)).await?;
            Ok(sink)
        }
    }
}

pub fn main(a: Args) -> ExitCode {
    verify(a.source.flags(a.json))
}

/// `--now`: RFC 3339, or `now`.
pub(crate) fn parse_now(s: &str) -> Result<i64, String> {
    let t = if s == "now" {
        chrono::Utc::now()
    } else {
        chrono::DateTime::parse_from_rfc3339(s)
            .map_err(|e| format!("--now {s:?}: {e} (give RFC 3339, or `now`)"))?
            .with_timezone(&chrono::Utc)
    };
    t.timestamp_nanos_opt()
        .ok_or_else(|| format!("--now {s:?}: out of range"))
}

/// Which keys to believe: `--key`, else the trusted-keys file (a missing
/// file is an error unless `--trust-on-first-use`).
pub(crate) fn trust_of(f: &VerifyFlags) -> Result<Trust, String> {
    if !f.keys.is_empty() {
        return Ok(Trust::Pinned(f.keys.clone()));
    }
    let path = f
        .trusted_keys
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_TRUSTED_KEYS));
    match TrustedKeys::load(&path).map_err(|e| error_chain(&e))? {
        Some(keys) => Ok(Trust::File {
            keys,
            tofu: f.trust_on_first_use,
        }),
        None if f.trust_on_first_use => Ok(Trust::FirstUse),
        None => Err(format!(
            "no trusted-keys file at {}: add each host's key with `debugmon key add HOST HEXKEY` (the package adds its own host's), pin keys with --key, or pass --trust-on-first-use",
            path.display()
        )),
    }
}

/// The one source the flags name (`cmd` names the command in messages).
pub(crate) fn source_of(f: &VerifyFlags, cmd: &str) -> Result<VerifySource, ExitCode> {
    Ok(match (&f.file, f.stdin, &f.nats.url) {
        (Some(p), false, None) => VerifySource::File(p.clone()),
        (None, true, None) => VerifySource::Stdin,
        (None, false, Some(_)) => VerifySource::Stream {
            nats: Box::new(f.nats.resolve()?),
            subject: f.subject.clone(),
        },
        _ => {
            eprintln!("debugmon {cmd}: give exactly one of --file, --stdin, --nats");
            return Err(ExitCode::from(2));
        }
    })
}

/// `debugmon verify` on parsed flags.
pub fn verify(f: VerifyFlags) -> ExitCode {
    let source = match source_of(&f, "verify") {
        Ok(s) => s,
        Err(code) => return code,
    };
    let trust = match trust_of(&f) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("debugmon verify: {e}");
            return ExitCode::from(2);
        }
    };
    let now_ns = match f.now.as_deref().map(parse_now).transpose() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("debugmon verify: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let report = match rt.block_on(run_verify(VerifyArgs {
        source,
        trust,
        now_ns,
    })) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("debugmon verify: {}", error_chain(&e));
            return ExitCode::from(1);
        }
    };
    let text = if f.json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => j + "\n",
            Err(e) => {
                eprintln!("debugmon verify: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        report.to_string()
    };
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        eprintln!("debugmon verify: writing the report: {e}");
        return ExitCode::from(1);
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_wants_exactly_one_source() {
        let none = verify(VerifyFlags::default());
        assert_eq!(none, ExitCode::from(2));
        let two = verify(VerifyFlags {
            file: Some("/nonexistent".into()),
            stdin: true,
            ..VerifyFlags::default()
        });
        assert_eq!(two, ExitCode::from(2));
    }

    #[test]
    fn a_missing_file_is_a_runtime_error() {
        let code = verify(VerifyFlags {
            file: Some("/nonexistent-debugmon/records.jsonl".into()),
            trust_on_first_use: true,
            ..VerifyFlags::default()
        });
        assert_eq!(code, ExitCode::from(1));
    }

    #[test]
    fn without_keys_a_trusted_keys_file_or_first_use_is_required() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("trusted-keys");
        let flags = |tofu: bool| VerifyFlags {
            file: Some(dir.path().join("records.jsonl")),
            trusted_keys: Some(missing.clone()),
            trust_on_first_use: tofu,
            ..VerifyFlags::default()
        };
        let e = trust_of(&flags(false)).unwrap_err();
        assert!(
            e.contains("no trusted-keys file") && e.contains("--trust-on-first-use"),
            "{e}"
        );
        assert_eq!(verify(flags(false)), ExitCode::from(2));
        assert!(matches!(trust_of(&flags(true)), Ok(Trust::FirstUse)));
        std::fs::write(&missing, "db-1 not-a-key\n").unwrap();
        let e = trust_of(&flags(true)).unwrap_err();
        assert!(e.contains(":1:"), "a bad file is refused, not skipped: {e}");
        assert!(parse_now("2026-01-01T00:00:00Z").is_ok());
        assert!(parse_now("yesterday").is_err());
    }
}
