//! The benchmark without cairnctl: `cargo run -p cairn-bench --example bench -- put ...`.

fn main() {
    std::process::exit(cairn_bench::cli_main(std::env::args()));
}
