//! Reading the configuration: the file (or the built-in defaults when the
//! default path does not exist), then the drop-ins `config.d/*.toml` beside
//! it in file-name order, merged table by table (a key a drop-in sets
//! replaces the file's; a table merges key by key; an array is replaced
//! whole), then environment variables, then flags, then validation. Every
//! error names where the bad value came from: the file or drop-in with line
//! and column, the environment variable, or the flag.

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

/// The drop-in directory beside a config file.
pub const DROP_IN_DIR: &str = "config.d";

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// The file, then these drop-ins (in the order merged).
    File {
        path: PathBuf,
        drop_ins: Vec<PathBuf>,
    },
    /// The default path does not exist: built-in defaults, then drop-ins
    /// (plus overrides).
    BuiltIn {
        missing: PathBuf,
        drop_ins: Vec<PathBuf>,
    },
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let drop_ins = match self {
            Self::File { path, drop_ins } => {
                write!(f, "{}", path.display())?;
                drop_ins
            }
            Self::BuiltIn { missing, drop_ins } => {
                write!(
                    f,
                    "built-in defaults ({} does not exist)",
                    missing.display()
                )?;
                drop_ins
            }
        };
        for d in drop_ins {
            write!(f, " + {}", d.display())?;
        }
        Ok(())
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
        toml::from_str(&self.text).map_err(|e| self.parse_error(&e))
    }

    fn parse_error(&self, e: &toml::de::Error) -> ConfigError {
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
    }

    fn location(&self, key: &str) -> Option<String> {
        let doc = DeTable::parse(&self.text).ok()?;
        let span = span_of(doc.get_ref(), key)?;
        let (line, col) = line_col(&self.text, span.start);
        Some(format!("{}:{line}:{col}", self.path.display()))
    }
}

/// Loads the configuration: `path` (or [`DEFAULT_PATH`], where a missing
/// file means built-in defaults), then the `config.d/*.toml` drop-ins
/// beside it, then `env`, then `flags`, then validation.
pub fn load(
    path: Option<&Path>,
    env: &dyn Strings,
    flags: &[Flag],
) -> Result<(Config, ConfigSource), ConfigError> {
    let base = path.unwrap_or(Path::new(DEFAULT_PATH));
    let file = match path {
        Some(p) => Some(read(p)?),
        None => match std::fs::read_to_string(base) {
            Ok(text) => Some(File {
                path: base.to_path_buf(),
                text,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(io_error) => {
                return Err(ConfigError::Read {
                    path: base.to_path_buf(),
                    io_error,
                });
            }
        },
    };
    let drop_ins = drop_in_files(base)?
        .iter()
        .map(|p| read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let source = match &file {
        Some(f) => ConfigSource::File {
            path: f.path.clone(),
            drop_ins: drop_ins.iter().map(|d| d.path.clone()).collect(),
        },
        None => ConfigSource::BuiltIn {
            missing: base.to_path_buf(),
            drop_ins: drop_ins.iter().map(|d| d.path.clone()).collect(),
        },
    };
    // The file and the drop-ins, in merge order: the last that sets a key
    // is where its value came from.
    let files: Vec<&File> = file.iter().chain(&drop_ins).collect();
    let mut cfg = merged(&files)?;

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

    cfg.validate().map_err(|problems| {
        ConfigError::Invalid(
            problems
                .into_iter()
                .map(|p| Invalid {
                    location: origin
                        .get(p.key)
                        .cloned()
                        .or_else(|| files.iter().rev().find_map(|f| f.location(p.key)))
                        .unwrap_or_else(|| "built-in default".into()),
                    key: p.key.to_owned(),
                    reason: p.reason,
                })
                .collect(),
        )
    })?;
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
    cfg.validate().map_err(|problems| {
        ConfigError::Invalid(
            problems
                .into_iter()
                .map(|p| Invalid {
                    location: file
                        .location(p.key)
                        .unwrap_or_else(|| "built-in default".into()),
                    key: p.key.to_owned(),
                    reason: p.reason,
                })
                .collect(),
        )
    })?;
    Ok(cfg)
}

/// The `*.toml` files of the `config.d` directory beside `base`, in
/// file-name order; none when the directory does not exist.
pub fn drop_in_files(base: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = base.parent().unwrap_or(Path::new("/")).join(DROP_IN_DIR);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(io_error) => {
            return Err(ConfigError::Read {
                path: dir,
                io_error,
            });
        }
    };
    let mut out = Vec::new();
    for entry in rd {
        let p = entry
            .map_err(|io_error| ConfigError::Read {
                path: dir.clone(),
                io_error,
            })?
            .path();
        // Editors' backups (`x.toml~`, `.x.toml.swp`) do not end in .toml.
        if p.extension().is_some_and(|e| e == "toml") && !p.is_dir() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// The files merged in order into one configuration. Each is first parsed
/// on its own, so a bad key or type is reported at its own line; the
/// merge of valid parts is then valid too.
fn merged(files: &[&File]) -> Result<Config, ConfigError> {
    let mut table = toml::Table::new();
    for f in files {
        f.parse()?;
        let t: toml::Table = toml::from_str(&f.text).map_err(|e| f.parse_error(&e))?;
        merge(&mut table, t);
    }
    let first = files.first();
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| {
            // Unreachable for files that parsed one by one, but reported, not
            // assumed: a key, the message, and the first file.
            ConfigError::Parse {
                path: first.map_or_else(|| PathBuf::from(DEFAULT_PATH), |f| f.path.clone()),
                line: 0,
                column: 0,
                key: None,
                message: format!("merging drop-ins: {}", e.message().trim_end()),
            }
        })
}

/// Merges `over` into `base`: tables key by key, everything else replaced.
pub fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
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
