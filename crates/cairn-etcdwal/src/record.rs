//! The record stream of a run of WAL segments: framing, the CRC chain, the zero tail and
//! torn writes, with etcd's rules.
//!
//! A segment is a sequence of frames, then (if preallocated) zeros to its end:
//!
//! ```text
//! | len word: u64 LE | walpb.Record (len bytes) | 0-7 padding bytes | len word | ... | 0 0 0 ...
//! ```
//!
//! The length word's low 56 bits are the record's length; when the record is padded to a
//! multiple of 8, its top byte is `0x80 | padding`. A zero word (or the end of the file)
//! ends the segment and reading goes on with the next one.
//!
//! Every record but a CRC record carries the CRC-32C of the data of all records before it
//! and its own, chained across segments: each segment opens with a CRC record holding the
//! sum the previous one ended with, and the chain goes on from that value.
//!
//! A record that is cut short, or whose CRC fails while some 512-byte sector of it is all
//! zeros (a write the crash tore), ends the log when it is in the last segment: etcd
//! truncates it away at start (`wal.Repair`), so the entries before it are what etcd
//! would have. Anywhere else the same damage is corruption, and reading stops with an
//! error. One deliberate difference: a last segment whose very first record is torn is
//! refused, where etcd's repair would truncate the file to nothing. etcd syncs a new
//! segment's first records before it renames the file into place, so no crash leaves
//! such a file; garbage under a segment's name is not taken for an empty segment.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use cairn_crc32c::Crc32c;
use prost::Message;

use crate::error::Error;
use crate::pb;

/// The record types of etcd's WAL.
pub(crate) const METADATA: i64 = 1;
pub(crate) const ENTRY: i64 = 2;
pub(crate) const STATE: i64 = 3;
pub(crate) const CRC: i64 = 4;
pub(crate) const SNAPSHOT: i64 = 5;

/// The sector size below which etcd assumes writes are atomic.
const SECTOR: u64 = 512;

/// What the decoder found next.
#[derive(Debug)]
pub(crate) enum Next {
    Record(pb::Record),
    /// The end of the last segment.
    End,
    /// A torn record in the last segment at `offset`: the log ends before it.
    Torn {
        path: PathBuf,
        offset: u64,
    },
}

struct Open {
    reader: BufReader<File>,
    len: u64,
    /// The offset just past the last record read in this file.
    offset: u64,
}

/// Reads the records of `paths`, in order, as one stream.
pub(crate) struct Decoder {
    paths: Vec<PathBuf>,
    current: usize,
    open: Option<Open>,
    crc: Crc32c,
    /// Where the last record returned starts in its segment.
    record_start: u64,
}

impl Decoder {
    pub(crate) fn new(paths: Vec<PathBuf>) -> Decoder {
        Decoder {
            paths,
            current: 0,
            open: None,
            crc: Crc32c::new(),
            record_start: 0,
        }
    }

    /// The segment being read.
    pub(crate) fn path(&self) -> &Path {
        self.paths
            .get(self.current)
            .map(PathBuf::as_path)
            .unwrap_or(Path::new(""))
    }

    fn is_last(&self) -> bool {
        self.current + 1 == self.paths.len()
    }

    /// The next valid record, checked against the CRC chain; CRC records reset the chain.
    pub(crate) fn next(&mut self) -> Result<Next, Error> {
        loop {
            if self.current >= self.paths.len() {
                return Ok(Next::End);
            }
            if self.open.is_none() {
                let path = &self.paths[self.current];
                let io = |source| Error::Io {
                    path: path.clone(),
                    source,
                };
                let file = File::open(path).map_err(io)?;
                let len = file.metadata().map_err(io)?.len();
                self.open = Some(Open {
                    reader: BufReader::with_capacity(1 << 16, file),
                    len,
                    offset: 0,
                });
            }
            match self.frame()? {
                Some(next) => return Ok(next),
                None => {
                    // The end of this segment: go on with the next one.
                    self.open = None;
                    self.current += 1;
                }
            }
        }
    }

    /// The next frame of the open segment; `None` at its end.
    fn frame(&mut self) -> Result<Option<Next>, Error> {
        let last = self.is_last();
        let path = self.paths[self.current].clone();
        let Some(open) = self.open.as_mut() else {
            return Ok(None);
        };
        let start = open.offset;
        // A torn record ends the log only in the last segment, and never as the segment's
        // first record: etcd writes and syncs a segment's first records before renaming
        // it into place, so a named segment without them is damage, not a crash.
        let torn_or_truncated = |path: PathBuf| {
            if last && start > 0 {
                Ok(Some(Next::Torn {
                    path,
                    offset: start,
                }))
            } else {
                Err(Error::TruncatedSegment {
                    path,
                    offset: start,
                })
            }
        };

        let mut word = [0u8; 8];
        let got = read_full(&mut open.reader, &mut word).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        if got == 0 {
            return Ok(None);
        }
        if got < word.len() {
            return torn_or_truncated(path);
        }
        let word = u64::from_le_bytes(word);
        if word == 0 {
            // The preallocated zeros: this segment has no more records.
            return Ok(None);
        }
        let rec_len = word & 0x00FF_FFFF_FFFF_FFFF;
        let pad = if word >> 63 == 1 {
            (word >> 56) & 0x7
        } else {
            0
        };
        // A record longer than what is left of the file is a torn length or garbage;
        // checked before allocating anything for it.
        let remaining = open.len.saturating_sub(start + 8);
        let Some(frame_len) = rec_len.checked_add(pad).filter(|n| *n <= remaining) else {
            return torn_or_truncated(path);
        };
        let Ok(frame_len) = usize::try_from(frame_len) else {
            return torn_or_truncated(path);
        };
        let mut data = vec![0u8; frame_len];
        let got = read_full(&mut open.reader, &mut data).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        if got < frame_len {
            return torn_or_truncated(path);
        }
        let body = &data[..frame_len - pad as usize];
        let torn = last && has_zero_sector(&data, start + 8);
        let record = match pb::Record::decode(body) {
            Ok(r) => r,
            Err(_) if torn => return torn_or_truncated(path),
            Err(source) => {
                return Err(Error::BadRecord {
                    path,
                    offset: start,
                    source,
                })
            }
        };
        if record.r#type == CRC {
            // The chain restarts from the sum the previous segment ended with; a decoder
            // that has read nothing yet (sum 0) takes it as it is.
            let sum = self.crc.sum();
            if sum != 0 && sum != record.crc {
                return Err(Error::CrcMismatch {
                    path,
                    offset: start,
                });
            }
            self.crc = Crc32c::resume(record.crc);
        } else {
            self.crc.update(&record.data);
            if self.crc.sum() != record.crc {
                if torn {
                    return torn_or_truncated(path);
                }
                return Err(Error::CrcMismatch {
                    path,
                    offset: start,
                });
            }
        }
        open.offset = start + 8 + frame_len as u64;
        self.record_start = start;
        Ok(Some(Next::Record(record)))
    }

    /// Where the last record returned starts in the segment being read.
    pub(crate) fn record_offset(&self) -> u64 {
        self.record_start
    }
}

/// Reads until `buf` is full or the file ends; returns how many bytes were read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Whether some piece of `data` (which starts at `file_offset` in its file) that lies in
/// one 512-byte sector is all zeros: the mark of a write torn by a crash.
fn has_zero_sector(data: &[u8], file_offset: u64) -> bool {
    let mut at = 0usize;
    let mut off = file_offset;
    while at < data.len() {
        let room = (SECTOR - off % SECTOR) as usize;
        let end = (at + room).min(data.len());
        if data[at..end].iter().all(|b| *b == 0) {
            return true;
        }
        off += (end - at) as u64;
        at = end;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_sector_piece_marks_a_torn_write() {
        // 8 bytes of frame header, then data crossing the first sector boundary at 512.
        let mut data = vec![1u8; 1000];
        assert!(!has_zero_sector(&data, 8));
        // The piece in the second sector (file offsets 512..1008) zeroed.
        for b in &mut data[504..] {
            *b = 0;
        }
        assert!(has_zero_sector(&data, 8));
        // Zeros that do not fill a sector's piece are data.
        let mut data = vec![1u8; 1000];
        data[10] = 0;
        data[600] = 0;
        assert!(!has_zero_sector(&data, 8));
    }
}
