//! Removes secrets from command lines and environment-like strings before
//! a record is sealed: once signed, a leaked password cannot be edited out.
//!
//! Values become `[REDACTED]`; keys stay (`password=[REDACTED]`), so the
//! record still says *that* a secret was passed. Patterns are regexes with
//! a capture group named `secret` (the part replaced) or, without one, the
//! whole match is replaced. Besides the patterns, two argv rules need the
//! argument list: a flag whose *next* argument is a secret (`--password X`)
//! and mysql's glued `-pSECRET`, only for the programs that mean it
//! (`-p 8080` is a port for most others).

use std::borrow::Cow;

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
/// `scheme://user:pass@host`.
const URL_CREDS: &str = r"(?i)\b[a-z][a-z0-9+.-]*://[^/\s:@]*:(?P<secret>[^@\s/]+)@";
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
        Ok(Self {
            patterns,
            set,
            secret_flags,
            mysql_like,
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

    /// Whether the program `argv0` names takes `-pSECRET` (by basename).
    fn is_mysql_like(&self, argv0: Option<&str>) -> bool {
        let program = argv0.map_or("", |a| a.rsplit('/').next().unwrap_or(a));
        self.mysql_like.iter().any(|m| m == program)
    }

    /// True when [`Self::redact_argv`] would certainly change nothing: no
    /// secret flag, no glued `-p` for a mysql-like program, no pattern
    /// matching any argument. Conservative (a `true` is always right), so
    /// the caller can skip copying the argv in the common case.
    pub fn argv_is_clean(&self, argv: &[&str]) -> bool {
        let mysql = self.is_mysql_like(argv.first().copied());
        argv.iter().enumerate().all(|(i, arg)| {
            let flag = i > 0
                && (self.secret_flags.iter().any(|f| f == arg) || (mysql && arg.starts_with("-p")));
            !flag && !self.set.is_match(arg)
        })
    }

    /// Redacts an argv in place; returns how many arguments changed.
    pub fn redact_argv(&self, argv: &mut [String]) -> usize {
        let mysql = self.is_mysql_like(argv.first().map(String::as_str));
        let mut changed = 0;
        let mut next_is_secret = false;
        for (i, arg) in argv.iter_mut().enumerate() {
            if next_is_secret {
                next_is_secret = false;
                if arg.as_str() != REDACTED {
                    *arg = REDACTED.to_owned();
                    changed += 1;
                }
                continue;
            }
            if i > 0 && self.secret_flags.iter().any(|f| f == arg) {
                // mysql's `--password` takes no separate value: it prompts.
                next_is_secret = !(mysql && arg == "--password");
                continue;
            }
            if mysql && i > 0 && arg.len() > 2 && arg.starts_with("-p") && !arg.starts_with("--") {
                *arg = format!("-p{REDACTED}");
                changed += 1;
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
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        let r = Redactor::default();
        let mut v: Vec<String> = words.iter().map(|s| (*s).to_owned()).collect();
        r.redact_argv(&mut v);
        v
    }

    #[test]
    fn argv_table() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["app", "password=hunter2"],
                &["app", "password=[REDACTED]"],
            ),
            (
                &["app", "--password", "hunter2", "x"],
                &["app", "--password", "[REDACTED]", "x"],
            ),
            (
                &["app", "--password=hunter2"],
                &["app", "--password=[REDACTED]"],
            ),
            (
                &["mysql", "-uroot", "-phunter2", "db"],
                &["mysql", "-uroot", "-p[REDACTED]", "db"],
            ),
            (
                &["/usr/bin/mysqldump", "-ps3cr3t"],
                &["/usr/bin/mysqldump", "-p[REDACTED]"],
            ),
            (&["app", "token=abc123"], &["app", "token=[REDACTED]"]),
            (
                &["gh", "--token", "ghp_abc"],
                &["gh", "--token", "[REDACTED]"],
            ),
            (&["app", "api_key=k1"], &["app", "api_key=[REDACTED]"]),
            (&["app", "--apikey=k2"], &["app", "--apikey=[REDACTED]"]),
            (&["aws", "AKIAIOSFODNN7EXAMPLE"], &["aws", "[REDACTED]"]),
            (
                &[
                    "env",
                    "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                ],
                &["env", "AWS_SECRET_ACCESS_KEY=[REDACTED]"],
            ),
            (
                &["curl", "-H", "Authorization: Bearer eyJhbGciOi.x.y"],
                &["curl", "-H", "Authorization: Bearer [REDACTED]"],
            ),
            (
                &["psql", "postgres://alice:pw@db:5432/x"],
                &["psql", "postgres://alice:[REDACTED]@db:5432/x"],
            ),
            (
                &["curl", "https://h/x?token=abc&page=2"],
                &["curl", "https://h/x?token=[REDACTED]&page=2"],
            ),
            (
                &["app", "--client-secret", "cs"],
                &["app", "--client-secret", "[REDACTED]"],
            ),
            (
                &["curl", "-H", "X-Api-Key: k3"],
                &["curl", "-H", "X-Api-Key: [REDACTED]"],
            ),
            // Look-alikes that must stay.
            (
                &["app", "--password-file", "/x"],
                &["app", "--password-file", "/x"],
            ),
            (
                &["app", "--password-file=/x"],
                &["app", "--password-file=/x"],
            ),
            (&["ssh", "-p", "8080", "h"], &["ssh", "-p", "8080", "h"]),
            (&["nc", "-p8080"], &["nc", "-p8080"]),
            (&["passwd", "alice"], &["passwd", "alice"]),
            (
                &["app", "XAKIAIOSFODNN7EXAMPLE"],
                &["app", "XAKIAIOSFODNN7EXAMPLE"],
            ),
            (&["app", "tokens=5"], &["app", "tokens=5"]),
            (&["app", "PWD=/home/a"], &["app", "PWD=/home/a"]),
            (
                &["mysql", "-P", "3306", "-p"],
                &["mysql", "-P", "3306", "-p"],
            ),
            (
                &["mysql", "--password", "db"],
                &["mysql", "--password", "db"],
            ),
            (
                &["git", "clone", "https://host/repo.git"],
                &["git", "clone", "https://host/repo.git"],
            ),
            (&["--password", "x"], &["--password", "x"]),
        ];
        for (input, want) in cases {
            assert_eq!(argv(input), *want, "input {input:?}");
        }
    }

    #[test]
    fn a_clean_argv_is_one_redaction_would_not_change() {
        let r = Redactor::default();
        let mut dirty = 0;
        let mut clean = 0;
        let corpus: Vec<Vec<&str>> = vec![
            vec!["app", "password=hunter2"],
            vec!["app", "--password", "hunter2"],
            vec!["mysql", "-phunter2"],
            vec!["mysql", "-p"],
            vec!["mysql", "--password", "db"],
            vec!["aws", "AKIAIOSFODNN7EXAMPLE"],
            vec!["curl", "-H", "Authorization: Bearer eyJhbGciOi.x.y"],
            vec!["psql", "postgres://alice:pw@db:5432/x"],
            vec!["app", "password=[REDACTED]"],
            vec!["app", "--password"],
            vec!["/bin/true", "storm-17"],
            vec!["ssh", "-p", "8080", "h"],
            vec!["app", "--password-file=/x"],
            vec!["git", "clone", "https://host/repo.git"],
            vec!["passwd", "alice"],
            vec![],
        ];
        for argv in &corpus {
            let mut owned: Vec<String> = argv.iter().map(|s| (*s).to_owned()).collect();
            let changed = r.redact_argv(&mut owned);
            if r.argv_is_clean(argv) {
                clean += 1;
                assert_eq!(changed, 0, "called clean but redaction changed {argv:?}");
            } else if changed > 0 {
                dirty += 1;
            }
        }
        // Both verdicts occur: the check is neither always-true nor always-false.
        assert!(clean >= 5 && dirty >= 6, "clean {clean}, dirty {dirty}");
        assert!(r.argv_is_clean(&["/bin/true", "x"]));
        assert!(!r.argv_is_clean(&["app", "token=abc"]));
        assert!(!r.argv_is_clean(&["app", "--token", "abc"]));
        assert!(!r.argv_is_clean(&["mysqldump", "-pabc"]));
    }

    #[test]
    fn env_strings() {
        let r = Redactor::default();
        for (input, want) in [
            ("PGPASSWORD=pw", "PGPASSWORD=[REDACTED]"),
            ("MYSQL_PWD=pw", "MYSQL_PWD=[REDACTED]"),
            ("GITHUB_TOKEN=ghp_x", "GITHUB_TOKEN=[REDACTED]"),
            ("HOME=/root", "HOME=/root"),
            ("PASSWORD_FILE=/run/secret", "PASSWORD_FILE=/run/secret"),
            (
                "a password=x b token=\"y z\"",
                "a password=[REDACTED] b token=[REDACTED]",
            ),
        ] {
            assert_eq!(r.redact_str(input), want, "input {input:?}");
        }
        assert!(matches!(r.redact_str("HOME=/root"), Cow::Borrowed(_)));
    }

    #[test]
    fn redaction_is_idempotent_and_counted() {
        let r = Redactor::default();
        let mut v = vec![
            "app".to_owned(),
            "password=x".to_owned(),
            "--token".to_owned(),
            "t".to_owned(),
        ];
        assert_eq!(r.redact_argv(&mut v), 2);
        let once = v.clone();
        assert_eq!(r.redact_argv(&mut v), 0);
        assert_eq!(v, once);
    }

    #[test]
    fn configured_patterns_flags_and_programs() {
        let cfg = RedactConfig {
            defaults: false,
            patterns: vec![
                r"pin:(?P<secret>\d+)".to_owned(),
                r"\bsk-[a-z0-9]{6,}".to_owned(),
            ],
            secret_flags: vec!["--pin".to_owned()],
            mysql_like: vec!["mydb".to_owned()],
        };
        let r = Redactor::new(&cfg).unwrap();
        let mut v: Vec<String> = [
            "mydb",
            "-pabc",
            "--pin",
            "1",
            "pin:42",
            "sk-abcdef12",
            "password=x",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        r.redact_argv(&mut v);
        assert_eq!(
            v,
            [
                "mydb",
                "-p[REDACTED]",
                "--pin",
                "[REDACTED]",
                "pin:[REDACTED]",
                "[REDACTED]",
                "password=x"
            ]
        );
        let bad = RedactConfig {
            patterns: vec!["(unclosed".to_owned()],
            ..RedactConfig::default()
        };
        let err = Redactor::new(&bad).unwrap_err();
        assert!(err.to_string().contains("(unclosed"), "{err}");
    }
}
