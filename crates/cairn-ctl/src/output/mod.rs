//! etcdctl's printers: the KV responses in every `-w` format ([`printer`], which also
//! holds the stdout, fields and protobuf helpers the other commands print with), Go's
//! `encoding/json` as etcd's responses encode ([`json`]), and the tables of `-w table`
//! ([`table`]), and the progress line of the `check` commands ([`progress`]).
//!
//! Printers use the Go layer ([`crate::go`]) and, for the output format and its errors,
//! [`crate::global`]; they never use the commands, which call them.

pub(crate) mod json;
pub(crate) mod printer;
pub(crate) mod progress;
pub(crate) mod table;
