//! `version`: the etcdctl release whose behaviour cairnctl reproduces, and its API version.

use crate::global::{CtlError, Ctx};

/// The etcdctl version cairnctl matches.
pub const VERSION: &str = "3.5.1";

/// The etcd API version.
pub const API_VERSION: &str = "3.5";

/// `etcdctl version`.
pub fn run(_ctx: &mut Ctx, _args: &[String]) -> Result<(), CtlError> {
    crate::output::printer::out(
        format!("etcdctl version: {VERSION}\nAPI version: {API_VERSION}\n").as_bytes(),
    );
    Ok(())
}
