//! A page-at-a-time reader of bbolt files.
//!
//! Nothing is mapped: each page is read from the file when the walk reaches it, so memory
//! holds one page (with its overflow) per tree level.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::format::{
    u32_at, u64_at, Meta, PageHeader, BRANCH_PAGE, BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG,
    ELEMENT_SIZE, LEAF_PAGE, META_SIZE, PAGE_HEADER_SIZE, PAGE_SIZE,
};
use crate::Error;

/// An open bbolt file whose meta page has been checked.
pub struct Reader {
    file: File,
    meta: Meta,
    page_size: usize,
}

/// A top-level bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    /// The bucket's name.
    pub name: Vec<u8>,
    /// The bucket's root page, or 0 for a bucket stored inline in its parent.
    pub root: u64,
    /// The bucket's sequence number.
    pub sequence: u64,
    /// An inline bucket's leaf page.
    inline: Option<Vec<u8>>,
}

impl BucketInfo {
    /// The nested bucket an entry flagged `is_bucket` holds, to pass to [`Reader::entries`].
    pub fn nested(entry: &Entry) -> Result<BucketInfo, Error> {
        if !entry.is_bucket {
            return Err(Error::BucketNotFound);
        }
        bucket_info(entry.key.clone(), &entry.value)
    }
}

/// One element of a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    /// The value, or for a nested bucket its raw bucket header (and inline page).
    pub value: Vec<u8>,
    /// Whether this element is a nested bucket.
    pub is_bucket: bool,
}

impl Reader {
    /// Opens the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Reader, Error> {
        Reader::from_file(File::open(path)?)
    }

    /// Checks the meta pages of `file` and picks the newest valid one, as bbolt does.
    ///
    /// A file with bytes after its last page (etcd's snapshot trailer) is accepted; one
    /// shorter than its meta page says is refused as truncated.
    pub fn from_file(file: File) -> Result<Reader, Error> {
        let len = file.metadata()?.len();
        let first = read_meta(&file, 0, len);
        let page_size = match &first {
            Ok(m) => m.page_size as usize,
            Err(_) => PAGE_SIZE,
        };
        let second = read_meta(&file, page_size as u64, len);
        let meta = match (first, second) {
            (Ok(a), Ok(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Ok(a), Err(_)) => a,
            (Err(_), Ok(b)) => b,
            (Err(e), Err(_)) => return Err(e),
        };
        let page_size = meta.page_size as usize;
        if !(512..=1 << 20).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(Error::Corrupt(format!("page size {page_size}")));
        }
        let need = meta.pgid.saturating_mul(page_size as u64);
        if meta.pgid < 2 {
            return Err(Error::Corrupt(format!("high-water page id {}", meta.pgid)));
        }
        if len < need {
            return Err(Error::Truncated { len, need });
        }
        if meta.root < 2 || meta.root >= meta.pgid {
            return Err(Error::Corrupt(format!("root page {}", meta.root)));
        }
        Ok(Reader {
            file,
            meta,
            page_size,
        })
    }

    /// The size of the database: its high-water page id times the page size (what bbolt's
    /// `Tx.Size` reports, and what etcd's snapshot status calls the total size).
    pub fn size(&self) -> u64 {
        self.meta.pgid * self.page_size as u64
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        self.page_size
    }

    /// The transaction id of the meta page in use.
    pub fn txid(&self) -> u64 {
        self.meta.txid
    }

    /// The top-level buckets, in name order.
    pub fn buckets(&self) -> Result<Vec<BucketInfo>, Error> {
        let mut out = Vec::new();
        for entry in self.walk(Source::Page(self.meta.root)) {
            let entry = entry?;
            if !entry.is_bucket {
                return Err(Error::Corrupt(
                    "a plain key/value pair in the root bucket".to_string(),
                ));
            }
            out.push(bucket_info(entry.key, &entry.value)?);
        }
        Ok(out)
    }

    /// The top-level bucket named `name`.
    pub fn bucket(&self, name: &[u8]) -> Result<BucketInfo, Error> {
        self.buckets()?
            .into_iter()
            .find(|b| b.name == name)
            .ok_or(Error::BucketNotFound)
    }

    /// The elements of `bucket` in key order.
    pub fn entries(&self, bucket: &BucketInfo) -> Entries<'_> {
        match &bucket.inline {
            Some(page) => self.walk(Source::Inline(page.clone())),
            None => self.walk(Source::Page(bucket.root)),
        }
    }

    fn walk(&self, source: Source) -> Entries<'_> {
        Entries {
            reader: self,
            start: Some(source),
            stack: Vec::new(),
            last: None,
            pages_read: 0,
        }
    }

    /// Reads page `pgid` with its overflow pages.
    fn page(&self, pgid: u64) -> Result<Vec<u8>, Error> {
        if pgid < 2 || pgid >= self.meta.pgid {
            return Err(Error::Corrupt(format!("page {pgid} out of range")));
        }
        let at = pgid * self.page_size as u64;
        let mut buf = vec![0u8; self.page_size];
        self.file.read_exact_at(&mut buf, at)?;
        let header = PageHeader::decode(&buf);
        if header.id != pgid {
            return Err(Error::Corrupt(format!(
                "page {pgid} says it is page {}",
                header.id
            )));
        }
        if header.overflow > 0 {
            let end = pgid.saturating_add(u64::from(header.overflow));
            if end >= self.meta.pgid {
                return Err(Error::Corrupt(format!("page {pgid} overflows the file")));
            }
            let total = (u64::from(header.overflow) + 1) as usize * self.page_size;
            buf.resize(total, 0);
            self.file
                .read_exact_at(&mut buf[self.page_size..], at + self.page_size as u64)?;
        }
        Ok(buf)
    }
}

fn read_meta(file: &File, at: u64, len: u64) -> Result<Meta, Error> {
    // Like bbolt, a file too short to hold a whole first page is not a database.
    let need = (PAGE_HEADER_SIZE + META_SIZE) as u64;
    if len < at + need || len < PAGE_SIZE as u64 {
        return Err(Error::Invalid);
    }
    let mut buf = [0u8; PAGE_HEADER_SIZE + META_SIZE];
    file.read_exact_at(&mut buf, at)?;
    Meta::decode(&buf[PAGE_HEADER_SIZE..])
}

fn bucket_info(name: Vec<u8>, value: &[u8]) -> Result<BucketInfo, Error> {
    if value.len() < BUCKET_HEADER_SIZE {
        return Err(Error::Corrupt("short bucket header".to_string()));
    }
    let root = u64_at(value, 0);
    let sequence = u64_at(value, 8);
    let inline = if root == 0 {
        Some(value[BUCKET_HEADER_SIZE..].to_vec())
    } else {
        None
    };
    Ok(BucketInfo {
        name,
        root,
        sequence,
        inline,
    })
}

enum Source {
    Page(u64),
    Inline(Vec<u8>),
}

/// A page on the walk's path and the next element to visit in it.
struct Frame {
    page: Vec<u8>,
    flags: u16,
    count: usize,
    next: usize,
}

/// The elements of one bucket in key order, read page by page.
pub struct Entries<'a> {
    reader: &'a Reader,
    start: Option<Source>,
    stack: Vec<Frame>,
    last: Option<Vec<u8>>,
    /// Pages read so far: a walk that reads more pages than the file has is looping.
    pages_read: u64,
}

impl Entries<'_> {
    fn push(&mut self, page: Vec<u8>) -> Result<(), Error> {
        if page.len() < PAGE_HEADER_SIZE {
            return Err(Error::Corrupt("short page".to_string()));
        }
        let header = PageHeader::decode(&page);
        if header.flags != LEAF_PAGE && header.flags != BRANCH_PAGE {
            return Err(Error::Corrupt(format!(
                "page {} has flags {:#x} where a tree page belongs",
                header.id, header.flags
            )));
        }
        let count = usize::from(header.count);
        if PAGE_HEADER_SIZE + count * ELEMENT_SIZE > page.len() {
            return Err(Error::Corrupt(format!("page {} element count", header.id)));
        }
        self.pages_read += 1;
        if self.pages_read > self.reader.meta.pgid || self.stack.len() > 64 {
            return Err(Error::Corrupt("the tree loops".to_string()));
        }
        self.stack.push(Frame {
            page,
            flags: header.flags,
            count,
            next: 0,
        });
        Ok(())
    }

    fn step(&mut self) -> Result<Option<Entry>, Error> {
        if let Some(source) = self.start.take() {
            let page = match source {
                Source::Page(pgid) => self.reader.page(pgid)?,
                Source::Inline(page) => page,
            };
            self.push(page)?;
        }
        loop {
            let Some(frame) = self.stack.last_mut() else {
                return Ok(None);
            };
            if frame.next == frame.count {
                self.stack.pop();
                continue;
            }
            let at = PAGE_HEADER_SIZE + frame.next * ELEMENT_SIZE;
            frame.next += 1;
            let p = &frame.page;
            if frame.flags == BRANCH_PAGE {
                let pos = u32_at(p, at) as usize;
                let ksize = u32_at(p, at + 4) as usize;
                let child = u64_at(p, at + 8);
                slice(p, at + pos, ksize)?;
                let page = self.reader.page(child)?;
                self.push(page)?;
                continue;
            }
            let flags = u32_at(p, at);
            let pos = u32_at(p, at + 4) as usize;
            let ksize = u32_at(p, at + 8) as usize;
            let vsize = u32_at(p, at + 12) as usize;
            let key = slice(p, at + pos, ksize)?.to_vec();
            let value = slice(p, at + pos + ksize, vsize)?.to_vec();
            if let Some(last) = &self.last {
                if key <= *last {
                    return Err(Error::Corrupt("keys out of order".to_string()));
                }
            }
            self.last = Some(key.clone());
            return Ok(Some(Entry {
                key,
                value,
                is_bucket: flags & BUCKET_LEAF_FLAG != 0,
            }));
        }
    }
}

fn slice(p: &[u8], at: usize, len: usize) -> Result<&[u8], Error> {
    at.checked_add(len)
        .and_then(|end| p.get(at..end))
        .ok_or_else(|| Error::Corrupt("an element points outside its page".to_string()))
}

impl Iterator for Entries<'_> {
    type Item = Result<Entry, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.stack.clear();
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::LEAF_PAGE;
    use crate::writer::Writer;

    /// A bucket holding one plain pair and one nested bucket, inline as bbolt stores a
    /// small one: its header (root 0) followed by its leaf page with `a` -> `b`.
    #[test]
    fn a_nested_inline_bucket_is_reported_and_can_be_walked() {
        let mut inline = Vec::new();
        inline.extend_from_slice(&0u64.to_le_bytes());
        inline.extend_from_slice(&7u64.to_le_bytes());
        PageHeader {
            id: 0,
            flags: LEAF_PAGE,
            count: 1,
            overflow: 0,
        }
        .encode(&mut inline);
        for field in [0u32, 16, 1, 1] {
            inline.extend_from_slice(&field.to_le_bytes());
        }
        inline.extend_from_slice(b"ab");

        let f = tempfile::NamedTempFile::new().unwrap();
        let mut w = Writer::new(f.reopen().unwrap()).unwrap();
        let mut b = w.bucket(b"outer").unwrap();
        b.put(b"1", b"plain").unwrap();
        b.put_raw(b"2", &inline, BUCKET_LEAF_FLAG).unwrap();
        b.finish().unwrap();
        w.finish().unwrap();

        let r = Reader::open(f.path()).unwrap();
        let outer = r.bucket(b"outer").unwrap();
        let entries: Vec<Entry> = r.entries(&outer).map(|e| e.unwrap()).collect();
        assert_eq!(entries.len(), 2);
        assert!(!entries[0].is_bucket);
        assert!(entries[1].is_bucket);
        assert!(matches!(
            BucketInfo::nested(&entries[0]),
            Err(Error::BucketNotFound)
        ));
        let nested = BucketInfo::nested(&entries[1]).unwrap();
        assert_eq!((nested.root, nested.sequence), (0, 7));
        let inner: Vec<Entry> = r.entries(&nested).map(|e| e.unwrap()).collect();
        assert_eq!(
            inner,
            vec![Entry {
                key: b"a".to_vec(),
                value: b"b".to_vec(),
                is_bucket: false
            }]
        );
    }
}
