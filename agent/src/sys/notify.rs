//! A small systemd notification client (the `sd_notify` protocol, written
//! here rather than linking libsystemd): datagrams of `KEY=VALUE` lines to
//! the socket named by `$NOTIFY_SOCKET`, a path or, when it starts with
//! `@`, an abstract socket. Without `$NOTIFY_SOCKET` (not started by
//! systemd with `Type=notify`) every call is a no-op.
//!
//! The watchdog interval is half of `$WATCHDOG_USEC`, as sd_watchdog_enabled(3)
//! recommends, and only when `$WATCHDOG_PID` is unset or names us.

use std::{
    ffi::OsString,
    io,
    os::unix::net::{SocketAddr, UnixDatagram},
    sync::Arc,
    time::Duration,
};

use thiserror::Error;
use tracing::{debug, warn};

use super::env::Strings;

#[derive(Debug, Error)]
pub enum NotifyError {
    #[error("NOTIFY_SOCKET={value:?} is not a usable socket address")]
    BadAddress {
        value: String,
        #[source]
        io_error: io::Error,
    },
    #[error("creating the notification socket")]
    Socket(#[source] io::Error),
}

/// A connection to the service manager, or nothing.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

fn address(value: &OsString) -> Result<SocketAddr, NotifyError> {
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = value.as_bytes();
    let bad = |io_error| NotifyError::BadAddress {
        value: value.to_string_lossy().into_owned(),
        io_error,
    };
    match bytes.split_first() {
        Some((b'@', name)) => {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(name).map_err(bad)
        }
        Some((b'/', _)) => SocketAddr::from_pathname(std::path::Path::new(value)).map_err(bad),
        _ => Err(bad(io::Error::new(
            io::ErrorKind::InvalidInput,
            "neither an absolute path nor an @abstract name",
        ))),
    }
}

impl Notifier {
    /// A notifier that sends nothing.
    pub fn disabled() -> Self {
        Self { target: None }
    }

    /// From `$NOTIFY_SOCKET` in `env`; disabled when it is unset or empty.
    pub fn from_env(env: &dyn Strings) -> Result<Self, NotifyError> {
        let Some(value) = env.get("NOTIFY_SOCKET").filter(|v| !v.is_empty()) else {
            return Ok(Self::disabled());
        };
        let addr = address(&value)?;
        let sock = UnixDatagram::unbound().map_err(NotifyError::Socket)?;
        // Never block the runtime on a stuck manager: a lost status update
        // is harmless, a missed one is re-sent on the next tick.
        sock.set_nonblocking(true).map_err(NotifyError::Socket)?;
        Ok(Self {
            target: Some((sock, addr)),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// Sends `state` (newline-separated `KEY=VALUE` assignments).
    pub fn notify(&self, state: &str) {
        let Some((sock, addr)) = &self.target else {
            return;
        };
        if let Err(e) = sock.send_to_addr(state.as_bytes(), addr) {
            // WARN once per kind would need state; the manager being gone
            // is rare and the agent keeps working either way.
            warn!(error = %e, state, "systemd notification failed");
        } else {
            debug!(state, "notified systemd");
        }
    }

    /// Startup finished: the service is up.
    pub fn ready(&self, status: &str) {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    pub fn status(&self, status: &str) {
        self.notify(&format!("STATUS={}", one_line(status)));
    }

    pub fn stopping(&self) {
        self.notify("STOPPING=1\nSTATUS=stopping: draining the ring buffer");
    }

    pub fn watchdog(&self) {
        self.notify("WATCHDOG=1");
    }
}

/// A STATUS value must not contain a newline (it would start a new assignment).
fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

/// Half of `$WATCHDOG_USEC` when the watchdog is on for this process.
pub fn watchdog_interval(env: &dyn Strings) -> Option<Duration> {
    if let Some(pid) = env.get("WATCHDOG_PID")
        && pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = env.get("WATCHDOG_USEC")?.to_str()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// Pings the watchdog every `interval` until the task is aborted. The
/// ping comes from the async runtime, so a wedged runtime stops it and
/// systemd restarts the agent: that is the point of the watchdog.
pub fn spawn_watchdog(n: Arc<Notifier>, interval: Duration) -> Watchdog {
    Watchdog(tokio::spawn(async move {
        let mut t = tokio::time::interval(interval);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            t.tick().await;
            n.watchdog();
        }
    }))
}

/// The pinging task; dropping it stops the pings.
pub struct Watchdog(tokio::task::JoinHandle<()>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn no_socket_means_no_op() {
        let n = Notifier::from_env(&env(&[])).unwrap();
        assert!(!n.is_enabled());
        n.ready("x");
    }

    #[test]
    fn relative_socket_is_refused() {
        let e = Notifier::from_env(&env(&[("NOTIFY_SOCKET", "run/notify")]))
            .err()
            .unwrap();
        assert!(e.to_string().contains("run/notify"), "{e}");
    }

    #[test]
    fn sends_to_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("debugmon-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::from_env(&env(&[("NOTIFY_SOCKET", path.to_str().unwrap())])).unwrap();
        n.ready("3 programs\nattached");
        n.stopping();
        let mut buf = [0u8; 256];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=3 programs attached");
        let len = server.recv(&mut buf).unwrap();
        assert!(buf[..len].starts_with(b"STOPPING=1\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sends_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("debugmon-notify-test-{}", std::process::id());
        let server =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        let n = Notifier::from_env(&env(&[("NOTIFY_SOCKET", &format!("@{name}"))])).unwrap();
        n.watchdog();
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
    }

    #[test]
    fn watchdog_interval_is_half_and_honours_pid() {
        let me = std::process::id().to_string();
        assert_eq!(
            watchdog_interval(&env(&[("WATCHDOG_USEC", "1000000")])),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            watchdog_interval(&env(&[
                ("WATCHDOG_USEC", "30000000"),
                ("WATCHDOG_PID", &me)
            ])),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(&env(&[("WATCHDOG_USEC", "1000000"), ("WATCHDOG_PID", "1")])),
            None
        );
        assert_eq!(watchdog_interval(&env(&[("WATCHDOG_USEC", "x")])), None);
        assert_eq!(watchdog_interval(&env(&[])), None);
    }
}
