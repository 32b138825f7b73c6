//! Reading the configuration: the file (or the built-in defaults when the
//! default path does not exist), then environment variables, then flags,
//! then validation. Every error names where the bad value came from: the
//! file with line and column, the environment variable, or the flag.

use std::{
    collections::HashMap,
    fmt, io,
    ops::Range,
    path::{Path, PathBuf},
};

use thiserror::Error;
use toml::{
    Spanned,
    de::{DeTable, DeValue},
};

use super::{Config, overrides};
use crate::sys::env::Strings;

/// Where `debugmon run` looks when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/debugmon/config.toml";

/// A value given on the command line for a config key.
#[derive(Debug, Clone)]
pub struct Flag {
    /// The config key it sets, e.g. `agent.ring_mib`.
    pub key: &'static str,
    /// The flag as the user typed it, for error messages, e.g. `--ring-mib`.
    pub flag: &'static str,
    pub value: String,
}

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    File(PathBuf),
    /// The default path does not exist: built-in defaults (plus overrides).
    BuiltIn {
        missing: PathBuf,
    },
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::BuiltIn { missing } => write!(
                f,
                "built-in defaults ({} does not exist)",
                missing.display()
            ),
        }
    }
}

/// One invalid value, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// `path:line:column`, `environment variable X`, `flag --x` or `built-in default`.
    pub location: String,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.location, self.key, self.reason)
    }
}

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("reading config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        io_error: io::Error,
    },
    /// Bad TOML, an unknown key or a value of the wrong type.
    #[error("{}:{line}:{column}: {}{message}", path.display(), key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        /// The dotted key at the error, when the position is inside one.
        key: Option<String>,
        message: String,
    },
    #[error("environment variable {var} is not valid UTF-8")]
    EnvNotUnicode { var: String },
    /// Values that parsed but fail [`Config::validate`] (or an override
    /// that does not parse), one per line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Invalid>),
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

/// The dotted key whose key or value spans `offset`, innermost first.
fn key_at(table: &DeTable<'_>, offset: usize) -> Option<String> {
    for (k, v) in table {
        if let DeValue::Table(inner) = v.get_ref()
            && let Some(rest) = key_at(inner, offset)
        {
            return Some(format!("{}.{rest}", k.get_ref()));
        }
        if contains(&k.span(), offset) || contains(&v.span(), offset) {
            return Some(k.get_ref().to_string());
        }
    }
    None
}

/// The span of the value of dotted `key`, if the file sets it.
fn span_of(table: &DeTable<'_>, key: &str) -> Option<Range<usize>> {
    let (head, rest) = match key.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (key, None),
    };
    let (_, v): (&Spanned<_>, &Spanned<DeValue<'_>>) =
        table.iter().find(|(k, _)| k.get_ref() == head)?;
    match (rest, v.get_ref()) {
        (None, _) => Some(v.span()),
        (Some(rest), DeValue::Table(inner)) => span_of(inner, rest),
        (Some(_), _) => None,
    }
}

/// A parsed file: its text (for spans) and its path.
struct File {
    path: PathBuf,
    text: String,
}

impl File {
    fn parse(&self) -> Result<Config, ConfigError> {
        toml::from_str(&self.text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let (line, column) = line_col(&self.text, offset);
            let key = DeTable::parse(&self.text)
                .ok()
                .and_then(|t| key_at(t.get_ref(), offset));
            ConfigError::Parse {
                path: self.path.clone(),
                line,
                column,
                key,
                message: e.message().trim_end().to_owned(),
            }
        })
    }

    fn location(&self, key: &str) -> Option<String> {
        let doc = DeTable::parse(&self.text).ok()?;
        let span = span_of(doc.get_ref(), key)?;
        let (line, col) = line_col(&self.text, span.start);
        Some(format!("{}:{line}:{col}", self.path.display()))
    }
}

/// Loads the configuration: `path` (or [`DEFAULT_PATH`], where a missing
/// file means built-in defaults), then `env`, then `flags`, then validation.
pub fn load(
    path: Option<&Path>,
    env: &dyn Strings,
    flags: &[Flag],
) -> Result<(Config, ConfigSource), ConfigError> {
    let (file, source) = match path {
        Some(p) => (Some(read(p)?), ConfigSource::File(p.to_path_buf())),
        None => {
            let p = Path::new(DEFAULT_PATH);
            match std::fs::read_to_string(p) {
                Ok(text) => (
                    Some(File {
                        path: p.to_path_buf(),
                        text,
                    }),
                    ConfigSource::File(p.to_path_buf()),
                ),
                Err(e) if e.kind() == io::ErrorKind::NotFound => (
                    None,
                    ConfigSource::BuiltIn {
                        missing: p.to_path_buf(),
                    },
                ),
                Err(io_error) => {
                    return Err(ConfigError::Read {
                        path: p.to_path_buf(),
                        io_error,
                    });
                }
            }
        }
    };
    let mut cfg = match &file {
        Some(f) => f.parse()?,
        None => Config::default(),
    };

    // Where each overridden key got its value, for error messages.
    let mut origin: HashMap<&str, String> = HashMap::new();
    let mut bad = Vec::new();
    for key in overrides::KEYS {
        let var = overrides::env_var(key);
        let Some(raw) = env.get(&var) else { continue };
        let value = raw
            .into_string()
            .map_err(|_| ConfigError::EnvNotUnicode { var: var.clone() })?;
        let location = format!("environment variable {var}");
        if let Err(reason) = overrides::set(&mut cfg, key, &value) {
            bad.push(Invalid {
                location: location.clone(),
                key: (*key).to_owned(),
                reason,
            });
        }
        origin.insert(key, location);
    }
    for f in flags {
        let location = format!("flag {}", f.flag);
        if let Err(reason) = overrides::set(&mut cfg, f.key, &f.value) {
            bad.push(Invalid {
                location: location.clone(),
                key: f.key.to_owned(),
                reason,
            });
        }
        origin.insert(f.key, location);
    }
    if !bad.is_empty() {
        return Err(ConfigError::Invalid(bad));
    }

    cfg.validate()
        .map_err(|problems| invalid(problems, &origin, file.as_ref()))?;
    Ok((cfg, source))
}

/// Parses and validates config file text on its own (no environment, no
/// flags); `path` only names it in errors. The entry point the fuzz target
/// drives: any text must come back as a config or a [`ConfigError`].
pub fn from_text(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let file = File {
        path: path.to_path_buf(),
        text: text.to_owned(),
    };
    let cfg = file.parse()?;
    cfg.validate()
        .map_err(|problems| invalid(problems, &HashMap::new(), Some(&file)))?;
    Ok(cfg)
}

/// Validation problems located where each key got its value.
fn invalid(
    problems: Vec<super::validate::Problem>,
    origin: &HashMap<&str, String>,
    file: Option<&File>,
) -> ConfigError {
    ConfigError::Invalid(
        problems
            .into_iter()
            .map(|p| Invalid {
                location: origin
                    .get(p.key)
                    .cloned()
                    .or_else(|| file.and_then(|f| f.location(p.key)))
                    .unwrap_or_else(|| "built-in default".into()),
                key: p.key.to_owned(),
                reason: p.reason,
            })
            .collect(),
    )
}

fn read(path: &Path) -> Result<File, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|io_error| ConfigError::Read {
        path: path.to_path_buf(),
        io_error,
    })?;
    Ok(File {
        path: path.to_path_buf(),
        text,
    })
}
