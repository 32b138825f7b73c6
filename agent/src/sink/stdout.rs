//! Writes batches of newline-terminated records to stdout on a dedicated
//! thread, so a slow reader never blocks the async runtime. The channel is
//! bounded: when the reader falls behind, the pipeline waits, the kernel
//! ring buffer fills, and the kernel counts what it drops.

use std::{
    io::{self, Write},
    sync::atomic::{AtomicU64, Ordering},
    thread::JoinHandle,
};

use thiserror::Error;
use tokio::sync::{mpsc, watch};

#[derive(Debug, Error)]
pub enum SinkError {
    #[error("writing records to stdout")]
    Write(#[source] io::Error),
    #[error("the stdout writer thread stopped")]
    Gone,
    #[error("starting the stdout writer thread")]
    Spawn(#[source] io::Error),
}

pub struct StdoutSink {
    tx: mpsc::Sender<Vec<u8>>,
    thread: JoinHandle<Result<u64, SinkError>>,
    /// Batches queued so far.
    queued: AtomicU64,
    /// Batches written and flushed so far, published by the writer.
    written: watch::Receiver<u64>,
}

impl StdoutSink {
    /// Starts the writer. `capacity` is the number of batches in flight.
    pub fn spawn(capacity: usize) -> Result<Self, SinkError> {
        Self::spawn_with(capacity, io::stdout())
    }

    /// Same, with any writer (tests use a buffer).
    pub fn spawn_with<W: Write + Send + 'static>(
        capacity: usize,
        mut w: W,
    ) -> Result<Self, SinkError> {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(capacity.max(1));
        let (written_tx, written) = watch::channel(0u64);
        let thread = std::thread::Builder::new()
            .name("debugmon-stdout".into())
            .spawn(move || -> Result<u64, SinkError> {
                let mut bytes = 0u64;
                let mut batches = 0u64;
                while let Some(batch) = rx.blocking_recv() {
                    w.write_all(&batch).map_err(SinkError::Write)?;
                    bytes += batch.len() as u64;
                    batches += 1;
                    // Flush when caught up: low latency when idle, few
                    // syscalls under load.
                    if rx.is_empty() {
                        w.flush().map_err(SinkError::Write)?;
                        written_tx.send_replace(batches);
                    }
                }
                w.flush().map_err(SinkError::Write)?;
                Ok(bytes)
            })
            .map_err(SinkError::Spawn)?;
        Ok(Self {
            tx,
            thread,
            queued: AtomicU64::new(0),
            written,
        })
    }

    /// Queues a batch; waits while the writer is behind.
    pub async fn send(&self, batch: Vec<u8>) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        self.tx.send(batch).await.map_err(|_| SinkError::Gone)?;
        self.queued.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Waits until every batch queued so far has been written and flushed,
    /// e.g. so that systemd hears READY=1 only after the start record is out.
    pub async fn flushed(&self) -> Result<(), SinkError> {
        let target = self.queued.load(Ordering::Relaxed);
        let mut written = self.written.clone();
        written
            .wait_for(|&n| n >= target)
            .await
            .map(|_| ())
            .map_err(|_| SinkError::Gone)
    }

    /// Flushes everything queued and stops the writer; returns bytes written.
    pub fn close(self) -> Result<u64, SinkError> {
        drop(self.tx);
        self.thread.join().map_err(|_| SinkError::Gone)?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn writes_batches_in_order() {
        let buf = Shared::default();
        let sink = StdoutSink::spawn_with(2, buf.clone()).unwrap();
        for i in 0..100 {
            sink.send(format!("{i}\n").into_bytes()).await.unwrap();
        }
        let n = sink.close().unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let got: Vec<u32> = text.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        assert_eq!(n, text.len() as u64);
    }

    #[tokio::test]
    async fn flushed_waits_for_the_writer() {
        let buf = Shared::default();
        let sink = StdoutSink::spawn_with(4, buf.clone()).unwrap();
        sink.flushed().await.unwrap();
        for i in 0..10 {
            sink.send(format!("{i}\n").into_bytes()).await.unwrap();
        }
        sink.flushed().await.unwrap();
        assert_eq!(buf.0.lock().unwrap().len(), 20);
        sink.close().unwrap();
    }

    #[tokio::test]
    async fn a_broken_writer_is_reported_not_ignored() {
        let sink = StdoutSink::spawn_with(1, Broken).unwrap();
        // The first send may succeed before the writer fails; keep sending
        // until the failure surfaces.
        for _ in 0..100 {
            if sink.send(b"x\n".to_vec()).await.is_err() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(matches!(sink.close(), Err(SinkError::Write(_))));
    }
}
