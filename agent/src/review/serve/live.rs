//! The page's records: the source followed (a file as it grows, stdin to
//! its end, the stream as messages arrive), every line kept, and after
//! each batch of new lines the whole input verified again by a fresh
//! [`Review`], so a record is shown with the verdict the command would
//! give it over the same input (a record first `unsigned` becomes `ok`
//! when the checkpoint that signs it arrives). Views read the newest
//! [`Snapshot`] from a `watch` channel; nothing reaches them unverified.

use std::{
    io::{BufReader, Seek as _},
    os::unix::fs::MetadataExt as _,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use tokio::sync::{mpsc, watch};

use super::super::{Review, Reviewed};
use crate::{
    error::error_chain,
    record::verify::{LineSink as _, VerifyError, trust::Trust},
    sink::nats::{NatsConfig, read::follow_subject},
};

/// How often a followed file is checked for new lines once at its end.
const FILE_POLL: Duration = Duration::from_millis(250);
/// How often the input is judged again with `--now now` when nothing
/// arrives.
const RECHECK: Duration = Duration::from_secs(5);
/// How long to wait before reading the stream again after an error.
const RETRY: Duration = Duration::from_secs(2);

/// Where the page's records come from.
#[derive(Debug, Clone)]
pub enum LiveSource {
    /// Followed as it grows; a file replaced under the name (rotation) is
    /// read from its start.
    File(PathBuf),
    /// Read to its end; nothing arrives after that.
    Stdin,
    /// Every message of `subject`, then each new one.
    Stream {
        nats: Box<NatsConfig>,
        subject: String,
    },
}

/// The input as verified after the latest batch.
#[derive(Debug)]
pub struct Snapshot {
    /// Counts batches: a view that rendered version N is current until N+1.
    pub version: u64,
    pub reviewed: Reviewed,
    /// Why the source is not being read right now (the stream is down).
    pub source_error: Option<String>,
}

/// Where the input counts as ending, for silence (`review --now`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The newest record.
    Newest,
    /// A fixed time, Unix ns.
    At(i64),
    /// The clock at each verification (`--now now`): a host that stopped
    /// sending turns silent on the page while nothing else arrives.
    Now,
}

impl End {
    fn ns(self) -> Option<i64> {
        match self {
            Self::Newest => None,
            Self::At(ns) => Some(ns),
            Self::Now => chrono::Utc::now().timestamp_nanos_opt(),
        }
    }
}

/// What a source reader hands the verifier.
enum Feed {
    Line(Vec<u8>),
    Error(String),
}

/// Starts following `source`; the receiver always holds the newest
/// snapshot. The trust is checked here, so a bad key is an error at start.
pub fn start(
    source: LiveSource,
    trust: Trust,
    end: End,
) -> Result<watch::Receiver<Arc<Snapshot>>, VerifyError> {
    let first = Review::new(trust.clone(), end.ns())?.finish();
    let (tx, rx) = watch::channel(Arc::new(Snapshot {
        version: 0,
        reviewed: first,
        source_error: None,
    }));
    let (feed_tx, feed_rx) = mpsc::unbounded_channel();
    tokio::spawn(read(source, feed_tx));
    tokio::spawn(ingest(feed_rx, trust, end, tx));
    Ok(rx)
}

/// Every line so far through a fresh verifier.
fn review_all(trust: &Trust, end: End, lines: &[Vec<u8>]) -> Option<Reviewed> {
    let mut r = Review::new(trust.clone(), end.ns()).ok()?;
    for l in lines {
        r.push_line(l);
    }
    Some(r.finish())
}

async fn ingest(
    mut feed: mpsc::UnboundedReceiver<Feed>,
    trust: Trust,
    end: End,
    tx: watch::Sender<Arc<Snapshot>>,
) {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut source_error = None;
    let mut version = 0;
    loop {
        // With the clock as the end, the input is judged again now and
        // then even when nothing arrives: silence is nothing arriving.
        let first = if end == End::Now {
            tokio::select! {
                f = feed.recv() => match f {
                    Some(f) => Some(f),
                    None => return,
                },
                () = tokio::time::sleep(RECHECK) => None,
            }
        } else {
            match feed.recv().await {
                Some(f) => Some(f),
                None => return,
            }
        };
        let mut next = first;
        while let Some(f) = next {
            match f {
                Feed::Line(l) => {
                    lines.push(l);
                    source_error = None;
                }
                Feed::Error(e) => source_error = Some(e),
            }
            next = feed.try_recv().ok();
        }
        let trust = trust.clone();
        // Verifying the whole input is CPU work: off the async threads.
        let Ok((back, reviewed)) = tokio::task::spawn_blocking(move || {
            let r = review_all(&trust, end, &lines);
            (lines, r)
        })
        .await
        else {
            return;
        };
        lines = back;
        let Some(reviewed) = reviewed else { return };
        version += 1;
        tx.send_replace(Arc::new(Snapshot {
            version,
            reviewed,
            source_error: source_error.clone(),
        }));
        if tx.is_closed() {
            return;
        }
    }
}

async fn read(source: LiveSource, tx: mpsc::UnboundedSender<Feed>) {
    match source {
        LiveSource::File(path) => {
            let _ = tokio::task::spawn_blocking(move || follow_file(&path, &tx)).await;
        }
        LiveSource::Stdin => {
            let _ = tokio::task::spawn_blocking(move || {
                let mut r = std::io::stdin().lock();
                read_available(&mut r, &mut Vec::new(), &tx, true)
            })
            .await;
        }
        LiveSource::Stream { nats, subject } => {
            let mut next = 1;
            loop {
                let r = follow_subject(&nats, &subject, next, |payload, seq| {
                    next = next.max(seq + 1);
                    let _ = tx.send(Feed::Line(payload.to_vec()));
                })
                .await;
                if tx.is_closed() {
                    return;
                }
                let why = match r {
                    Ok(()) => "the stream ended".to_owned(),
                    Err(e) => error_chain(&e),
                };
                tracing::warn!(error = %why, "reading the stream failed; retrying");
                if tx.send(Feed::Error(why)).is_err() {
                    return;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Sends each complete line `r` has now; a trailing partial line waits in
/// `partial` for the rest (or, at the end of stdin, goes as it is).
/// `false` when the receiver is gone.
fn read_available(
    r: &mut impl std::io::BufRead,
    partial: &mut Vec<u8>,
    tx: &mpsc::UnboundedSender<Feed>,
    last: bool,
) -> bool {
    loop {
        match r.read_until(b'\n', partial) {
            Ok(0) => break,
            Ok(_) if partial.ends_with(b"\n") => {
                partial.pop();
                if tx.send(Feed::Line(std::mem::take(partial))).is_err() {
                    return false;
                }
            }
            Ok(_) => {}
            Err(e) => {
                return tx.send(Feed::Error(format!("reading: {e}"))).is_ok();
            }
        }
    }
    if last && !partial.is_empty() {
        return tx.send(Feed::Line(std::mem::take(partial))).is_ok();
    }
    true
}

fn follow_file(path: &PathBuf, tx: &mpsc::UnboundedSender<Feed>) {
    let mut current: Option<(BufReader<std::fs::File>, u64)> = None;
    let mut partial = Vec::new();
    let mut said = String::new();
    loop {
        if current.is_none() {
            match std::fs::File::open(path) {
                Ok(f) => {
                    let ino = f.metadata().map_or(0, |m| m.ino());
                    current = Some((BufReader::new(f), ino));
                    partial.clear();
                }
                Err(e) => {
                    let msg = format!("{}: {e}", path.display());
                    // Once per distinct error, not once per poll.
                    if msg != said && tx.send(Feed::Error(msg.clone())).is_err() {
                        return;
                    }
                    said = msg;
                }
            }
        }
        if let Some((r, ino)) = current.as_mut() {
            if !read_available(r, &mut partial, tx, false) {
                return;
            }
            // Rotated (another file under the name) or truncated: start
            // over on what the name holds now.
            let pos = r.stream_position().unwrap_or(0);
            let replaced =
                std::fs::metadata(path).map_or(true, |m| m.ino() != *ino || m.len() < pos);
            if replaced {
                current = None;
                continue;
            }
        }
        if tx.is_closed() {
            return;
        }
        std::thread::sleep(FILE_POLL);
    }
}
