//! Secrets that only a given program's flags carry, so they cannot be
//! matched by pattern alone: `sshpass -p X` (for ssh, `-p` is a port),
//! `curl -u user:pw`, `redis-cli -a X`, `openssl -passin pass:X`.

use super::REDACTED;

/// How a program's flag carries its secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Carries {
    /// The whole value is the secret: `sshpass -p X`.
    Value,
    /// The value is `user:password`; only what follows the first `:` is
    /// secret (`curl -u alice` without one prompts, nothing to hide).
    UserPassword,
    /// An openssl pass phrase source: `pass:X` carries the secret itself;
    /// `env:VAR`, `file:PATH`, `fd:N` and `stdin` only say where it is, and
    /// that reference stays in the record.
    PassSource,
}

/// One program-specific flag.
#[derive(Debug, Clone, Copy)]
pub(super) struct ProgramFlag {
    /// Basenames of argv\[0\].
    pub(super) programs: &'static [&'static str],
    pub(super) flag: &'static str,
    pub(super) carries: Carries,
    /// Whether the value may be glued to a short flag (`-pX`, `-uuser:pw`),
    /// as the program's own parser accepts.
    pub(super) glued: bool,
}

const OPENSSL: &[&str] = &["openssl"];
const CURL: &[&str] = &["curl"];

/// The built-in program flags (`[redact] defaults = true`).
pub(super) const PROGRAM_FLAGS: &[ProgramFlag] = &[
    flag(OPENSSL, "-passin", Carries::PassSource, false),
    flag(OPENSSL, "-passout", Carries::PassSource, false),
    flag(OPENSSL, "-pass", Carries::PassSource, false),
    flag(OPENSSL, "-kpass", Carries::PassSource, false),
    // `openssl enc -k PASSWORD`.
    flag(OPENSSL, "-k", Carries::Value, false),
    flag(CURL, "-u", Carries::UserPassword, true),
    flag(CURL, "--user", Carries::UserPassword, false),
    flag(CURL, "-U", Carries::UserPassword, true),
    flag(CURL, "--proxy-user", Carries::UserPassword, false),
    flag(&["sshpass"], "-p", Carries::Value, true),
    flag(
        &["redis-cli", "valkey-cli", "keydb-cli"],
        "-a",
        Carries::Value,
        false,
    ),
];

const fn flag(
    programs: &'static [&'static str],
    flag: &'static str,
    carries: Carries,
    glued: bool,
) -> ProgramFlag {
    ProgramFlag {
        programs,
        flag,
        carries,
        glued,
    }
}

/// Programs that run another command, with their options that take a
/// value: their own flags end at the command, which is redacted as an
/// argv of its own (`sshpass -p X ssh -p 22 h`: the second `-p` is ssh's).
const WRAPPERS: &[(&str, &[&str])] = &[("sshpass", &["-p", "-f", "-d", "-P"])];

/// Where the wrapped command starts in `argv`, when `argv[0]` names a
/// wrapper and a command follows its options.
pub(super) fn wrapped_at<S: AsRef<str>>(argv: &[S]) -> Option<usize> {
    let program = super::basename(argv.first().map(AsRef::as_ref));
    let (_, takes_value) = WRAPPERS.iter().find(|(p, _)| *p == program)?;
    let mut i = 1;
    while let Some(arg) = argv.get(i).map(AsRef::as_ref) {
        if arg == "--" {
            return (i + 1 < argv.len()).then_some(i + 1);
        }
        if !arg.starts_with('-') {
            return Some(i);
        }
        // A value flag alone takes the next argument as its value.
        i += if takes_value.contains(&arg) { 2 } else { 1 };
    }
    None
}

/// The redacted form of a flag's value, or `None` when it has no secret.
pub(super) fn redact_value(carries: Carries, value: &str) -> Option<String> {
    let redacted = match carries {
        Carries::Value => REDACTED.to_owned(),
        Carries::UserPassword => {
            let (user, _) = value.split_once(':')?;
            format!("{user}:{REDACTED}")
        }
        Carries::PassSource => {
            value.strip_prefix("pass:")?;
            format!("pass:{REDACTED}")
        }
    };
    (redacted != value).then_some(redacted)
}

/// What an argument means for the flags of one program.
pub(super) enum Arg<'f> {
    /// The flag alone: its value is the next argument.
    Flag(&'f ProgramFlag),
    /// The flag with its value in the same argument; `prefix` is the part
    /// kept (`-u`, `--user=`).
    Joined {
        flag: &'f ProgramFlag,
        prefix: usize,
    },
    Other,
}

/// Classifies `arg` against `flags` (those of the running program).
pub(super) fn classify<'f>(flags: &[&'f ProgramFlag], arg: &str) -> Arg<'f> {
    for f in flags {
        if arg == f.flag {
            return Arg::Flag(f);
        }
        if f.flag.starts_with("--")
            && arg.len() > f.flag.len()
            && arg.starts_with(f.flag)
            && arg.as_bytes()[f.flag.len()] == b'='
        {
            return Arg::Joined {
                flag: f,
                prefix: f.flag.len() + 1,
            };
        }
        if f.glued && arg.len() > f.flag.len() && arg.starts_with(f.flag) {
            return Arg::Joined {
                flag: f,
                prefix: f.flag.len(),
            };
        }
    }
    Arg::Other
}
