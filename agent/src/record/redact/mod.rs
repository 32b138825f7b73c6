//! Removes secrets from command lines and environment-like strings before
//! a record is sealed: once signed, a leaked password cannot be edited out.
//!
//! Values become `[REDACTED]`; keys stay (`password=[REDACTED]`), so the
//! record still says *that* a secret was passed. Patterns are regexes with
//! a capture group named `secret` (the part replaced) or, without one, the
//! whole match is replaced. Besides the patterns, argv rules need the
//! argument list: a flag whose *next* argument is a secret (`--password X`),
//! mysql's glued `-pSECRET`, and the flags of particular programs
//! ([`program`]: `sshpass -p`, `curl -u user:pw`, `openssl -passin pass:X`),
//! only for the programs that mean it (`-p 8080` is a port for most
//! others). A captured environment variable whose *name* says it holds a
//! secret (`PGPASSWORD`) has its whole value redacted.

mod program;

use std::borrow::Cow;

use program::{Arg, Carries, PROGRAM_FLAGS, ProgramFlag};
use regex::{Regex, RegexSet};
use thiserror::Error;

/// What a secret becomes.
pub const REDACTED: &str = "[REDACTED]";

/// Key-value forms: `password=x`, `DB_PASSWORD=x`, `--token=x`,
/// `api_key=x`, `aws_secret_access_key=x`, `?token=x&`. The key must *end*
/// in the secret word, so `--password-file=/x` and `PWD=/home` stay.
const KEY_VALUE: &str = r#"(?i)(?:^|[^a-z0-9_])[a-z0-9_.-]*?(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|private[_-]?key|_pwd|pgpassword)=(?P<secret>"[^"]*"|'[^']*'|[^\s&;,"']+)"#;
/// `Authorization: Bearer x`, `Authorization: Basic x`, `Proxy-Authorization: ...`.
const AUTH_HEADER: &str =
    r"(?i)authorization:\s*(?:(?:bearer|basic|token|digest|negotiate)\s+)?(?P<secret>\S+)";
/// Token headers: `X-Api-Key: x`, `X-Auth-Token: x`, `Private-Token: x`.
const TOKEN_HEADER: &str =
    r"(?i)\b(?:x-)?(?:api-key|auth-token|private-token|access-token):\s*(?P<secret>\S+)";
/// A bare `Bearer x` (e.g. passed as its own argument).
const BEARER: &str = r"(?i)\bbearer\s+(?P<secret>[a-z0-9._~+/=-]{8,})";
/// `scheme://user:pass@host`. The password runs to the *last* `@` before
/// the path (`[^\s/?#]*` is greedy), so one with an `@` in it is covered
/// whole.
const URL_CREDS: &str = r"(?i)\b[a-z][a-z0-9+.-]*://[^/?#\s:@]*:(?P<secret>[^\s/?#]*[^\s/?#@])@";
/// Environment variable names whose whole value is a secret.
const SECRET_ENV_NAME: &str = r"(?i)(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|_pwd|_pass)$";
/// AWS access key ids; whole words only, so `XAKIA...` stays.
const AWS_KEY_ID: &str = r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b";

/// Flags whose next argument is the secret.
const SECRET_FLAGS: &[&str] = &[
    "--password",
    "--passwd",
    "--pass",
    "--passphrase",
    "--token",
    "--auth-token",
    "--access-token",
    "--api-key",
    "--apikey",
    "--secret",
    "--client-secret",
    "--secret-key",
    "--secret-access-key",
    "--aws-secret-access-key",
    "--private-key-password",
    "-password",
];
/// Programs for which `-pSECRET` is a password, and `--password` without
/// `=` prompts instead of taking the next argument.
const MYSQL_LIKE: &[&str] = &[
    "mysql",
    "mysqldump",
    "mysqladmin",
    "mysqlimport",
    "mysqlshow",
    "mysqlcheck",
    "mysqlslap",
    "mysqlpump",
    "mysqlbinlog",
    "mariadb",
    "mariadb-dump",
    "mariadb-admin",
    "mariadb-import",
    "mariadb-check",
];

#[derive(Debug, Error)]
pub enum RedactError {
    #[error("redaction pattern {pattern:?} does not compile")]
    Pattern {
        pattern: String,
        #[source]
        source: regex::Error,
    },
}

/// Redaction settings (config file section `[redact]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedactConfig {
    /// Use the built-in patterns, flags and programs.
    pub defaults: bool,
    /// Extra regexes; a group named `secret` is replaced, else the match.
    pub patterns: Vec<String>,
    /// Extra flags whose next argument is a secret (exact match).
    pub secret_flags: Vec<String>,
    /// Extra program names (basename of argv\[0\]) taking `-pSECRET`.
    pub mysql_like: Vec<String>,
}

impl Default for RedactConfig {
    fn default() -> Self {
        Self {
            defaults: true,
            patterns: Vec::new(),
            secret_flags: Vec::new(),
            mysql_like: Vec::new(),
        }
    }
}

/// Compiled redaction rules. Cheap to share (`&self` everywhere).
#[derive(Debug, Clone)]
pub struct Redactor {
    patterns: Vec<Regex>,
    /// The same patterns in one automaton: one scan says which (usually
    /// none) can match, instead of one scan per pattern.
    set: RegexSet,
    secret_flags: Vec<String>,
    mysql_like: Vec<String>,
    program_flags: &'static [ProgramFlag],
    /// `None` without the defaults: then no name is secret by itself.
    secret_env_name: Option<Regex>,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(&RedactConfig::default()).expect("invariant: the built-in patterns compile")
    }
}

impl Redactor {
    pub fn new(cfg: &RedactConfig) -> Result<Self, RedactError> {
        let builtin: &[&str] = if cfg.defaults {
            &[
                KEY_VALUE,
                AUTH_HEADER,
                TOKEN_HEADER,
                BEARER,
                URL_CREDS,
                AWS_KEY_ID,
            ]
        } else {
            &[]
        };
        let patterns = builtin
            .iter()
            .copied()
            .chain(cfg.patterns.iter().map(String::as_str))
            .map(|p| {
                Regex::new(p).map_err(|source| RedactError::Pattern {
                    pattern: p.to_owned(),
                    source,
                })
            })
            .collect::<Result<Vec<Regex>, _>>()?;
        let set = RegexSet::new(patterns.iter().map(Regex::as_str)).map_err(|source| {
            RedactError::Pattern {
                pattern: "(all patterns together)".to_owned(),
                source,
            }
        })?;
        let defaults = |d: &[&str]| -> Vec<String> {
            if cfg.defaults {
                d.iter().map(|s| (*s).to_owned()).collect()
            } else {
                Vec::new()
            }
        };
        let mut secret_flags = defaults(SECRET_FLAGS);
        secret_flags.extend(cfg.secret_flags.iter().cloned());
        let mut mysql_like = defaults(MYSQL_LIKE);
        mysql_like.extend(cfg.mysql_like.iter().cloned());
        let secret_env_name = cfg.defaults.then(|| {
            Regex::new(SECRET_ENV_NAME).expect("invariant: the built-in pattern compiles")
        });
        Ok(Self {
            patterns,
            set,
            secret_flags,
            mysql_like,
            program_flags: if cfg.defaults { PROGRAM_FLAGS } else { &[] },
            secret_env_name,
        })
    }

    /// Redacts an environment-like or free-form string.
    pub fn redact_str<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(s);
        if !self.set.is_match(s) {
            return out;
        }
        // All patterns in order, as without the set: a replacement could in
        // principle let a later pattern match where it did not before.
        for re in &self.patterns {
            if let Cow::Owned(o) = replace(re, &out) {
                out = Cow::Owned(o);
            }
        }
        out
    }

    /// Redacts the value of captured environment variable `name`: all of
    /// it when the name says it is a secret (`PGPASSWORD`, `API_TOKEN`),
    /// else what the patterns find in it.
    pub fn redact_env<'a>(&self, name: &str, value: &'a str) -> Cow<'a, str> {
        if self
            .secret_env_name
            .as_ref()
            .is_some_and(|re| re.is_match(name))
        {
            if value == REDACTED || value.is_empty() {
                return Cow::Borrowed(value);
            }
            return Cow::Owned(REDACTED.to_owned());
        }
        self.redact_str(value)
    }

    /// Whether the program `argv0` names takes `-pSECRET` (by basename).
    fn is_mysql_like(&self, argv0: Option<&str>) -> bool {
        self.mysql_like.iter().any(|m| m == basename(argv0))
    }

    /// The program-specific flags of the program `argv0` names.
    fn flags_of(&self, argv0: Option<&str>) -> Vec<&'static ProgramFlag> {
        let program = basename(argv0);
        self.program_flags
            .iter()
            .filter(|f| f.programs.contains(&program))
            .collect()
    }

    /// True when [`Self::redact_argv`] would certainly change nothing: no
    /// secret flag, no glued `-p` for a mysql-like program, no pattern
    /// matching any argument. Conservative (a `true` is always right), so
    /// the caller can skip copying the argv in the common case.
    pub fn argv_is_clean<S: AsRef<str>>(&self, argv: &[S]) -> bool {
        if let Some(at) = program::wrapped_at(argv) {
            return self.argv_is_clean(&argv[..at]) && self.argv_is_clean(&argv[at..]);
        }
        let argv0 = argv.first().map(AsRef::as_ref);
        let mysql = self.is_mysql_like(argv0);
        let flags = self.flags_of(argv0);
        argv.iter().map(AsRef::as_ref).enumerate().all(|(i, arg)| {
            let flag = i > 0
                && (self.secret_flags.iter().any(|f| f == arg)
                    || (mysql && arg.starts_with("-p"))
                    || !matches!(program::classify(&flags, arg), Arg::Other));
            !flag && !self.set.is_match(arg)
        })
    }

    /// Redacts an argv in place; returns how many arguments changed.
    pub fn redact_argv(&self, argv: &mut [String]) -> usize {
        if let Some(at) = program::wrapped_at(argv) {
            let (wrapper, command) = argv.split_at_mut(at);
            return self.redact_argv(wrapper) + self.redact_argv(command);
        }
        let argv0 = argv.first().map(String::as_str);
        let mysql = self.is_mysql_like(argv0);
        let flags = self.flags_of(argv0);
        let mut changed = 0;
        // How the argument after a secret-bearing flag carries its secret.
        let mut next: Option<Carries> = None;
        for (i, arg) in argv.iter_mut().enumerate() {
            if let Some(carries) = next.take() {
                if let Some(r) = program::redact_value(carries, arg) {
                    *arg = r;
                    changed += 1;
                }
                continue;
            }
            if i > 0 && self.secret_flags.iter().any(|f| f == arg) {
                // mysql's `--password` takes no separate value: it prompts.
                next = (!(mysql && arg == "--password")).then_some(Carries::Value);
                continue;
            }
            match program::classify(&flags, arg) {
                _ if i == 0 => {}
                Arg::Flag(f) => {
                    next = Some(f.carries);
                    continue;
                }
                Arg::Joined { flag, prefix } => {
                    if let Some(r) = program::redact_value(flag.carries, &arg[prefix..]) {
                        *arg = format!("{}{r}", &arg[..prefix]);
                        changed += 1;
                        continue;
                    }
                }
                Arg::Other => {}
            }
            if mysql && i > 0 && arg.len() > 2 && arg.starts_with("-p") && !arg.starts_with("--") {
                if arg[2..] != *REDACTED {
                    *arg = format!("-p{REDACTED}");
                    changed += 1;
                }
                continue;
            }
            if let Cow::Owned(o) = self.redact_str(arg) {
                *arg = o;
                changed += 1;
            }
        }
        changed
    }
}

/// The basename of argv\[0\] (`""` without one).
pub(super) fn basename(argv0: Option<&str>) -> &str {
    argv0.map_or("", |a| a.rsplit('/').next().unwrap_or(a))
}

fn replace<'a>(re: &Regex, s: &'a str) -> Cow<'a, str> {
    let mut out = String::new();
    let mut last = 0;
    for caps in re.captures_iter(s) {
        let m = caps
            .name("secret")
            .or_else(|| caps.get(0))
            .expect("invariant: group 0 always participates");
        if m.as_str() == REDACTED || m.is_empty() {
            continue;
        }
        out.push_str(&s[last..m.start()]);
        out.push_str(REDACTED);
        last = m.end();
    }
    if last == 0 {
        return Cow::Borrowed(s);
    }
    out.push_str(&s[last..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
