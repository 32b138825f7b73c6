//! The control socket (default /run/debugmon/control.sock, mode 0600):
//! line-delimited JSON requests `grant`, `request` (a grant to be
//! approved centrally, [`super::approval`]), `list`, `revoke`, one response
//! line each. Only uid 0 may use it: the file mode keeps others out, and
//! the peer's SO_PEERCRED credentials are checked as well, so a socket left
//! with a wrong mode still refuses them. Refusals are reported to the
//! caller so they become records.

use std::{
    future::Future,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::mpsc,
};

use super::{
    AccessMode, Clock, Grant, GrantError, GrantEvent, GrantStore, GrantTarget, Requester,
    approval::{
        RequestBody, SignedRequest,
        pending::{Ask, PendingBook},
    },
    parse_duration,
};

pub const DEFAULT_SOCKET: &str = "/run/debugmon/control.sock";

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        io_error: std::io::Error,
    },
    #[error("control socket refused uid {uid}: only root may use it")]
    NotRoot { uid: u32, pid: Option<i32> },
    #[error("bad response from the agent")]
    Protocol(#[source] serde_json::Error),
    #[error("the agent closed the connection without answering")]
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Grant(GrantFields),
    /// A grant to be made once an approver approves it (`debugmon grant
    /// --request`).
    Request(GrantFields),
    List,
    Revoke {
        id: String,
    },
}

/// What a `grant` or a `request` asks for, as the client wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantFields {
    pub user: String,
    /// `unit:NAME`, `pid:N`, `exe:/PATH` or `any`.
    pub target: String,
    /// `30m`, `2h`, `90s`.
    #[serde(rename = "for")]
    pub duration: String,
    pub reason: String,
    /// `read` or `full`; full when absent (clients from before modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

impl GrantFields {
    /// Target, mode and duration, each checked.
    fn parsed(&self) -> Result<(GrantTarget, AccessMode, std::time::Duration), GrantError> {
        Ok((
            self.target.parse()?,
            self.mode.as_deref().unwrap_or("full").parse()?,
            parse_duration(&self.duration)?,
        ))
    }
}

/// Where `request` goes: the open requests and the queue of requests to
/// publish for approval, or why the agent takes none.
pub enum Approvals {
    /// Why requests are refused (no NATS, no approver keys).
    Off(String),
    On(Desk),
}

pub struct Desk {
    pub book: Arc<Mutex<PendingBook>>,
    pub clock: Arc<dyn Clock>,
    /// To the NATS side, which publishes each request.
    pub outbox: mpsc::UnboundedSender<SignedRequest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Grant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<Grant>>,
    /// The request made (`request`), waiting for its approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RequestBody>,
}

impl Response {
    fn error(msg: impl Into<String>) -> Self {
        Self {
            error: Some(msg.into()),
            ..Self::default()
        }
    }
}

/// What the server reports for the caller to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlEvent {
    Grant(Box<GrantEvent>),
    /// A grant request was made and queued for approval.
    Requested(SignedRequest),
    /// What the NATS side did with an approval or a request: a record (an
    /// alert when `alert` is set), detail ready.
    Approval {
        detail: serde_json::Value,
        alert: Option<crate::grants::approval::Refusal>,
    },
    /// A peer that is not root connected and was turned away.
    Refused {
        uid: u32,
        pid: Option<i32>,
    },
}

/// The credentials of a connected peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub pid: Option<i32>,
}

/// Only root may grant, list or revoke.
pub fn authorize(peer: PeerCred) -> Result<(), ControlError> {
    if peer.uid == 0 {
        Ok(())
    } else {
        Err(ControlError::NotRoot {
            uid: peer.uid,
            pid: peer.pid,
        })
    }
}

/// Binds the socket: creates the directory (0700 when new), replaces a
/// stale socket, and sets mode 0600 before anyone can use it.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let err = |what, path: &Path| {
        let path = path.to_owned();
        move |io_error| ControlError::Io {
            what,
            path,
            io_error,
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        std::fs::create_dir_all(dir).map_err(err("create", dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(err("chmod", dir))?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(err("remove stale", path)(e));
        }
        _ => {}
    }
    let listener = UnixListener::bind(path).map_err(err("bind", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(err("chmod", path))?;
    Ok(listener)
}

/// Serves connections until `shutdown` completes. The store lock is held
/// only while a request is applied, never across I/O.
pub async fn serve(
    listener: UnixListener,
    store: Arc<Mutex<GrantStore>>,
    events: mpsc::Sender<ControlEvent>,
    shutdown: impl Future<Output = ()>,
) {
    let off = Approvals::Off("this agent takes no grant requests".to_owned());
    serve_with(listener, store, Arc::new(off), events, shutdown).await;
}

/// [`serve`], taking `request`s to `approvals`.
pub async fn serve_with(
    listener: UnixListener,
    store: Arc<Mutex<GrantStore>>,
    approvals: Arc<Approvals>,
    events: mpsc::Sender<ControlEvent>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(cause = %e, "control socket accept failed");
                    continue;
                }
            },
        };
        let (store, events, approvals) = (store.clone(), events.clone(), approvals.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(stream, store, &approvals, events).await {
                tracing::debug!(cause = %e, "control connection ended with an error");
            }
        });
    }
}

async fn connection(
    stream: UnixStream,
    store: Arc<Mutex<GrantStore>>,
    approvals: &Approvals,
    events: mpsc::Sender<ControlEvent>,
) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let peer = PeerCred {
        uid: cred.uid(),
        pid: cred.pid(),
    };
    let (rd, mut wr) = stream.into_split();
    if let Err(e) = authorize(peer) {
        // Report before answering so the refusal is recorded even if the
        // peer has gone away.
        let _ = events
            .send(ControlEvent::Refused {
                uid: peer.uid,
                pid: peer.pid,
            })
            .await;
        return write(&mut wr, &Response::error(e.to_string())).await;
    }
    let requester = Requester::of_peer(peer.uid, peer.pid, Path::new("/etc"));
    let mut lines = BufReader::new(rd).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        let (resp, event) = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Request(asked)) => ask(approvals, &asked, &requester),
            Ok(req) => {
                let (resp, ev) = handle(&store, req, &requester);
                (resp, ev.map(|e| ControlEvent::Grant(Box::new(e))))
            }
            Err(e) => (bad_request(&e), None),
        };
        if let Some(ev) = event {
            let _ = events.send(ev).await;
        }
        write(&mut wr, &resp).await?;
    }
    Ok(())
}

async fn write(wr: &mut (impl AsyncWriteExt + Unpin), resp: &Response) -> std::io::Result<()> {
    let mut buf = serde_json::to_vec(resp).expect("invariant: responses always serialize");
    buf.push(b'\n');
    wr.write_all(&buf).await
}

/// A grant request: signed, kept open and queued for publishing.
fn ask(
    approvals: &Approvals,
    asked: &GrantFields,
    requester: &Requester,
) -> (Response, Option<ControlEvent>) {
    let desk = match approvals {
        Approvals::Off(why) => return (Response::error(why.clone()), None),
        Approvals::On(desk) => desk,
    };
    let made = (|| -> Result<SignedRequest, GrantError> {
        let (target, mode, duration) = asked.parsed()?;
        let ask = Ask {
            user: &asked.user,
            target,
            mode,
            duration,
            reason: &asked.reason,
            requester: requester.clone(),
        };
        let mut book = desk
            .book
            .lock()
            .expect("invariant: book lock never poisoned");
        book.ask(ask, desk.clock.now())
    })();
    match made {
        Ok(signed) => {
            let body = signed.verify_self().ok();
            let _ = desk.outbox.send(signed.clone());
            let resp = Response {
                ok: true,
                request: body,
                ..Response::default()
            };
            (resp, Some(ControlEvent::Requested(signed)))
        }
        Err(e) => (Response::error(e.to_string()), None),
    }
}

/// Answers one request line from `requester`: a malformed line gets an
/// `ok: false` response saying why, never a panic. Public for the fuzz
/// target, which feeds it arbitrary lines.
pub fn respond(
    store: &Mutex<GrantStore>,
    line: &str,
    requester: &Requester,
) -> (Response, Option<GrantEvent>) {
    match serde_json::from_str::<Request>(line) {
        Ok(req) => handle(store, req, requester),
        Err(e) => (bad_request(&e), None),
    }
}

fn bad_request(e: &serde_json::Error) -> Response {
    Response::error(format!("bad request: {e}"))
}

fn handle(
    store: &Mutex<GrantStore>,
    req: Request,
    requester: &Requester,
) -> (Response, Option<GrantEvent>) {
    let mut store = store.lock().expect("invariant: store lock never poisoned");
    let result: Result<(Response, Option<GrantEvent>), GrantError> = (|| match req {
        Request::Grant(asked) => {
            let (target, mode, duration) = asked.parsed()?;
            let ev = store.grant_by(
                &asked.user,
                target,
                mode,
                duration,
                &asked.reason,
                Some(requester.clone()),
            )?;
            let resp = Response {
                ok: true,
                grant: Some(ev.grant.clone()),
                ..Response::default()
            };
            Ok((resp, Some(ev)))
        }
        Request::Request(_) => Ok((
            Response::error("grant requests are taken by the running agent only"),
            None,
        )),
        Request::List => Ok((
            Response {
                ok: true,
                grants: Some(store.list().into_iter().cloned().collect()),
                ..Response::default()
            },
            None,
        )),
        Request::Revoke { id } => {
            let ev = store.revoke(&id)?;
            let resp = Response {
                ok: true,
                grant: Some(ev.grant.clone()),
                ..Response::default()
            };
            Ok((resp, Some(ev)))
        }
    })();
    result.unwrap_or_else(|e| (Response::error(e.to_string()), None))
}

/// Client side for the CLI: sends one request and waits for its response.
/// A refusal or an error from the agent comes back as `ok: false` with the
/// reason in `error`.
pub async fn request(path: &Path, req: &Request) -> Result<Response, ControlError> {
    let io = |what| {
        let path = path.to_owned();
        move |io_error| ControlError::Io {
            what,
            path,
            io_error,
        }
    };
    let stream = UnixStream::connect(path).await.map_err(io("connect to"))?;
    let (rd, mut wr) = stream.into_split();
    let mut line = serde_json::to_vec(req).expect("invariant: requests always serialize");
    line.push(b'\n');
    wr.write_all(&line).await.map_err(io("write to"))?;
    let answer = BufReader::new(rd)
        .lines()
        .next_line()
        .await
        .map_err(io("read from"))?
        .ok_or(ControlError::Closed)?;
    serde_json::from_str(&answer).map_err(ControlError::Protocol)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_is_authorized() {
        assert!(
            authorize(PeerCred {
                uid: 0,
                pid: Some(1)
            })
            .is_ok()
        );
        let e = authorize(PeerCred {
            uid: 1000,
            pid: Some(42),
        })
        .unwrap_err();
        assert!(matches!(
            e,
            ControlError::NotRoot {
                uid: 1000,
                pid: Some(42)
            }
        ));
        assert_eq!(
            e.to_string(),
            "control socket refused uid 1000: only root may use it"
        );
    }

    #[test]
    fn a_grant_request_without_approvals_is_refused_with_the_reason() {
        let off = Approvals::Off("grant requests need NATS".to_owned());
        let requester = Requester::of_peer(0, None, Path::new("/nonexistent"));
        let asked = GrantFields {
            user: "alice".into(),
            target: "any".into(),
            duration: "30m".into(),
            reason: "INC-1".into(),
            mode: None,
        };
        let (resp, event) = ask(&off, &asked, &requester);
        assert!(!resp.ok && event.is_none());
        assert_eq!(resp.error.as_deref(), Some("grant requests need NATS"));
        let line = r#"{"op":"request","user":"alice","target":"any","for":"30m","reason":"INC-1"}"#;
        assert!(matches!(
            serde_json::from_str::<Request>(line),
            Ok(Request::Request(ref f)) if *f == asked
        ));
    }

    #[test]
    fn requests_use_the_documented_json() {
        let r: Request = serde_json::from_str(
            r#"{"op":"grant","user":"alice","target":"unit:x","for":"30m","reason":"INC-1"}"#,
        )
        .unwrap();
        assert!(matches!(r, Request::Grant(ref f) if f.duration == "30m"));
        assert_eq!(
            serde_json::to_string(&Request::Revoke { id: "g-1".into() }).unwrap(),
            r#"{"op":"revoke","id":"g-1"}"#
        );
        assert_eq!(
            serde_json::from_str::<Request>(r#"{"op":"list"}"#).unwrap(),
            Request::List
        );
    }
}
