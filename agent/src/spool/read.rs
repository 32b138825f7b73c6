//! The read side of the spool: handing out the oldest durable entries
//! and releasing them once acked.

use std::{fs::File, os::unix::fs::FileExt};

use super::{HEADER, MAX_PAYLOAD, Pos, Segment, Spool, SpoolEntry, SpoolError, seg_name};

impl Spool {
    fn visible_end_is_end(&self) -> bool {
        self.segments.back().is_none_or(|s| s.bytes == self.visible)
    }

    /// Published end of segment `seg`.
    fn visible_end(&self, seg: &Segment) -> u64 {
        if self.segments.back().is_some_and(|s| s.id == seg.id) {
            self.visible
        } else {
            seg.bytes
        }
    }

    /// Reads the frame at the read position after `pos`; `None` at the published end.
    fn next_frame(
        &mut self,
        pos: &mut Pos,
        with_body: bool,
    ) -> Result<Option<(u64, Vec<u8>)>, SpoolError> {
        loop {
            let Some(i) = self.segments.iter().position(|s| s.id == pos.seg) else {
                return Ok(None);
            };
            let end = self.visible_end(&self.segments[i]);
            if pos.offset >= end {
                match self.segments.get(i + 1) {
                    Some(next) if pos.offset >= self.segments[i].bytes => {
                        *pos = Pos {
                            seg: next.id,
                            offset: 0,
                            index: 0,
                        };
                        continue;
                    }
                    _ => return Ok(None),
                }
            }
            let path = self.dir.join(seg_name(pos.seg));
            if self.reader.as_ref().is_none_or(|(id, _)| *id != pos.seg) {
                let f = File::open(&path).map_err(self.err(&path))?;
                self.reader = Some((pos.seg, f));
            }
            let (_, f) = self.reader.as_ref().expect("invariant: opened above");
            let mut head = [0u8; HEADER];
            f.read_exact_at(&mut head, pos.offset)
                .map_err(self.err(&path))?;
            let len =
                u32::from_le_bytes(head[..4].try_into().expect("invariant: 4 bytes")) as usize;
            let seq = u64::from_le_bytes(head[8..].try_into().expect("invariant: 8 bytes"));
            let mut body = Vec::new();
            if with_body {
                body.resize(len.min(MAX_PAYLOAD), 0);
                f.read_exact_at(&mut body, pos.offset + HEADER as u64)
                    .map_err(self.err(&path))?;
            }
            pos.offset += (HEADER + len) as u64;
            pos.index += 1;
            return Ok(Some((seq, body)));
        }
    }

    /// Up to `n` of the oldest unacked, published entries, in order.
    pub fn peek(&mut self, n: usize) -> Result<Vec<SpoolEntry>, SpoolError> {
        let mut pos = self.read;
        let mut out = Vec::with_capacity(n.min(4096));
        while out.len() < n {
            match self.next_frame(&mut pos, true)? {
                Some((seq, line)) => out.push(SpoolEntry { seq, line }),
                None => break,
            }
        }
        Ok(out)
    }

    /// Releases every entry with seq ≤ `upto` (in order, stopping at the
    /// first later one); returns how many were released.
    pub fn ack(&mut self, upto: u64) -> Result<u64, SpoolError> {
        let mut released = 0;
        if upto >= self.last_seq && self.visible_end_is_end() {
            // Everything appended is released (local sinks only, or NATS
            // caught up): no need to read each frame's header.
            released = self.stats.pending;
            self.read = self.end_pos();
        }
        loop {
            let mut pos = self.read;
            match self.next_frame(&mut pos, false)? {
                Some((seq, _)) if seq <= upto => {
                    self.read = pos;
                    released += 1;
                }
                _ => break,
            }
        }
        // next_frame only moves across segments when it reads a frame;
        // step off a fully read segment so that it can be deleted.
        while self.segments.len() > 1 && self.segments[0].id <= self.read.seg {
            let first = &self.segments[0];
            if first.id == self.read.seg && self.read.index < first.count {
                break;
            }
            if first.id == self.read.seg {
                self.read = Pos {
                    seg: self.segments[1].id,
                    offset: 0,
                    index: 0,
                };
            }
            self.remove_front()?;
        }
        if released > 0 {
            self.stats.pending -= released;
            self.stats.acked += released;
            let mut buf = [0u8; 12];
            buf[..8].copy_from_slice(&upto.to_le_bytes());
            let crc = crc32fast::hash(&buf[..8]);
            buf[8..].copy_from_slice(&crc.to_le_bytes());
            let path = self.dir.join("ack");
            self.ack_file
                .write_all_at(&buf, 0)
                .map_err(self.err(&path))?;
        }
        Ok(released)
    }
}
