//! Records to journald over its native protocol: one datagram per record
//! on `/run/systemd/journal/socket`, `KEY=value` lines
//! (<https://systemd.io/JOURNAL_NATIVE_PROTOCOL/>). `MESSAGE` is the
//! sealed line, so a record read back from the journal still verifies;
//! `PRIORITY` follows the severity and `DEBUGMON_*` fields allow
//! `journalctl DEBUGMON_KIND=ptrace`-style queries. No client library: the
//! protocol is a handful of lines, and sealed lines never contain a
//! newline, so the simple text form is always valid.

use std::{
    io,
    os::unix::net::UnixDatagram,
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::record::seal::Sealed;

/// journald's native socket.
pub const SOCKET: &str = "/run/systemd/journal/socket";

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("connecting to journald at {path} (is systemd-journald running?)")]
    Connect {
        path: PathBuf,
        #[source]
        io_error: io::Error,
    },
    #[error("sending record seq {seq} to journald at {path}")]
    Send {
        path: PathBuf,
        seq: u64,
        #[source]
        io_error: io::Error,
    },
}

#[derive(Debug)]
pub struct Journal {
    sock: UnixDatagram,
    path: PathBuf,
    buf: Vec<u8>,
}

/// syslog priority of a record: alerts by severity, the rest `info`.
pub fn priority(severity: Option<&str>) -> u8 {
    match severity {
        Some("critical") => 2,
        Some("high") => 3,
        Some("medium" | "unspecified") => 4,
        Some("low") => 5,
        _ => 6,
    }
}

impl Journal {
    pub fn connect() -> Result<Self, JournalError> {
        Self::connect_to(Path::new(SOCKET))
    }

    /// Connects to a journald-like socket at `path` (tests use their own).
    pub fn connect_to(path: &Path) -> Result<Self, JournalError> {
        let err = |io_error| JournalError::Connect {
            path: path.to_owned(),
            io_error,
        };
        let sock = UnixDatagram::unbound().map_err(err)?;
        sock.connect(path).map_err(err)?;
        Ok(Self {
            sock,
            path: path.to_owned(),
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends one record.
    pub fn send(&mut self, rec: &Sealed) -> Result<(), JournalError> {
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(b"MESSAGE=");
        b.extend_from_slice(rec.line.strip_suffix(b"\n").unwrap_or(&rec.line));
        b.push(b'\n');
        let sev = rec.severity.as_deref();
        let mut fields = vec![
            ("PRIORITY", priority(sev).to_string()),
            ("SYSLOG_IDENTIFIER", "debugmon".to_owned()),
            ("DEBUGMON_KIND", rec.kind.clone()),
            ("DEBUGMON_SEQ", rec.seq.to_string()),
            ("DEBUGMON_HASH", rec.hash.clone()),
        ];
        if let Some(s) = sev {
            fields.push(("DEBUGMON_SEVERITY", s.to_owned()));
        }
        for (k, v) in &fields {
            b.extend_from_slice(k.as_bytes());
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            b.push(b'\n');
        }
        self.sock
            .send(b)
            .map(|_| ())
            .map_err(|io_error| JournalError::Send {
                path: self.path.clone(),
                seq: rec.seq,
                io_error,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(severity: Option<&str>) -> Sealed {
        Sealed {
            seq: 7,
            hash: "ab".into(),
            kind: "ptrace".into(),
            severity: severity.map(str::to_owned),
            line: b"{\"kind\":\"ptrace\",\"seq\":7}\n".to_vec(),
            signed: false,
        }
    }

    #[test]
    fn sends_the_sealed_line_and_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut j = Journal::connect_to(&path).unwrap();
        j.send(&sealed(Some("critical"))).unwrap();
        j.send(&sealed(None)).unwrap();
        let mut buf = vec![0u8; 65536];
        let n = server.recv(&mut buf).unwrap();
        let text = String::from_utf8(buf[..n].to_vec()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], r#"MESSAGE={"kind":"ptrace","seq":7}"#);
        for want in [
            "PRIORITY=2",
            "SYSLOG_IDENTIFIER=debugmon",
            "DEBUGMON_KIND=ptrace",
            "DEBUGMON_SEQ=7",
            "DEBUGMON_HASH=ab",
            "DEBUGMON_SEVERITY=critical",
        ] {
            assert!(lines.contains(&want), "{want} missing in {text}");
        }
        let n = server.recv(&mut buf).unwrap();
        let text = String::from_utf8(buf[..n].to_vec()).unwrap();
        assert!(text.contains("PRIORITY=6\n"), "{text}");
        assert!(!text.contains("DEBUGMON_SEVERITY"), "{text}");
    }

    #[test]
    fn a_missing_socket_is_named() {
        let e = Journal::connect_to(Path::new("/nonexistent-debugmon/journal.sock")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent-debugmon/journal.sock"));
    }
}
