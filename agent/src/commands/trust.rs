//! `debugmon verify` and `debugmon tail` behind `main.rs`: turn the flags
//! (and, with `--config`, the file's `[nats]` section) into
//! [`run_verify`] / [`run_tail`] arguments and the result into an exit
//! code: 0 ok, 1 problems found or runtime error, 2 usage error.

use std::{io::Write as _, path::PathBuf, process::ExitCode};

use crate::{
    ebpf::loader::error_chain,
    sink::nats::NatsConfig,
    tail::{TailArgs, TailError, run_tail},
    verify::{VerifyArgs, VerifySource, run_verify},
};

/// Where the NATS options come from.
#[derive(Debug, Default, Clone)]
pub struct NatsFlags {
    /// Server URL; overrides the config's `nats.urls`.
    pub url: Option<String>,
    /// Config file whose `[nats]` section gives stream, TLS and credentials.
    pub config: Option<PathBuf>,
    /// Overrides the config's `nats.subject_prefix`.
    pub subject_prefix: Option<String>,
}

impl NatsFlags {
    /// NATS settings: the config's `[nats]` when `--config` is given
    /// (built-in defaults otherwise), with `--nats` overriding the URLs
    /// and `--subject-prefix` the prefix.
    fn resolve(&self) -> Result<NatsConfig, ExitCode> {
        let mut n = match &self.config {
            Some(path) => {
                let (cfg, _) = crate::config::load(Some(path), &crate::config::ProcessEnv, &[])
                    .map_err(|e| {
                        eprintln!("debugmon: invalid configuration:\n{e}");
                        ExitCode::from(2)
                    })?;
                cfg.nats_config().map_err(|e| {
                    eprintln!("debugmon: {}", error_chain(&e));
                    ExitCode::from(2)
                })?
            }
            None => NatsConfig::default(),
        };
        if let Some(u) = &self.url {
            n.urls = vec![u.clone()];
        }
        if let Some(p) = &self.subject_prefix {
            if !crate::sink::nats::valid_prefix(p) {
                eprintln!(
                    "debugmon: --subject-prefix {p:?}: {}",
                    crate::sink::nats::PREFIX_RULE
                );
                return Err(ExitCode::from(2));
            }
            n.subject_prefix.clone_from(p);
        }
        Ok(n)
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
    /// The report as JSON instead of text.
    pub json: bool,
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("debugmon: cannot start the async runtime: {e}");
            ExitCode::from(1)
        })
}

/// `debugmon verify`.
pub fn verify(f: VerifyFlags) -> ExitCode {
    let source = match (&f.file, f.stdin, &f.nats.url) {
        (Some(p), false, None) => VerifySource::File(p.clone()),
        (None, true, None) => VerifySource::Stdin,
        (None, false, Some(_)) => match f.nats.resolve() {
            Ok(n) => VerifySource::Stream {
                nats: Box::new(n),
                subject: f.subject.clone(),
            },
            Err(code) => return code,
        },
        _ => {
            eprintln!("debugmon verify: give exactly one of --file, --stdin, --nats");
            return ExitCode::from(2);
        }
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let report = match rt.block_on(run_verify(VerifyArgs {
        source,
        keys: f.keys,
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

/// `debugmon tail`'s flags.
#[derive(Debug, Default)]
pub struct TailFlags {
    pub nats: NatsFlags,
    pub alerts: bool,
    pub host: Option<String>,
    pub kind: Option<String>,
    pub severity: Option<String>,
    pub since: Option<String>,
    pub json: bool,
    pub limit: Option<u64>,
}

/// `debugmon tail`: until Ctrl-C, `--limit`, or the connection ends.
pub fn tail(f: TailFlags) -> ExitCode {
    let nats = match f.nats.resolve() {
        Ok(n) => n,
        Err(code) => return code,
    };
    let args = TailArgs {
        nats,
        alerts: f.alerts,
        host: f.host,
        kind: f.kind,
        severity: f.severity,
        since: f.since,
        json: f.json,
        limit: f.limit,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let mut out = std::io::stdout().lock();
    let stop = async {
        // Without a handler Ctrl-C would still end the process; with one
        // the output is flushed first. A failed install just means that.
        let _ = tokio::signal::ctrl_c().await;
    };
    match rt.block_on(run_tail(&args, &mut out, stop)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e @ TailError::Since(_)) => {
            eprintln!("debugmon tail: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("debugmon tail: {}", error_chain(&e));
            ExitCode::from(1)
        }
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
            ..VerifyFlags::default()
        });
        assert_eq!(code, ExitCode::from(1));
    }

    #[test]
    fn the_nats_url_overrides_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[nats]\nstream = \"AUDIT\"\nurls = [\"nats://a:1\"]\n",
        )
        .unwrap();
        let n = NatsFlags {
            url: Some("nats://b:2".into()),
            config: Some(path.clone()),
            subject_prefix: None,
        }
        .resolve()
        .unwrap();
        assert_eq!(n.urls, ["nats://b:2"]);
        assert_eq!(n.stream.name, "AUDIT");
        assert_eq!(n.subject_prefix, "debugmon");
    }

    #[test]
    fn the_subject_prefix_comes_from_the_config_or_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[nats]\nsubject_prefix = \"acme.dm\"\n").unwrap();
        let flags = |config: Option<std::path::PathBuf>, prefix: Option<&str>| NatsFlags {
            url: None,
            config,
            subject_prefix: prefix.map(str::to_owned),
        };
        let from_file = flags(Some(path.clone()), None).resolve().unwrap();
        assert_eq!(from_file.audit_subjects(), "acme.dm.audit.>");
        let from_flag = flags(Some(path), Some("other")).resolve().unwrap();
        assert_eq!(from_flag.alert_subjects(), "other.alert.>");
        assert_eq!(
            flags(None, Some("a.>")).resolve().unwrap_err(),
            ExitCode::from(2)
        );
    }
}
