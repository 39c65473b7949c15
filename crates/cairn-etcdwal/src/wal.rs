//! The WAL directory: which segments to read from a snapshot on, and what they hold, read
//! as etcd's `wal.ReadAll` reads them on a restart.
//!
//! Segments are named `<seq>-<index>.wal` in 16 hex digits each: `seq` counts segments
//! from 0, `index` is the Raft index of the first entry the segment may hold. A segment
//! opens with a CRC record, the metadata record (member and cluster ids), and the hard
//! state (the very first segment: a snapshot record at index 0 instead). For example, a
//! member whose log was cut once at index 80 and that saved a snapshot at index 100:
//!
//! ```text
//! 0000000000000000-0000000000000000.wal  crc(0) metadata snapshot{0,0} entry1 state ... entry79
//! 0000000000000001-0000000000000050.wal  crc(sum) metadata state entry80 ... snapshot{100,t} ...
//! ```
//!
//! Reading from the snapshot at 100 starts at the last segment whose index is at most 100
//! (here the second), needs every later segment in sequence, and keeps the entries past
//! 100. An entry at an index already read replaces it and drops those after it (a new
//! leader overwrote an uncommitted tail).

use std::fs::File;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::error::Error;
use crate::pb;
use crate::record::{self, Decoder, Next};

/// A segment file's name, parsed.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    pub(crate) name: String,
    pub(crate) seq: u64,
    pub(crate) index: u64,
}

/// Parses `<seq>-<index>.wal` as etcd's `%016x-%016x.wal` scan does (up to 16 hex digits
/// each).
pub(crate) fn parse_segment_name(name: &str) -> Option<Segment> {
    let stem = name.strip_suffix(".wal")?;
    let (seq, index) = stem.split_once('-')?;
    let hex = |s: &str| {
        if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(s, 16).ok()
    };
    Some(Segment {
        name: name.to_string(),
        seq: hex(seq)?,
        index: hex(index)?,
    })
}

/// The directory's segments in name order, as etcd sorts them, and the names of other
/// files etcd would ignore (left-over `.tmp` files not counted).
pub(crate) fn list_segments(dir: &Path) -> Result<(Vec<Segment>, Vec<String>), Error> {
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let mut segments = Vec::new();
    let mut ignored = Vec::new();
    for name in names {
        match parse_segment_name(&name) {
            Some(s) => segments.push(s),
            None if name.ends_with(".tmp") => {}
            None => ignored.push(name),
        }
    }
    Ok((segments, ignored))
}

/// What the WAL holds from a snapshot on.
#[derive(Debug)]
pub(crate) struct Contents {
    pub(crate) metadata: pb::Metadata,
    pub(crate) state: pb::HardState,
    pub(crate) entries: Vec<pb::Entry>,
    /// Where the last segment's torn tail starts, if it has one.
    pub(crate) torn: Option<(PathBuf, u64)>,
}

/// The snapshot records of the whole WAL whose index is at most the last hard state's
/// commit: the snapshots etcd may start from (`wal.ValidSnapshotEntries`).
pub(crate) fn valid_snapshots(dir: &Path) -> Result<Vec<pb::WalSnapshot>, Error> {
    let (segments, _) = list_segments(dir)?;
    if segments.is_empty() {
        return Err(Error::NoSegments {
            dir: dir.to_path_buf(),
        });
    }
    let paths = segments.iter().map(|s| dir.join(&s.name)).collect();
    let mut decoder = Decoder::new(paths);
    let mut snaps = Vec::new();
    let mut state = pb::HardState::default();
    while let Next::Record(rec) = decoder.next()? {
        match rec.r#type {
            record::SNAPSHOT => snaps.push(decode_record::<pb::WalSnapshot>(&decoder, &rec)?),
            record::STATE => state = decode_record(&decoder, &rec)?,
            _ => {}
        }
    }
    snaps.retain(|s| s.index <= state.commit);
    Ok(snaps)
}

/// Reads the WAL from the snapshot at (`index`, `term`) on, as etcd does on a restart.
pub(crate) fn read_from(dir: &Path, index: u64, term: u64) -> Result<Contents, Error> {
    let (segments, _) = list_segments(dir)?;
    if segments.is_empty() {
        return Err(Error::NoSegments {
            dir: dir.to_path_buf(),
        });
    }
    let Some(first) = segments.iter().rposition(|s| s.index <= index) else {
        return Err(Error::NoSegmentForSnapshot {
            dir: dir.to_path_buf(),
            index,
        });
    };
    let used = &segments[first..];
    for pair in used.windows(2) {
        if pair[1].seq != pair[0].seq.wrapping_add(1) {
            return Err(Error::SegmentGap {
                after: pair[0].name.clone(),
                next: pair[1].name.clone(),
            });
        }
    }
    if let Some(last) = used.last() {
        refuse_if_locked(&dir.join(&last.name))?;
    }

    let mut decoder = Decoder::new(used.iter().map(|s| dir.join(&s.name)).collect());
    let mut metadata: Option<Vec<u8>> = None;
    let mut state = pb::HardState::default();
    let mut entries: Vec<pb::Entry> = Vec::new();
    let mut matched = false;
    let torn = loop {
        let rec = match decoder.next()? {
            Next::Record(r) => r,
            Next::End => break None,
            Next::Torn { path, offset } => break Some((path, offset)),
        };
        match rec.r#type {
            record::ENTRY => {
                let e: pb::Entry = decode_record(&decoder, &rec)?;
                if e.index > index {
                    let at = e.index - index - 1;
                    if at > entries.len() as u64 {
                        return Err(Error::EntryGap {
                            snapshot_index: index,
                            index: e.index,
                            have: entries.len() as u64,
                        });
                    }
                    // Replaces the entry at this index and drops the ones after it.
                    entries.truncate(at as usize);
                    entries.push(e);
                }
            }
            record::STATE => state = decode_record(&decoder, &rec)?,
            record::METADATA => {
                if metadata.as_ref().is_some_and(|m| *m != rec.data) {
                    return Err(Error::MetadataConflict {
                        path: decoder.path().to_path_buf(),
                    });
                }
                metadata = Some(rec.data);
            }
            record::CRC => {}
            record::SNAPSHOT => {
                let s: pb::WalSnapshot = decode_record(&decoder, &rec)?;
                if s.index == index {
                    if s.term != term {
                        return Err(Error::SnapshotMismatch {
                            index,
                            snap_term: term,
                            wal_term: s.term,
                        });
                    }
                    matched = true;
                }
            }
            other => {
                return Err(Error::UnknownRecordType {
                    path: decoder.path().to_path_buf(),
                    offset: decoder.record_offset(),
                    record_type: other,
                })
            }
        }
    };
    if !matched {
        return Err(Error::SnapshotNotFound {
            dir: dir.to_path_buf(),
            index,
            term,
        });
    }
    let Some(metadata) = metadata else {
        return Err(Error::NoMetadata {
            dir: dir.to_path_buf(),
        });
    };
    let metadata =
        pb::Metadata::decode(metadata.as_slice()).map_err(|source| Error::BadRecord {
            path: dir.to_path_buf(),
            offset: 0,
            source,
        })?;
    Ok(Contents {
        metadata,
        state,
        entries,
        torn,
    })
}

/// Decodes a record's data as `M`.
fn decode_record<M: Message + Default>(decoder: &Decoder, rec: &pb::Record) -> Result<M, Error> {
    M::decode(rec.data.as_slice()).map_err(|source| Error::BadRecord {
        path: decoder.path().to_path_buf(),
        offset: decoder.record_offset(),
        source,
    })
}

/// Refuses a segment that another process holds locked: etcd locks the segments it has
/// open (an open file description lock on Linux) while it runs, and a running member's WAL
/// is still being written. Probing takes a shared POSIX record lock, which conflicts with
/// etcd's, and lets it go at once; the file is not changed.
fn refuse_if_locked(path: &Path) -> Result<(), Error> {
    use rustix::fs::{fcntl_lock, FlockOperation};
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    match fcntl_lock(&file, FlockOperation::NonBlockingLockShared) {
        Ok(()) => {
            let _ = fcntl_lock(&file, FlockOperation::NonBlockingUnlock);
            Ok(())
        }
        Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS => {
            Err(Error::InUse {
                path: path.to_path_buf(),
            })
        }
        Err(e) => Err(io(e.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_crc32c::Crc32c;

    /// Writes segments as etcd frames them, for tests.
    struct Writer {
        crc: Crc32c,
    }

    impl Writer {
        fn new() -> Writer {
            Writer { crc: Crc32c::new() }
        }

        /// One framed record; CRC records carry `prev` and restart the chain from it.
        fn frame(&mut self, out: &mut Vec<u8>, r#type: i64, data: Vec<u8>) {
            let crc = if r#type == record::CRC {
                let prev = self.crc.sum();
                self.crc = Crc32c::resume(prev);
                prev
            } else {
                self.crc.update(&data);
                self.crc.sum()
            };
            let body = pb::Record { r#type, crc, data }.encode_to_vec();
            let pad = (8 - body.len() % 8) % 8;
            let mut word = body.len() as u64;
            if pad != 0 {
                word |= (0x80 | pad as u64) << 56;
            }
            out.extend_from_slice(&word.to_le_bytes());
            out.extend_from_slice(&body);
            out.extend(std::iter::repeat_n(0u8, pad));
        }

        /// A segment's opening: CRC, metadata, and the first segment's snapshot record.
        fn head(&mut self, out: &mut Vec<u8>, first: bool) {
            self.frame(out, record::CRC, Vec::new());
            let meta = pb::Metadata {
                node_id: 0xa1,
                cluster_id: 0xc1,
            };
            self.frame(out, record::METADATA, meta.encode_to_vec());
            if first {
                let snap = pb::WalSnapshot::default();
                self.frame(out, record::SNAPSHOT, snap.encode_to_vec());
            }
        }

        fn entry(&mut self, out: &mut Vec<u8>, index: u64, term: u64) {
            let e = pb::Entry {
                r#type: 0,
                term,
                index,
                data: Vec::new(),
            };
            self.frame(out, record::ENTRY, e.encode_to_vec());
        }

        fn state(&mut self, out: &mut Vec<u8>, commit: u64) {
            let s = pb::HardState {
                term: 2,
                vote: 0xa1,
                commit,
            };
            self.frame(out, record::STATE, s.encode_to_vec());
        }
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    const SEG0: &str = "0000000000000000-0000000000000000.wal";
    const SEG1: &str = "0000000000000001-0000000000000004.wal";
    const SEG2: &str = "0000000000000002-0000000000000006.wal";

    /// Three segments: entries 1-3, 4-5 and 6, a hard state committing 6, and each
    /// segment's bytes.
    fn three_segments(dir: &Path) -> [Vec<u8>; 3] {
        let mut w = Writer::new();
        let mut s0 = Vec::new();
        w.head(&mut s0, true);
        for i in 1..=3 {
            w.entry(&mut s0, i, 1);
        }
        w.state(&mut s0, 3);
        let mut s1 = Vec::new();
        w.head(&mut s1, false);
        w.entry(&mut s1, 4, 2);
        w.entry(&mut s1, 5, 2);
        let mut s2 = Vec::new();
        w.head(&mut s2, false);
        w.entry(&mut s2, 6, 2);
        w.state(&mut s2, 6);
        write(dir, SEG0, &s0);
        write(dir, SEG1, &s1);
        // The last segment is preallocated: zeros after its records.
        let mut s2_file = s2.clone();
        s2_file.resize(s2.len() + 4096, 0);
        write(dir, SEG2, &s2_file);
        [s0, s1, s2]
    }

    fn indexes(c: &Contents) -> Vec<(u64, u64)> {
        c.entries.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn segments_chained_by_their_crc_records_read_as_one_log() {
        let dir = tempfile::tempdir().unwrap();
        three_segments(dir.path());
        let c = read_from(dir.path(), 0, 0).unwrap();
        assert_eq!(
            indexes(&c),
            [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2)]
        );
        assert_eq!((c.metadata.node_id, c.metadata.cluster_id), (0xa1, 0xc1));
        assert_eq!(c.state.commit, 6);
        assert!(c.torn.is_none());
    }

    #[test]
    fn a_later_entry_at_an_index_replaces_it_and_what_followed() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::new();
        let mut s0 = Vec::new();
        w.head(&mut s0, true);
        for i in 1..=4 {
            w.entry(&mut s0, i, 1);
        }
        // A new leader overwrote the uncommitted 3 and 4.
        w.entry(&mut s0, 3, 2);
        write(dir.path(), SEG0, &s0);
        let c = read_from(dir.path(), 0, 0).unwrap();
        assert_eq!(indexes(&c), [(1, 1), (2, 1), (3, 2)]);
    }

    #[test]
    fn a_torn_last_record_ends_the_log_and_elsewhere_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let [_, s1, s2] = three_segments(dir.path());
        // The last segment cut inside its last record.
        write(dir.path(), SEG2, &s2[..s2.len() - 5]);
        let c = read_from(dir.path(), 0, 0).unwrap();
        assert_eq!(indexes(&c).last(), Some(&(6, 2)), "the hard state was torn");
        let (path, offset) = c.torn.unwrap();
        assert!(path.ends_with(SEG2));
        assert!(offset > 0 && offset < s2.len() as u64);

        // The same cut in a segment that is not the last.
        write(dir.path(), SEG1, &s1[..s1.len() - 5]);
        match read_from(dir.path(), 0, 0) {
            Err(Error::TruncatedSegment { path, .. }) => assert!(path.ends_with(SEG1)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_record_with_a_zeroed_sector_is_torn_only_at_the_end() {
        // A last record big enough to span sectors, with its second sector never written.
        let mut w = Writer::new();
        let mut s0 = Vec::new();
        w.head(&mut s0, true);
        w.entry(&mut s0, 1, 1);
        let before = s0.len();
        let big = pb::Entry {
            r#type: 0,
            term: 1,
            index: 2,
            data: vec![7u8; 2000],
        };
        w.frame(&mut s0, record::ENTRY, big.encode_to_vec());
        let sector = before.div_ceil(512) * 512;
        for b in &mut s0[sector..sector + 512] {
            *b = 0;
        }
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), SEG0, &s0);
        let c = read_from(dir.path(), 0, 0).unwrap();
        assert_eq!(indexes(&c), [(1, 1)]);
        assert_eq!(c.torn.map(|t| t.1), Some(before as u64));

        // With a segment after it, the same record is corruption.
        let mut s1 = Vec::new();
        w.head(&mut s1, false);
        write(dir.path(), "0000000000000001-0000000000000003.wal", &s1);
        assert!(matches!(
            read_from(dir.path(), 0, 0),
            Err(Error::CrcMismatch { .. })
        ));
    }

    #[test]
    fn a_flipped_byte_mid_log_is_a_crc_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let [_, mut s1, _] = three_segments(dir.path());
        let at = s1.len() - 3;
        s1[at] ^= 0x01;
        write(dir.path(), SEG1, &s1);
        match read_from(dir.path(), 0, 0) {
            Err(Error::CrcMismatch { path, .. }) => assert!(path.ends_with(SEG1)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_segment_whose_chain_does_not_follow_the_last_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        three_segments(dir.path());
        // A segment from another log (its CRC record starts another chain).
        let mut w = Writer::new();
        w.crc.update(b"another log");
        let mut other = Vec::new();
        w.head(&mut other, false);
        w.entry(&mut other, 6, 2);
        write(dir.path(), SEG2, &other);
        assert!(matches!(
            read_from(dir.path(), 0, 0),
            Err(Error::CrcMismatch { .. })
        ));
    }

    #[test]
    fn a_missing_segment_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        three_segments(dir.path());
        std::fs::remove_file(dir.path().join(SEG1)).unwrap();
        match read_from(dir.path(), 0, 0) {
            Err(Error::SegmentGap { after, next }) => {
                assert_eq!((after.as_str(), next.as_str()), (SEG0, SEG2))
            }
            other => panic!("{other:?}"),
        }
        // Without the first segment nothing holds the start of the log.
        let dir = tempfile::tempdir().unwrap();
        three_segments(dir.path());
        std::fs::remove_file(dir.path().join(SEG0)).unwrap();
        assert!(matches!(
            read_from(dir.path(), 0, 0),
            Err(Error::NoSegmentForSnapshot { index: 0, .. })
        ));
    }

    #[test]
    fn garbage_under_a_segment_name_is_refused_and_other_names_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        three_segments(dir.path());
        write(dir.path(), "garbage.wal", b"not a segment");
        write(dir.path(), "0.tmp", b"left over");
        let (_, ignored) = list_segments(dir.path()).unwrap();
        assert_eq!(ignored, ["garbage.wal"]);
        assert!(read_from(dir.path(), 0, 0).is_ok());

        let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8 + 1).collect();
        for name in [SEG1, SEG2] {
            let dir = tempfile::tempdir().unwrap();
            three_segments(dir.path());
            write(dir.path(), name, &garbage);
            let err = read_from(dir.path(), 0, 0).unwrap_err();
            assert!(
                matches!(
                    &err,
                    Error::TruncatedSegment { offset: 0, .. } | Error::BadRecord { offset: 0, .. }
                ),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn an_unknown_record_type_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::new();
        let mut s0 = Vec::new();
        w.head(&mut s0, true);
        w.entry(&mut s0, 1, 1);
        let at = s0.len() as u64;
        w.frame(&mut s0, 9, b"?".to_vec());
        write(dir.path(), SEG0, &s0);
        match read_from(dir.path(), 0, 0) {
            Err(e @ Error::UnknownRecordType { record_type: 9, .. }) => {
                assert!(
                    e.to_string().starts_with("wal: unexpected block type 9"),
                    "{e}"
                );
                assert!(matches!(e, Error::UnknownRecordType { offset, .. } if offset == at));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn entries_missing_after_the_snapshot_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::new();
        let mut s0 = Vec::new();
        w.head(&mut s0, true);
        w.entry(&mut s0, 1, 1);
        w.entry(&mut s0, 3, 1);
        write(dir.path(), SEG0, &s0);
        assert!(matches!(
            read_from(dir.path(), 0, 0),
            Err(Error::EntryGap {
                index: 3,
                have: 1,
                ..
            })
        ));
    }

    #[test]
    fn the_snapshot_must_be_in_the_wal_with_its_term() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::new();
        let mut s0 = Vec::new();
        w.head(&mut s0, true);
        for i in 1..=5 {
            w.entry(&mut s0, i, 1);
        }
        let snap = pb::WalSnapshot {
            index: 3,
            term: 1,
            conf_state: None,
        };
        w.frame(&mut s0, record::SNAPSHOT, snap.encode_to_vec());
        w.state(&mut s0, 5);
        write(dir.path(), SEG0, &s0);
        let c = read_from(dir.path(), 3, 1).unwrap();
        assert_eq!(indexes(&c), [(4, 1), (5, 1)]);
        assert_eq!(valid_snapshots(dir.path()).unwrap().len(), 2);
        assert!(matches!(
            read_from(dir.path(), 3, 2),
            Err(Error::SnapshotMismatch {
                index: 3,
                snap_term: 2,
                wal_term: 1
            })
        ));
        assert!(matches!(
            read_from(dir.path(), 4, 1),
            Err(Error::SnapshotNotFound { index: 4, .. })
        ));
    }

    #[test]
    fn segment_names_as_etcd_scans_them() {
        let s = parse_segment_name("0000000000000002-00000000000000a1.wal");
        assert!(matches!(
            s,
            Some(Segment {
                seq: 2,
                index: 0xa1,
                ..
            })
        ));
        for bad in [
            "0000000000000002-00000000000000a1.wal.broken",
            "0.tmp",
            "garbage.wal",
            "-1.wal",
            "00000000000000002-0000000000000001.wal",
            "x000000000000002-0000000000000001.wal",
        ] {
            assert!(parse_segment_name(bad).is_none(), "{bad}");
        }
    }
}
