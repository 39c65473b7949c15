//! Prints what an etcd data directory's WAL and snapshots hold, as cairn-etcdwal reads
//! them: `cargo run -p cairn-etcdwal --example etcdwal_dump -- /var/lib/etcd`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: etcdwal_dump DATA_DIR");
        return ExitCode::from(2);
    };
    let wal = match cairn_etcdwal::open(&dir) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!("member {:x} cluster {:x}", wal.member_id, wal.cluster_id);
    println!("hard state {:?}", wal.hard_state);
    if let Some(s) = &wal.snapshot {
        println!(
            "snapshot {} index {} term {} {:?} ({} bytes of data)",
            s.path.display(),
            s.index,
            s.term,
            s.conf_state,
            s.data.len()
        );
    }
    for e in &wal.entries {
        println!("{} {} {:?}", e.index, e.term, e.payload);
    }
    if let Some((path, offset)) = &wal.torn_tail {
        println!("torn tail in {} at {offset}", path.display());
    }
    for (path, why) in &wal.passed_over {
        println!("passed over {}: {why:?}", path.display());
    }
    for name in &wal.ignored {
        println!("ignored {name}");
    }
    ExitCode::SUCCESS
}
