//! Writes a bbolt file of `N` keys with `V`-byte values in one `key` bucket, then reads it
//! back, printing the size and the time each way. For measuring the writer's and the
//! reader's memory (run it under `/usr/bin/time -v`) and speed:
//!
//! ```text
//! cargo run --release -p cairn-bbolt --example bulk -- /tmp/bulk.db 2500000 400
//! ```

use std::fs::File;
use std::io::BufWriter;
use std::time::Instant;

use cairn_bbolt::{snapshot_status, Reader, Writer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, n, v] = args.as_slice() else {
        return Err("usage: bulk PATH KEYS VALUE_BYTES".into());
    };
    let n: u64 = n.parse()?;
    let value = vec![b'x'; v.parse()?];

    let start = Instant::now();
    let mut w = Writer::new(BufWriter::with_capacity(1 << 20, File::create(path)?))?;
    let mut b = w.bucket(b"key")?;
    for i in 0..n {
        let mut k = (i as i64 + 2).to_be_bytes().to_vec();
        k.push(b'_');
        k.extend_from_slice(&0i64.to_be_bytes());
        b.put(&k, &value)?;
    }
    b.finish()?;
    w.finish()?;
    let wrote = start.elapsed();

    let start = Instant::now();
    let r = Reader::open(path)?;
    let s = snapshot_status(&r)?;
    let read = start.elapsed();
    println!(
        "keys {} size {} bytes; write {:.2}s; read and hash {:.2}s; revision {} hash {:x}",
        s.total_key,
        s.total_size,
        wrote.as_secs_f64(),
        read.as_secs_f64(),
        s.revision,
        s.hash
    );
    Ok(())
}
