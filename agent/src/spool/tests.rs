//! Tests of the spool: order, durability boundary, restarts, torn tails,
//! the size bound.

use super::*;

fn cfg(dir: &Path, max_bytes: u64, segment_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.join("spool"),
        max_bytes,
        segment_bytes,
    }
}

fn line(seq: u64) -> Vec<u8> {
    format!(
        "{{\"hash\":\"h{seq}\",\"seq\":{seq},\"pad\":\"{}\"}}\n",
        "x".repeat(40)
    )
    .into_bytes()
}

fn put(s: &mut Spool, seqs: std::ops::RangeInclusive<u64>) {
    for seq in seqs {
        s.append_raw(seq, &format!("h{seq}"), &line(seq)).unwrap();
    }
}

fn seqs(entries: &[SpoolEntry]) -> Vec<u64> {
    entries.iter().map(|e| e.seq).collect()
}

#[test]
fn entries_drain_in_order_across_segments_and_acked_segments_go() {
    let d = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&cfg(d.path(), 1 << 20, 400)).unwrap();
    put(&mut s, 1..=20);
    s.flush().unwrap();
    assert!(s.stats().segments > 3, "{:?}", s.stats());
    let first = s.peek(7).unwrap();
    assert_eq!(seqs(&first), (1..=7).collect::<Vec<_>>());
    assert_eq!(first[0].line, line(1));
    assert_eq!(
        seqs(&s.peek(7).unwrap()),
        seqs(&first),
        "peek does not consume"
    );
    assert_eq!(s.ack(7).unwrap(), 7);
    assert_eq!(seqs(&s.peek(100).unwrap()), (8..=20).collect::<Vec<_>>());
    assert_eq!(s.ack(20).unwrap(), 13);
    assert!(s.peek(10).unwrap().is_empty());
    let st = s.stats();
    assert_eq!(
        (st.pending, st.acked, st.appended, st.segments),
        (0, 20, 20, 1)
    );
    assert_eq!(s.last_appended().unwrap().hash, "h20");
}

#[test]
fn only_flushed_entries_are_handed_out() {
    let d = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&cfg(d.path(), 1 << 20, 1 << 20)).unwrap();
    put(&mut s, 1..=3);
    assert!(s.peek(10).unwrap().is_empty());
    s.flush().unwrap();
    put(&mut s, 4..=5);
    assert_eq!(seqs(&s.peek(10).unwrap()), vec![1, 2, 3]);
    s.flush().unwrap();
    assert_eq!(seqs(&s.peek(10).unwrap()), vec![1, 2, 3, 4, 5]);
}

#[test]
fn a_killed_spool_reopens_with_unacked_entries_and_its_tip() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path(), 1 << 20, 300);
    let mut s = Spool::open(&c).unwrap();
    put(&mut s, 1..=10);
    s.flush().unwrap();
    s.ack(4).unwrap();
    put(&mut s, 11..=12); // written, never flushed: still there after kill -9
    drop(s);
    let mut s = Spool::open(&c).unwrap();
    assert_eq!(seqs(&s.peek(100).unwrap()), (5..=12).collect::<Vec<_>>());
    assert_eq!(s.stats().pending, 8);
    assert_eq!(
        s.last_appended(),
        Some(ChainTip {
            seq: 12,
            hash: "h12".into()
        })
    );
    assert!(matches!(
        s.append_raw(12, "x", b"{}\n"),
        Err(SpoolError::OutOfOrder { seq: 12, last: 12 })
    ));
    s.ack(12).unwrap();
    drop(s);
    // Everything acked: the newest segment still gives the tip.
    let s = Spool::open(&c).unwrap();
    assert_eq!(s.last_appended().map(|t| t.seq), Some(12));
    assert_eq!(s.stats().pending, 0);
}

fn last_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = fs::read_dir(dir.join("spool"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    segs.pop().unwrap()
}

#[test]
fn a_torn_tail_is_cut_counted_and_appends_continue() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path(), 1 << 20, 1 << 20);
    let mut s = Spool::open(&c).unwrap();
    put(&mut s, 1..=5);
    s.flush().unwrap();
    drop(s);
    // Half a frame, as a crash mid-write leaves it.
    let seg = last_segment(d.path());
    let mut frame = Vec::new();
    frame.extend_from_slice(&100u32.to_le_bytes());
    frame.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 6, 0, 0, 0, 0, 0, 0, 0, b'{']);
    let good_len = fs::metadata(&seg).unwrap().len();
    OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&frame)
        .unwrap();
    let mut s = Spool::open(&c).unwrap();
    assert_eq!(s.stats().torn_frames, 1);
    assert_eq!(s.stats().torn_bytes, frame.len() as u64);
    assert_eq!(fs::metadata(&seg).unwrap().len(), good_len);
    put(&mut s, 6..=6);
    s.flush().unwrap();
    drop(s);
    let mut s = Spool::open(&c).unwrap();
    assert_eq!(s.stats().torn_frames, 0);
    assert_eq!(seqs(&s.peek(10).unwrap()), (1..=6).collect::<Vec<_>>());
}

#[test]
fn a_corrupt_frame_cuts_the_rest_of_its_segment() {
    let d = tempfile::tempdir().unwrap();
    let c = cfg(d.path(), 1 << 20, 1 << 20);
    let mut s = Spool::open(&c).unwrap();
    put(&mut s, 1..=4);
    s.flush().unwrap();
    drop(s);
    let seg = last_segment(d.path());
    let mut bytes = fs::read(&seg).unwrap();
    let frame = bytes.len() / 4;
    bytes[frame + HEADER + 3] ^= 0x40; // a bit flip in record 2's payload
    fs::write(&seg, &bytes).unwrap();
    let mut s = Spool::open(&c).unwrap();
    assert_eq!(s.stats().torn_frames, 1);
    assert_eq!(s.stats().torn_bytes, 3 * frame as u64);
    assert_eq!(seqs(&s.peek(10).unwrap()), vec![1]);
    assert_eq!(s.last_appended().map(|t| t.seq), Some(1));
}

#[test]
fn past_the_bound_the_oldest_are_shed_and_counted() {
    let d = tempfile::tempdir().unwrap();
    let frame = (HEADER + line(1).len()) as u64;
    // Room for ~10 frames, segments of 2.
    let mut s = Spool::open(&cfg(d.path(), 10 * frame, 2 * frame)).unwrap();
    put(&mut s, 1..=30);
    s.flush().unwrap();
    let st = s.stats();
    assert!(st.bytes <= 10 * frame, "{st:?}");
    let left = seqs(&s.peek(100).unwrap());
    assert_eq!(*left.last().unwrap(), 30);
    assert_eq!(
        left,
        (left[0]..=30).collect::<Vec<_>>(),
        "no hole in what is kept"
    );
    assert_eq!(st.shed + left.len() as u64, 30);
    assert_eq!(s.take_shed(), st.shed);
    assert_eq!(s.take_shed(), 0);
    // Acked entries are not counted when shed.
    s.ack(30).unwrap();
    put(&mut s, 31..=50);
    assert_eq!(s.take_shed(), s.stats().shed - st.shed);
    assert!(s.stats().shed - st.shed < 20);
}

#[test]
fn oversized_records_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&cfg(d.path(), 1 << 30, 1 << 24)).unwrap();
    let big = vec![b'x'; MAX_PAYLOAD + 1];
    assert!(matches!(
        s.append_raw(1, "h", &big),
        Err(SpoolError::TooLarge { seq: 1, .. })
    ));
    put(&mut s, 1..=1);
}

fn sealed(seq: u64) -> Sealed {
    Sealed {
        seq,
        hash: format!("h{seq}"),
        kind: "exec".into(),
        severity: None,
        line: line(seq),
        signed: false,
    }
}

#[test]
fn a_group_is_one_write_and_reads_back_like_single_appends() {
    let d = tempfile::tempdir().unwrap();
    // Segments of ~3 frames: groups of 2 fit, a group of 5 must split.
    let mut s = Spool::open(&cfg(d.path(), 1 << 20, 300)).unwrap();
    let group = |r: std::ops::RangeInclusive<u64>| r.map(sealed).collect::<Vec<_>>();
    s.append_group(&group(1..=2)).unwrap();
    s.append_group(&group(3..=7)).unwrap();
    s.append_group(&[]).unwrap();
    s.publish();
    assert_eq!(seqs(&s.peek(100).unwrap()), (1..=7).collect::<Vec<_>>());
    assert_eq!(s.peek(1).unwrap()[0].line, line(1));
    assert_eq!(s.last_appended().unwrap().hash, "h7");
    let st = s.stats();
    assert_eq!((st.appended, st.pending), (7, 7));
    assert!(st.segments >= 3, "{st:?}");
    // Out of order in a group: refused like a single append, nothing half-written.
    let err = s.append_group(&[sealed(8), sealed(8)]).unwrap_err();
    assert!(
        matches!(err, SpoolError::OutOfOrder { seq: 8, last: 8 }),
        "{err}"
    );
    drop(s);
    let mut s = Spool::open(&cfg(d.path(), 1 << 20, 300)).unwrap();
    assert_eq!(s.last_appended().unwrap().seq, 8);
    assert_eq!(seqs(&s.peek(100).unwrap()), (1..=8).collect::<Vec<_>>());
    assert_eq!(s.stats().torn_frames, 0);
}
