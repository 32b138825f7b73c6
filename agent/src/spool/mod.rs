//! Durable on-disk queue between the sealer and NATS: a record counts as
//! sent only once JetStream acked it, and until then it lives here.
//!
//! Layout: `<dir>/<id:016x>.seg` segment files of frames
//! `[len u32 LE][crc32 u32 LE][seq u64 LE][payload]`, the crc covering seq
//! and payload; `<dir>/ack` holds the highest acked seq (+ crc).
//!
//! - [`Spool::append`] writes to the kernel at once (survives `kill -9`);
//!   [`Spool::publish`] makes what was appended peekable, [`Spool::flush`]
//!   also fsyncs it. Only published entries are handed out by
//!   [`Spool::peek`]. The caller decides how often to pay for the fsync
//!   (the delivery stage: at once for alerts, else at most once per
//!   `spool.sync_interval_ms`); a power loss can therefore take the
//!   unsynced tail, and the sealer declares that as a gap in the chain
//!   (see [`crate::record::seal`]) instead of reusing its seqs.
//! - [`Spool::ack`] releases entries up to a seq and deletes segments that
//!   are entirely acked, except the newest, which keeps the chain tip
//!   ([`Spool::last_appended`]) for the sealer across restarts.
//! - Past `max_bytes`, the oldest segments are shed whole; shed entries
//!   that were not yet acked are counted ([`Spool::take_shed`]).
//! - On open, a torn or corrupt frame and everything after it in that
//!   segment is truncated and counted; the ack file's seq is written in
//!   place without fsync: after a power loss a few acked entries may be
//!   published again, which the `Nats-Msg-Id` de-duplication absorbs.

mod read;
mod shared;

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{DirBuilderExt, FileExt},
    path::{Path, PathBuf},
};

pub use shared::SharedSpool;
use thiserror::Error;

use crate::record::seal::{ChainTip, Sealed};

const HEADER: usize = 16;
/// Larger frames are refused on append and treated as corruption on read.
pub const MAX_PAYLOAD: usize = 16 << 20;

#[derive(Debug, Error)]
pub enum SpoolError {
    #[error("spool {path}")]
    Io {
        path: PathBuf,
        #[source]
        io_error: io::Error,
    },
    #[error("record seq {seq} is {len} bytes, more than the spool's frame limit")]
    TooLarge { seq: u64, len: usize },
    #[error("record seq {seq} is not after the last appended seq {last}")]
    OutOfOrder { seq: u64, last: u64 },
}

/// Spool settings (config file section `[spool]`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Bound on the bytes on disk; past it the oldest entries are shed.
    pub max_bytes: u64,
    /// Size at which a new segment is started (capped at max_bytes / 4 so
    /// that shedding frees space in reasonable steps).
    pub segment_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/debugmon/spool"),
            max_bytes: 1 << 30,
            segment_bytes: 16 << 20,
        }
    }
}

/// Counters for metrics and `lost` records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Entries not yet acked (flushed or not).
    pub pending: u64,
    pub bytes: u64,
    pub segments: usize,
    pub appended: u64,
    pub acked: u64,
    /// Unacked entries dropped by the size bound, since open.
    pub shed: u64,
    /// Frames cut at open (torn tail writes or corruption), and their bytes.
    pub torn_frames: u64,
    pub torn_bytes: u64,
}

/// One entry handed out by [`Spool::peek`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolEntry {
    pub seq: u64,
    pub line: Vec<u8>,
}

#[derive(Debug)]
struct Segment {
    id: u64,
    bytes: u64,
    count: u64,
}

/// Position of the first unacked entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    seg: u64,
    offset: u64,
    index: u64,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Oldest first; the last one is written to.
    segments: VecDeque<Segment>,
    writer: Option<File>,
    /// Bytes of the last segment handed out by `peek` (published).
    visible: u64,
    /// Bytes of the last segment known to be on disk (fsync'd).
    durable: u64,
    read: Pos,
    reader: Option<(u64, File)>,
    ack_file: File,
    last_seq: u64,
    tip: Option<ChainTip>,
    stats: SpoolStats,
    shed_unreported: u64,
}

/// Appends one frame: `[len][crc32 of seq and payload][seq][payload]`.
fn push_frame(out: &mut Vec<u8>, seq: u64, line: &[u8]) {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(line);
    out.extend_from_slice(
        &u32::try_from(line.len())
            .expect("invariant: below MAX_PAYLOAD")
            .to_le_bytes(),
    );
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(line);
}

fn seg_name(id: u64) -> String {
    format!("{id:016x}.seg")
}

fn frame_ok(buf: &[u8], off: usize) -> Option<(u64, usize)> {
    let head = buf.get(off..off + HEADER)?;
    let len = u32::from_le_bytes(head[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
    let seq = u64::from_le_bytes(head[8..16].try_into().ok()?);
    if len > MAX_PAYLOAD {
        return None;
    }
    let body = buf.get(off + HEADER..off + HEADER + len)?;
    let mut h = crc32fast::Hasher::new();
    h.update(&head[8..16]);
    h.update(body);
    (h.finalize() == crc).then_some((seq, HEADER + len))
}

fn tip_of(seq: u64, payload: &[u8]) -> Option<ChainTip> {
    #[derive(serde::Deserialize)]
    struct H {
        hash: String,
    }
    let h: H = serde_json::from_slice(payload).ok()?;
    Some(ChainTip { seq, hash: h.hash })
}

impl Spool {
    fn err(&self, path: &Path) -> impl FnOnce(io::Error) -> SpoolError {
        let path = path.to_owned();
        move |io_error| SpoolError::Io { path, io_error }
    }

    /// Opens (or creates) the spool, repairing a torn tail.
    pub fn open(cfg: &SpoolConfig) -> Result<Self, SpoolError> {
        let dir = cfg.dir.clone();
        let dir_err = |io_error| SpoolError::Io {
            path: cfg.dir.clone(),
            io_error,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(dir_err)?;
        let mut ids: Vec<u64> = fs::read_dir(&dir)
            .map_err(dir_err)?
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                u64::from_str_radix(name.strip_suffix(".seg")?, 16).ok()
            })
            .collect();
        ids.sort_unstable();
        let ack_path = dir.join("ack");
        let ack_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&ack_path)
            .map_err(|io_error| SpoolError::Io {
                path: ack_path.clone(),
                io_error,
            })?;
        let mut ack = [0u8; 12];
        let acked = match ack_file.read_exact_at(&mut ack, 0) {
            Ok(()) if crc32fast::hash(&ack[..8]).to_le_bytes() == ack[8..] => {
                u64::from_le_bytes(ack[..8].try_into().expect("invariant: 8 bytes"))
            }
            _ => 0,
        };
        let mut spool = Self {
            dir,
            max_bytes: cfg.max_bytes.max(1),
            segment_bytes: cfg.segment_bytes.clamp(1, (cfg.max_bytes / 4).max(1)),
            segments: VecDeque::new(),
            writer: None,
            visible: 0,
            durable: 0,
            read: Pos {
                seg: 0,
                offset: 0,
                index: 0,
            },
            reader: None,
            ack_file,
            last_seq: acked,
            tip: None,
            stats: SpoolStats::default(),
            shed_unreported: 0,
        };
        let mut read: Option<Pos> = None;
        let mut last_frame: Option<(u64, Vec<u8>)> = None;
        for id in ids {
            let path = spool.dir.join(seg_name(id));
            let buf = fs::read(&path).map_err(spool.err(&path))?;
            let (mut off, mut count, mut unacked) = (0usize, 0u64, 0u64);
            let mut good = None;
            while off < buf.len() {
                let Some((seq, len)) = frame_ok(&buf, off) else {
                    break;
                };
                if seq > acked {
                    if read.is_none() {
                        read = Some(Pos {
                            seg: id,
                            offset: off as u64,
                            index: count,
                        });
                    }
                    unacked += 1;
                }
                spool.last_seq = spool.last_seq.max(seq);
                count += 1;
                good = Some((seq, off, len));
                off += len;
            }
            if let Some((seq, at, len)) = good {
                // The segment's last good frame: the tip, if no later
                // segment has frames. Parsing only these keeps open fast.
                last_frame = Some((seq, buf[at + HEADER..at + len].to_vec()));
            }
            if off < buf.len() {
                // A torn write (or corruption): cut it so appends continue
                // from a clean frame boundary.
                spool.stats.torn_frames += 1;
                spool.stats.torn_bytes += (buf.len() - off) as u64;
                tracing::warn!(segment = %path.display(), offset = off, bytes = buf.len() - off, "spool: cutting a torn frame");
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(spool.err(&path))?;
                f.set_len(off as u64).map_err(spool.err(&path))?;
                f.sync_all().map_err(spool.err(&path))?;
            }
            if count == 0 {
                fs::remove_file(&path).map_err(spool.err(&path))?;
                continue;
            }
            spool.stats.pending += unacked;
            spool.stats.bytes += off as u64;
            spool.segments.push_back(Segment {
                id,
                bytes: off as u64,
                count,
            });
        }
        spool.tip = last_frame.and_then(|(seq, payload)| tip_of(seq, &payload));
        if spool.segments.is_empty() {
            // Nothing on disk: whatever seqs come next are new.
            spool.last_seq = 0;
        }
        spool.read = read.unwrap_or_else(|| spool.end_pos());
        // Fully acked segments before the read position go, but the newest
        // stays for the chain tip.
        while spool.segments.len() > 1 && spool.segments[0].id < spool.read.seg {
            spool.remove_front()?;
        }
        if let Some(last) = spool.segments.back() {
            let (id, bytes) = (last.id, last.bytes);
            let path = spool.dir.join(seg_name(id));
            let f = OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(spool.err(&path))?;
            f.sync_data().map_err(spool.err(&path))?;
            spool.writer = Some(f);
            spool.visible = bytes;
            spool.durable = bytes;
        }
        Ok(spool)
    }

    fn end_pos(&self) -> Pos {
        match self.segments.back() {
            Some(s) => Pos {
                seg: s.id,
                offset: s.bytes,
                index: s.count,
            },
            None => Pos {
                seg: 0,
                offset: 0,
                index: 0,
            },
        }
    }

    fn remove_front(&mut self) -> Result<(), SpoolError> {
        if let Some(seg) = self.segments.pop_front() {
            let path = self.dir.join(seg_name(seg.id));
            if self.reader.as_ref().is_some_and(|(id, _)| *id == seg.id) {
                self.reader = None;
            }
            self.stats.bytes -= seg.bytes;
            fs::remove_file(&path).map_err(self.err(&path))?;
        }
        Ok(())
    }

    /// The last appended record (for [`crate::record::seal::Sealer::open_with_tip`]).
    pub fn last_appended(&self) -> Option<ChainTip> {
        self.tip.clone()
    }

    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            segments: self.segments.len(),
            ..self.stats
        }
    }

    /// Unacked entries shed since the previous call (for a `lost` record).
    pub fn take_shed(&mut self) -> u64 {
        std::mem::take(&mut self.shed_unreported)
    }

    /// Appends a sealed record (not yet durable: see [`Spool::flush`]).
    pub fn append(&mut self, rec: &Sealed) -> Result<(), SpoolError> {
        self.append_raw(rec.seq, &rec.hash, &rec.line)
    }

    /// Appends a line with its seq and hash.
    pub fn append_raw(&mut self, seq: u64, hash: &str, line: &[u8]) -> Result<(), SpoolError> {
        if line.len() > MAX_PAYLOAD {
            return Err(SpoolError::TooLarge {
                seq,
                len: line.len(),
            });
        }
        if seq <= self.last_seq && self.tip.is_some() {
            return Err(SpoolError::OutOfOrder {
                seq,
                last: self.last_seq,
            });
        }
        let frame_len = (HEADER + line.len()) as u64;
        let rotate = self
            .segments
            .back()
            .is_none_or(|s| s.bytes > 0 && s.bytes + frame_len > self.segment_bytes);
        if rotate {
            self.rotate()?;
        }
        let mut frame = Vec::with_capacity(HEADER + line.len());
        push_frame(&mut frame, seq, line);
        self.write_frames(&frame, 1, seq, hash)
    }

    /// Appends records sealed together with one write (not yet durable:
    /// see [`Spool::flush`]); a group that would cross into a new segment,
    /// or that has a bad record, goes one record at a time.
    pub fn append_group(&mut self, recs: &[Sealed]) -> Result<(), SpoolError> {
        let total: u64 = recs.iter().map(|r| (HEADER + r.line.len()) as u64).sum();
        let mut prev = if self.tip.is_some() { self.last_seq } else { 0 };
        let valid = recs.iter().all(|r| {
            let ok = r.line.len() <= MAX_PAYLOAD && r.seq > prev;
            prev = r.seq;
            ok
        });
        let fits = self
            .segments
            .back()
            .is_some_and(|s| s.bytes + total <= self.segment_bytes);
        let Some(last) = recs.last().filter(|_| valid && fits) else {
            for r in recs {
                self.append(r)?;
            }
            return Ok(());
        };
        let mut frames = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for r in recs {
            push_frame(&mut frames, r.seq, &r.line);
        }
        self.write_frames(&frames, recs.len() as u64, last.seq, &last.hash)
    }

    /// Writes `n` whole frames to the last segment and counts them; the
    /// last one is record `seq` with `hash`.
    fn write_frames(
        &mut self,
        frames: &[u8],
        n: u64,
        seq: u64,
        hash: &str,
    ) -> Result<(), SpoolError> {
        let seg = self
            .segments
            .back_mut()
            .expect("invariant: the caller made or saw a segment");
        let path = self.dir.join(seg_name(seg.id));
        let w = self
            .writer
            .as_mut()
            .expect("invariant: the last segment is open for writing");
        if let Err(io_error) = w.write_all(frames) {
            // Cut partial frames now so the next append starts cleanly.
            let _ = w.set_len(seg.bytes);
            return Err(SpoolError::Io { path, io_error });
        }
        let bytes = frames.len() as u64;
        seg.bytes += bytes;
        seg.count += n;
        self.stats.bytes += bytes;
        self.stats.pending += n;
        self.stats.appended += n;
        self.last_seq = seq;
        self.tip = Some(ChainTip {
            seq,
            hash: hash.to_owned(),
        });
        self.shed_over_bound()
    }

    fn rotate(&mut self) -> Result<(), SpoolError> {
        // Segments other than the last are always fully durable.
        self.flush()?;
        let id = self.segments.back().map_or(0, |s| s.id + 1);
        let path = self.dir.join(seg_name(id));
        let f = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(self.err(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(self.err(&self.dir))?;
        if self.segments.is_empty() {
            self.read = Pos {
                seg: id,
                offset: 0,
                index: 0,
            };
        }
        self.segments.push_back(Segment {
            id,
            bytes: 0,
            count: 0,
        });
        self.writer = Some(f);
        self.visible = 0;
        self.durable = 0;
        Ok(())
    }

    fn shed_over_bound(&mut self) -> Result<(), SpoolError> {
        while self.stats.bytes > self.max_bytes && self.segments.len() > 1 {
            let seg = &self.segments[0];
            let unacked = if seg.id == self.read.seg {
                seg.count - self.read.index
            } else {
                0
            };
            if unacked > 0 {
                tracing::warn!(entries = unacked, "spool full: shedding the oldest entries");
            }
            self.stats.shed += unacked;
            self.stats.pending -= unacked;
            self.shed_unreported += unacked;
            let next = self.segments[1].id;
            if self.read.seg <= seg.id {
                self.read = Pos {
                    seg: next,
                    offset: 0,
                    index: 0,
                };
            }
            self.remove_front()?;
        }
        Ok(())
    }

    /// Makes everything appended so far peekable, without waiting for
    /// the disk (it is in the page cache: it survives a crash of the
    /// agent, not a power loss).
    pub fn publish(&mut self) {
        if let Some(seg) = self.segments.back() {
            self.visible = seg.bytes;
        }
    }

    /// Whether appended entries are not yet fsync'd.
    pub fn unsynced(&self) -> bool {
        self.segments.back().is_some_and(|s| s.bytes > self.durable)
    }

    /// Makes everything appended so far durable and peekable.
    pub fn flush(&mut self) -> Result<(), SpoolError> {
        let Some(seg) = self.segments.back() else {
            return Ok(());
        };
        let bytes = seg.bytes;
        if self.durable < bytes {
            let path = self.dir.join(seg_name(seg.id));
            if let Some(w) = &self.writer {
                w.sync_data().map_err(self.err(&path))?;
            }
            self.durable = bytes;
        }
        self.visible = bytes;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
