//! `debugmon status`: a snapshot of the running agent ([`StatusReport`],
//! built from the metrics registry), served as JSON at `GET /status` of the
//! metrics endpoint, and the small HTTP client the CLI fetches it with.

use std::{
    collections::BTreeMap,
    fmt,
    io::{self, Read as _, Write as _},
    net::{TcpStream, ToSocketAddrs as _},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::Metrics;

/// What `debugmon status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub pid: u32,
    pub uptime_secs: u64,
    pub kernel: String,
    pub programs_attached: Vec<String>,
    pub enforcement: String,
    /// Hash of the loaded policy set; `None` until a policy engine reports one.
    pub policy_hash: Option<String>,
    pub sinks: Vec<String>,
    pub counters: Counters,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub events: BTreeMap<String, u64>,
    pub records: BTreeMap<String, u64>,
    pub decisions: BTreeMap<String, u64>,
    pub kernel_lost: BTreeMap<String, u64>,
    pub undecodable: u64,
    pub spool_records: u64,
    pub spool_bytes: u64,
    pub nats_connected: bool,
    pub grants_active: u64,
}

fn map(v: Vec<(&'static str, u64)>) -> BTreeMap<String, u64> {
    v.into_iter().map(|(k, n)| (k.to_owned(), n)).collect()
}

impl StatusReport {
    pub fn from_metrics(m: &Metrics) -> Self {
        let info = m.info();
        let (spool_records, spool_bytes) = m.spool();
        Self {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            uptime_secs: m.uptime().as_secs(),
            kernel: info.kernel,
            programs_attached: info.programs,
            enforcement: info.enforcement,
            policy_hash: info.policy_hash,
            sinks: info.sinks,
            counters: Counters {
                events: map(m.events_by_kind()),
                records: map(m.records_by_kind()),
                decisions: map(m.decisions_by_action()),
                kernel_lost: map(m.kernel_lost_by_kind()),
                undecodable: m.undecodable(),
                spool_records,
                spool_bytes,
                nats_connected: m.nats_connected(),
                grants_active: m.grants_active(),
            },
        }
    }
}

/// `exec=3 fork=1` with zero counts left out (`-` when all are zero).
fn nonzero(m: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = m
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counters;
        let up = self.uptime_secs;
        writeln!(f, "debugmon {} (pid {})", self.version, self.pid)?;
        writeln!(
            f,
            "  uptime:       {}h{:02}m{:02}s",
            up / 3600,
            up / 60 % 60,
            up % 60
        )?;
        writeln!(f, "  kernel:       {}", self.kernel)?;
        writeln!(
            f,
            "  programs:     {} attached ({})",
            self.programs_attached.len(),
            self.programs_attached.join(", ")
        )?;
        writeln!(f, "  enforcement:  {}", self.enforcement)?;
        writeln!(
            f,
            "  policy:       {}",
            self.policy_hash.as_deref().unwrap_or("none loaded")
        )?;
        writeln!(f, "  sinks:        {}", self.sinks.join(", "))?;
        writeln!(f, "  events:       {}", nonzero(&c.events))?;
        writeln!(f, "  records:      {}", nonzero(&c.records))?;
        writeln!(f, "  decisions:    {}", nonzero(&c.decisions))?;
        writeln!(
            f,
            "  lost:         kernel {} / undecodable {}",
            nonzero(&c.kernel_lost),
            c.undecodable
        )?;
        writeln!(
            f,
            "  spool:        {} records, {} bytes",
            c.spool_records, c.spool_bytes
        )?;
        writeln!(
            f,
            "  nats:         {}",
            if c.nats_connected {
                "connected"
            } else {
                "not connected"
            }
        )?;
        write!(f, "  grants:       {} active", c.grants_active)
    }
}

#[derive(Debug, Error)]
pub enum StatusError {
    #[error("{url:?} is not an http://host:port URL")]
    BadUrl { url: String },
    #[error("connecting to {addr}")]
    Connect {
        addr: String,
        #[source]
        io_error: io::Error,
    },
    #[error("talking to {addr}")]
    Io {
        addr: String,
        #[source]
        io_error: io::Error,
    },
    #[error("{addr} answered {status:?}")]
    Status { addr: String, status: String },
    #[error("the answer of {addr} is not a status report")]
    Decode {
        addr: String,
        #[source]
        json_error: serde_json::Error,
    },
}

/// The URL of an agent listening on `listen` (`metrics.listen`): a
/// wildcard address is reached on loopback. `None` when the endpoint is off.
pub fn url_for(listen: &str) -> Option<String> {
    let addr: std::net::SocketAddr = listen.parse().ok()?;
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    Some(format!(
        "http://{}",
        std::net::SocketAddr::new(ip, addr.port())
    ))
}

/// Largest answer accepted (a status report is a few KiB).
const MAX_RESPONSE: u64 = 1 << 20;

/// Fetches `GET /status` from the agent's metrics endpoint at `url`
/// (`http://host:port`, a path is ignored).
pub fn fetch(url: &str, timeout: Duration) -> Result<StatusReport, StatusError> {
    let bad = || StatusError::BadUrl { url: url.into() };
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad());
    }
    let addr = authority.to_owned();
    let sock = authority
        .to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)?;
    let io_err = |io_error| StatusError::Io {
        addr: addr.clone(),
        io_error,
    };
    let mut s =
        TcpStream::connect_timeout(&sock, timeout).map_err(|io_error| StatusError::Connect {
            addr: addr.clone(),
            io_error,
        })?;
    s.set_read_timeout(Some(timeout)).map_err(io_err)?;
    s.set_write_timeout(Some(timeout)).map_err(io_err)?;
    write!(
        s,
        "GET /status HTTP/1.1\r\nHost: {authority}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )
    .map_err(io_err)?;
    let mut buf = Vec::new();
    s.take(MAX_RESPONSE).read_to_end(&mut buf).map_err(io_err)?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("200") {
        return Err(StatusError::Status {
            addr,
            status: status.to_owned(),
        });
    }
    serde_json::from_str(body).map_err(|json_error| StatusError::Decode { addr, json_error })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::EventLabel;

    #[test]
    fn report_reflects_the_registry_and_prints() {
        let m = Metrics::new();
        m.update_info(|i| {
            i.kernel = "6.1.0".into();
            i.programs = vec!["exec".into()];
            i.sinks = vec!["stdout".into()];
        });
        m.event(&EventLabel::Exec);
        m.record(crate::event::Kind::Agent);
        let r = StatusReport::from_metrics(&m);
        assert_eq!(r.counters.events["exec"], 1);
        assert_eq!(r.enforcement, "none");
        let json = serde_json::to_string(&r).unwrap();
        let back: StatusReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        let text = r.to_string();
        assert!(text.contains("programs:     1 attached (exec)"), "{text}");
        assert!(text.contains("events:       exec=1\n"), "{text}");
        assert!(text.contains("decisions:    -\n"), "{text}");
        assert!(text.contains("policy:       none loaded"), "{text}");
    }

    #[test]
    fn url_follows_the_listen_address() {
        assert_eq!(
            url_for("127.0.0.1:7464").as_deref(),
            Some("http://127.0.0.1:7464")
        );
        assert_eq!(url_for("0.0.0.0:9").as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(url_for("[::]:9").as_deref(), Some("http://[::1]:9"));
        assert_eq!(url_for(""), None);
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in ["https://x:1", "127.0.0.1:7464", "http://", "http:///status"] {
            let e = fetch(url, Duration::from_secs(1)).unwrap_err();
            assert!(matches!(e, StatusError::BadUrl { .. }), "{url}: {e:?}");
        }
    }
}
