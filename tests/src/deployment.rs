//! The users and roles of the deployment cairn is for: a root user, and for one service a
//! read-write and a read-only role on its key prefix, each with a user of its name.

/// The root user's password.
pub const ROOT_PASSWORD: &str = "rootpw";
/// The service's read-write user (and role) and its password.
pub const RW_USER: (&str, &str) = ("orders-rw", "rwpw");
/// The service's read-only user (and role) and its password.
pub const RO_USER: (&str, &str) = ("orders-ro", "ropw");
/// The service's key prefix.
pub const PREFIX: &str = "/orders/";

/// The etcdctl commands that make the users and roles and then enable auth, in order.
pub fn provisioning() -> Vec<Vec<String>> {
    let (rw, rw_pw) = RW_USER;
    let (ro, ro_pw) = RO_USER;
    let lines: [&[&str]; 11] = [
        &["user", "add", &format!("root:{ROOT_PASSWORD}")],
        &["user", "grant-role", "root", "root"],
        &["role", "add", rw],
        &[
            "role",
            "grant-permission",
            rw,
            "readwrite",
            "--prefix",
            PREFIX,
        ],
        &["role", "add", ro],
        &["role", "grant-permission", ro, "read", "--prefix", PREFIX],
        &["user", "add", &format!("{rw}:{rw_pw}")],
        &["user", "grant-role", rw, rw],
        &["user", "add", &format!("{ro}:{ro_pw}")],
        &["user", "grant-role", ro, ro],
        &["auth", "enable"],
    ];
    lines
        .iter()
        .map(|l| l.iter().map(|a| a.to_string()).collect())
        .collect()
}
