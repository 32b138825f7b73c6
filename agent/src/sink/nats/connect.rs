//! NATS connection settings (URLs, TLS, the five ways to authenticate) and
//! the `DEBUGMON` stream, shared by the sink, `verify` and `tail`.

use std::{path::PathBuf, time::Duration};

use async_nats::jetstream::{self, stream};
use serde::Deserialize;
use thiserror::Error;

/// The subject prefix by default (docs/records.md): records go to
/// `debugmon.audit.<host>.<kind>` and `debugmon.alert.<host>.<severity>`.
pub const DEFAULT_SUBJECT_PREFIX: &str = "debugmon";

#[derive(Debug, Error)]
pub enum NatsError {
    #[error("NATS settings: {0}")]
    Config(String),
    #[error("reading the NATS credentials file {path}")]
    Creds {
        path: PathBuf,
        #[source]
        io_error: std::io::Error,
    },
    #[error("connecting to NATS at {urls}")]
    Connect {
        urls: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("creating or opening the JetStream stream {name}")]
    Stream {
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "the existing JetStream stream {name} takes {has}, not {missing}: set nats.subject_prefix to match it, or add the subjects to the stream, keeping its own (nats stream edit {name} --subjects '{all}')"
    )]
    Subjects {
        name: String,
        has: String,
        missing: String,
        /// The stream's subjects and the missing ones: the whole list to set.
        all: String,
    },
    #[error("JetStream consumer on stream {name}")]
    Consumer {
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// How the agent authenticates (config `[nats.auth]`, `method = ...`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum NatsAuth {
    #[default]
    None,
    Token {
        token: String,
    },
    UserPassword {
        user: String,
        password: String,
    },
    /// An nkey seed (`SU...`).
    Nkey {
        seed: String,
    },
    /// A `.creds` file (JWT + nkey seed).
    Creds {
        file: PathBuf,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// CA bundle (PEM) the server certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS: both or neither.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Refuse a server that does not offer TLS.
    pub require: bool,
}

/// The JetStream stream records go to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSettings {
    pub name: String,
    /// Seconds; 0 keeps records forever.
    pub max_age_secs: u64,
    /// Bytes; -1 for no limit.
    pub max_bytes: i64,
    /// Seconds the server remembers `Nats-Msg-Id`s: a retry within it is
    /// never stored twice.
    pub duplicate_window_secs: u64,
    pub replicas: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            name: "DEBUGMON".to_owned(),
            max_age_secs: 90 * 24 * 3600,
            max_bytes: -1,
            duplicate_window_secs: 600,
            replicas: 1,
        }
    }
}

/// NATS settings (config file section `[nats]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    pub urls: Vec<String>,
    pub tls: TlsConfig,
    pub auth: NatsAuth,
    pub stream: StreamSettings,
    /// Records published per batch before awaiting their acks.
    pub batch: usize,
    pub ack_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// Retry delays while NATS is unreachable: doubles from min to max.
    pub backoff_min_ms: u64,
    pub backoff_max_ms: u64,
    /// Client name shown by the server.
    pub client_name: String,
    /// First tokens of every subject: `<prefix>.audit.<host>.<kind>`,
    /// `<prefix>.alert.<host>.<severity>`.
    pub subject_prefix: String,
    /// Subject prefix of the client's reply inboxes (`None`: the client's
    /// `_INBOX`). The agent uses `_INBOX.<host>`, so a server can let each
    /// agent subscribe to its own replies (acks) and to nothing else
    /// (docs/nats.md).
    pub inbox_prefix: Option<String>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            urls: vec!["nats://127.0.0.1:4222".to_owned()],
            tls: TlsConfig::default(),
            auth: NatsAuth::None,
            stream: StreamSettings::default(),
            batch: 256,
            ack_timeout_ms: 5_000,
            connect_timeout_ms: 5_000,
            backoff_min_ms: 100,
            backoff_max_ms: 10_000,
            client_name: "debugmon".to_owned(),
            subject_prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
            inbox_prefix: None,
        }
    }
}

impl NatsConfig {
    pub fn validate(&self) -> Result<(), NatsError> {
        if self.urls.is_empty() {
            return Err(NatsError::Config("no server URL".into()));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(NatsError::Config(
                "tls.cert_file and tls.key_file go together".into(),
            ));
        }
        for f in [&self.tls.ca_file, &self.tls.cert_file, &self.tls.key_file]
            .into_iter()
            .flatten()
        {
            if !f.is_file() {
                return Err(NatsError::Config(format!(
                    "TLS file {} does not exist",
                    f.display()
                )));
            }
        }
        if self.batch == 0 || self.batch > 10_000 {
            return Err(NatsError::Config(format!(
                "batch {} is outside 1..=10000",
                self.batch
            )));
        }
        if !valid_prefix(&self.subject_prefix) {
            return Err(NatsError::Config(format!(
                "bad subject prefix {:?}: {PREFIX_RULE}",
                self.subject_prefix
            )));
        }
        if self.stream.name.is_empty() || self.stream.name.contains(['.', ' ', '*', '>']) {
            return Err(NatsError::Config(format!(
                "bad stream name {:?}",
                self.stream.name
            )));
        }
        Ok(())
    }

    pub fn ack_timeout(&self) -> Duration {
        Duration::from_millis(self.ack_timeout_ms)
    }

    /// `<prefix>.audit.>`: every record.
    pub fn audit_subjects(&self) -> String {
        format!("{}.audit.>", self.subject_prefix)
    }

    /// `<prefix>.alert.>`: alerts and denials.
    pub fn alert_subjects(&self) -> String {
        format!("{}.alert.>", self.subject_prefix)
    }

    /// The subjects a stream the agent creates takes.
    pub fn stream_subjects(&self) -> [String; 2] {
        [self.audit_subjects(), self.alert_subjects()]
    }

    /// Every subject the sink publishes to (host, kind and severity are
    /// one token each, see `subject_token`): what an existing stream must
    /// take.
    pub fn published_subjects(&self) -> [String; 2] {
        [
            format!("{}.audit.*.*", self.subject_prefix),
            format!("{}.alert.*.*", self.subject_prefix),
        ]
    }
}

/// What [`valid_prefix`] asks, for error messages.
pub const PREFIX_RULE: &str = "use non-empty dot-separated tokens without spaces, '*' or '>'";

/// Whether `prefix` is usable as the first tokens of a subject.
pub fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix
            .split('.')
            .all(|t| !t.is_empty() && !t.contains(['*', '>']) && !t.contains(char::is_whitespace))
}

/// Whether every subject `filter` matches is also matched by `pattern`
/// (NATS wildcards: `*` one token, `>` one or more tokens at the end).
pub fn covers(pattern: &str, filter: &str) -> bool {
    let mut p = pattern.split('.');
    let mut f = filter.split('.');
    loop {
        match (p.next(), f.next()) {
            (Some(">"), Some(_)) => return true,
            (Some(_), Some(">")) | (Some(_), None) | (None, Some(_)) => return false,
            (Some(pt), Some(ft)) if pt == "*" || pt == ft => {}
            (Some(_), Some(_)) => return false,
            (None, None) => return true,
        }
    }
}

/// Connects once (no retry: callers decide how to retry).
pub async fn connect(cfg: &NatsConfig) -> Result<async_nats::Client, NatsError> {
    cfg.validate()?;
    let mut opts = match &cfg.auth {
        NatsAuth::None => async_nats::ConnectOptions::new(),
        NatsAuth::Token { token } => async_nats::ConnectOptions::with_token(token.clone()),
        NatsAuth::UserPassword { user, password } => {
            async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        NatsAuth::Nkey { seed } => async_nats::ConnectOptions::with_nkey(seed.clone()),
        NatsAuth::Creds { file } => async_nats::ConnectOptions::with_credentials_file(file)
            .await
            .map_err(|io_error| NatsError::Creds {
                path: file.clone(),
                io_error,
            })?,
    };
    if let Some(p) = &cfg.inbox_prefix {
        opts = opts.custom_inbox_prefix(p);
    }
    if let Some(ca) = &cfg.tls.ca_file {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&cfg.tls.cert_file, &cfg.tls.key_file) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    let urls: Vec<async_nats::ServerAddr> = cfg
        .urls
        .iter()
        .map(|u| {
            u.parse()
                .map_err(|e| NatsError::Config(format!("server URL {u:?}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    opts.require_tls(cfg.tls.require || cfg.tls.ca_file.is_some())
        .connection_timeout(Duration::from_millis(cfg.connect_timeout_ms))
        .name(&cfg.client_name)
        .connect(urls)
        .await
        .map_err(|source| NatsError::Connect {
            urls: cfg.urls.join(","),
            source,
        })
}

/// A JetStream context with this config's ack timeout.
pub fn jetstream(cfg: &NatsConfig, client: async_nats::Client) -> jetstream::Context {
    // A batch holds an ack permit per message (a record and its alert
    // copy) until its acks are awaited, after the whole batch is sent: with
    // fewer permits the sender would wait for itself.
    jetstream::context::ContextBuilder::new()
        .ack_timeout(cfg.ack_timeout())
        .max_ack_inflight(cfg.batch.saturating_mul(2).max(1))
        .build(client)
}

/// Opens the stream, creating it when absent. An existing stream is used
/// as it is (operators may have tuned it), but only if it takes our
/// subjects: publishing to subjects no stream takes would fail record by
/// record, with the reason (a changed `subject_prefix`) nowhere.
pub async fn ensure_stream(
    js: &jetstream::Context,
    cfg: &NatsConfig,
) -> Result<stream::Stream, NatsError> {
    let s = &cfg.stream;
    let stream = js
        .get_or_create_stream(stream::Config {
            name: s.name.clone(),
            subjects: cfg.stream_subjects().to_vec(),
            max_age: Duration::from_secs(s.max_age_secs),
            max_bytes: s.max_bytes,
            duplicate_window: Duration::from_secs(s.duplicate_window_secs),
            num_replicas: s.replicas.max(1),
            storage: stream::StorageType::File,
            // Records are evidence: nobody deletes one message or purges
            // the stream through the API; only age and size trim it.
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::Stream {
            name: s.name.clone(),
            source: Box::new(e),
        })?;
    let info = &stream.cached_info().config;
    if !info.deny_delete || !info.deny_purge {
        tracing::warn!(
            stream = %s.name,
            deny_delete = info.deny_delete,
            deny_purge = info.deny_purge,
            "NATS stream allows deleting or purging records; see docs/nats.md"
        );
    }
    let has = &info.subjects;
    let missing: Vec<String> = cfg
        .published_subjects()
        .into_iter()
        .filter(|ours| !has.iter().any(|p| covers(p, ours)))
        .collect();
    if !missing.is_empty() {
        return Err(NatsError::Subjects {
            name: s.name.clone(),
            has: has.join(", "),
            missing: missing.join(", "),
            all: has
                .iter()
                .chain(&missing)
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
        });
    }
    Ok(stream)
}
