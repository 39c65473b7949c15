//! A streaming writer of fresh, compact bbolt files.
//!
//! Pages are written in order from page 2 on: each bucket's tree bottom-up as its keys
//! arrive (a leaf when it is full, a branch page when its level is full), then the root
//! bucket's tree, then an empty freelist; the two meta pages go last, at the file's start.
//! Each tree level holds at most one page under construction.

use std::io::{Seek, SeekFrom, Write};

use crate::format::{
    Meta, PageHeader, BRANCH_PAGE, BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG, ELEMENT_SIZE,
    FREELIST_PAGE, LEAF_PAGE, MAX_KEY_SIZE, MAX_VALUE_SIZE, META_PAGE, PAGE_HEADER_SIZE, PAGE_SIZE,
};
use crate::Error;

/// Writes a bbolt file: open a bucket, put its keys in ascending order, finish it, repeat;
/// then [`Writer::finish`]. Top-level buckets may come in any order.
pub struct Writer<W: Write + Seek> {
    out: W,
    /// The next page id to hand out; every page below it has been written.
    next_pgid: u64,
    /// Top-level buckets written so far: name and root page.
    buckets: Vec<(Vec<u8>, u64)>,
}

impl<W: Write + Seek> Writer<W> {
    /// Starts a file on `out`, which should be empty.
    pub fn new(mut out: W) -> Result<Writer<W>, Error> {
        out.seek(SeekFrom::Start(2 * PAGE_SIZE as u64))?;
        Ok(Writer {
            out,
            next_pgid: 2,
            buckets: Vec::new(),
        })
    }

    /// Opens the top-level bucket `name`. Its keys must then be put in ascending order.
    pub fn bucket(&mut self, name: &[u8]) -> Result<BucketWriter<'_, W>, Error> {
        check_key(name)?;
        if self.buckets.iter().any(|(n, _)| n == name) {
            return Err(Error::BadInput("bucket already exists"));
        }
        Ok(BucketWriter {
            name: name.to_vec(),
            tree: Tree::default(),
            last: None,
            writer: self,
        })
    }

    /// Writes the root bucket, the freelist and the meta pages; returns the output.
    pub fn finish(mut self) -> Result<W, Error> {
        let mut buckets = std::mem::take(&mut self.buckets);
        buckets.sort();
        let mut tree = Tree::default();
        for (name, root) in buckets {
            let mut header = Vec::with_capacity(BUCKET_HEADER_SIZE);
            header.extend_from_slice(&root.to_le_bytes());
            header.extend_from_slice(&0u64.to_le_bytes());
            tree.put(&mut self, name, header, BUCKET_LEAF_FLAG)?;
        }
        let root = tree.finish(&mut self)?;
        let freelist = self.write_page(FREELIST_PAGE, 0, &[])?;
        let pgid = self.next_pgid;
        self.out.seek(SeekFrom::Start(0))?;
        for txid in 0..2u64 {
            let meta = Meta {
                page_size: PAGE_SIZE as u32,
                flags: 0,
                root,
                sequence: 0,
                freelist,
                pgid,
                txid,
            };
            let mut page = Vec::with_capacity(PAGE_SIZE);
            PageHeader {
                id: txid,
                flags: META_PAGE,
                count: 0,
                overflow: 0,
            }
            .encode(&mut page);
            page.extend_from_slice(&meta.encode());
            page.resize(PAGE_SIZE, 0);
            self.out.write_all(&page)?;
        }
        self.out.seek(SeekFrom::Start(pgid * PAGE_SIZE as u64))?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// Writes one page (with overflow pages if `body` needs them) at the next page id and
    /// returns that id.
    fn write_page(&mut self, flags: u16, count: u16, body: &[u8]) -> Result<u64, Error> {
        let id = self.next_pgid;
        let len = PAGE_HEADER_SIZE + body.len();
        let pages = len.div_ceil(PAGE_SIZE).max(1);
        let overflow = u32::try_from(pages - 1).map_err(|_| Error::BadInput("value too large"))?;
        let mut page = Vec::with_capacity(pages * PAGE_SIZE);
        PageHeader {
            id,
            flags,
            count,
            overflow,
        }
        .encode(&mut page);
        page.extend_from_slice(body);
        page.resize(pages * PAGE_SIZE, 0);
        self.out.write_all(&page)?;
        self.next_pgid += pages as u64;
        Ok(id)
    }
}

/// One top-level bucket being written. Call [`BucketWriter::finish`] when its last key is
/// in; a bucket dropped unfinished is left out of the file.
pub struct BucketWriter<'a, W: Write + Seek> {
    writer: &'a mut Writer<W>,
    name: Vec<u8>,
    tree: Tree,
    last: Option<Vec<u8>>,
}

impl<W: Write + Seek> BucketWriter<'_, W> {
    /// Adds a key/value pair; `key` must be above every key put before in this bucket.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        check_key(key)?;
        if value.len() > MAX_VALUE_SIZE {
            return Err(Error::BadInput("value too large"));
        }
        if let Some(last) = &self.last {
            if key <= last.as_slice() {
                return Err(Error::BadInput("keys must be put in ascending order"));
            }
        }
        self.last = Some(key.to_vec());
        self.tree.put(self.writer, key.to_vec(), value.to_vec(), 0)
    }

    /// Adds an element with raw leaf flags (for tests that need a nested bucket).
    #[cfg(test)]
    pub(crate) fn put_raw(&mut self, key: &[u8], value: &[u8], flags: u32) -> Result<(), Error> {
        self.last = Some(key.to_vec());
        self.tree
            .put(self.writer, key.to_vec(), value.to_vec(), flags)
    }

    /// Writes what remains of the bucket's tree and records the bucket.
    pub fn finish(mut self) -> Result<(), Error> {
        let root = self.tree.finish(self.writer)?;
        let name = std::mem::take(&mut self.name);
        self.writer.buckets.push((name, root));
        Ok(())
    }
}

fn check_key(key: &[u8]) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::BadInput("key required"));
    }
    if key.len() > MAX_KEY_SIZE {
        return Err(Error::BadInput("key too large"));
    }
    Ok(())
}

/// A B+tree built bottom-up from keys in ascending order.
///
/// `leaf` is the leaf page under construction; `branches[i]` the branch page under
/// construction at height `i + 1`, holding each child's first key and page id. A page is
/// written when the next element would not fit in it, and its first key goes up a level.
#[derive(Default)]
struct Tree {
    leaf: Level<(u32, Vec<u8>)>,
    branches: Vec<Level<u64>>,
}

/// The elements of one page under construction and the bytes they take.
struct Level<T> {
    items: Vec<(Vec<u8>, T)>,
    size: usize,
}

impl<T> Default for Level<T> {
    fn default() -> Self {
        Level {
            items: Vec::new(),
            size: PAGE_HEADER_SIZE,
        }
    }
}

impl Tree {
    fn put<W: Write + Seek>(
        &mut self,
        w: &mut Writer<W>,
        key: Vec<u8>,
        value: Vec<u8>,
        flags: u32,
    ) -> Result<(), Error> {
        let add = ELEMENT_SIZE + key.len() + value.len();
        if !self.leaf.items.is_empty() && self.leaf.size + add > PAGE_SIZE {
            self.flush_leaf(w)?;
        }
        self.leaf.size += add;
        self.leaf.items.push((key, (flags, value)));
        Ok(())
    }

    fn flush_leaf<W: Write + Seek>(&mut self, w: &mut Writer<W>) -> Result<(), Error> {
        let items = std::mem::take(&mut self.leaf);
        let first = items
            .items
            .first()
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        let count = items.items.len();
        let mut body = Vec::with_capacity(items.size - PAGE_HEADER_SIZE);
        let mut data_at = count * ELEMENT_SIZE;
        for (i, (k, (flags, v))) in items.items.iter().enumerate() {
            let pos = data_at - i * ELEMENT_SIZE;
            body.extend_from_slice(&flags.to_le_bytes());
            body.extend_from_slice(&(pos as u32).to_le_bytes());
            body.extend_from_slice(&(k.len() as u32).to_le_bytes());
            body.extend_from_slice(&(v.len() as u32).to_le_bytes());
            data_at += k.len() + v.len();
        }
        for (k, (_, v)) in &items.items {
            body.extend_from_slice(k);
            body.extend_from_slice(v);
        }
        let pgid = w.write_page(LEAF_PAGE, count as u16, &body)?;
        self.push_branch(w, 0, first, pgid)
    }

    /// Adds a child (its first key and page) to the branch page at `branches[level]`.
    fn push_branch<W: Write + Seek>(
        &mut self,
        w: &mut Writer<W>,
        level: usize,
        key: Vec<u8>,
        pgid: u64,
    ) -> Result<(), Error> {
        if self.branches.len() == level {
            self.branches.push(Level::default());
        }
        let add = ELEMENT_SIZE + key.len();
        // A branch page takes at least two children, spilling into overflow pages if their
        // keys are large: with one, a level would not be smaller than the one below it.
        if self.branches[level].items.len() >= 2 && self.branches[level].size + add > PAGE_SIZE {
            self.flush_branch(w, level)?;
        }
        let b = &mut self.branches[level];
        b.size += add;
        b.items.push((key, pgid));
        Ok(())
    }

    fn flush_branch<W: Write + Seek>(
        &mut self,
        w: &mut Writer<W>,
        level: usize,
    ) -> Result<(), Error> {
        let items = std::mem::take(&mut self.branches[level]);
        let first = items
            .items
            .first()
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        let count = items.items.len();
        let mut body = Vec::with_capacity(items.size - PAGE_HEADER_SIZE);
        let mut data_at = count * ELEMENT_SIZE;
        for (i, (k, pgid)) in items.items.iter().enumerate() {
            let pos = data_at - i * ELEMENT_SIZE;
            body.extend_from_slice(&(pos as u32).to_le_bytes());
            body.extend_from_slice(&(k.len() as u32).to_le_bytes());
            body.extend_from_slice(&pgid.to_le_bytes());
            data_at += k.len();
        }
        for (k, _) in &items.items {
            body.extend_from_slice(k);
        }
        let pgid = w.write_page(BRANCH_PAGE, count as u16, &body)?;
        self.push_branch(w, level + 1, first, pgid)
    }

    /// Writes every page still under construction and returns the root page's id.
    fn finish<W: Write + Seek>(mut self, w: &mut Writer<W>) -> Result<u64, Error> {
        self.flush_leaf(w)?;
        let mut level = 0;
        loop {
            let top = level + 1 == self.branches.len();
            if top && self.branches[level].items.len() == 1 {
                return Ok(self.branches[level].items[0].1);
            }
            self.flush_branch(w, level)?;
            level += 1;
        }
    }
}
