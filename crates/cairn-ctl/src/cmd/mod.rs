//! The commands: etcdctl 3.5.1's command tree, with every command's name, usage line and
//! help texts ([`root`]), and the code that runs them.
//!
//! - [`command`]: the tree's type, cobra's dispatch and etcdctl's help template.
//! - One module per command group: [`kv`] (get, put, del), [`auth`] (auth, user, role), [`txn`], [`watch`], [`lease`],
//!   [`lock`], [`elect`], [`endpoint`], [`maintenance`] (compaction, alarm, defrag,
//!   snapshot save), [`snapshot_status`], [`snapshot_restore`], [`member`], [`mirror`] (make-mirror), [`move_leader`],
//!   [`check`] (perf, datascale), [`version`].
//! - [`process`]: what `lock`, `elect` and `watch` share: running a user's command and
//!   catching SIGINT/SIGTERM.
//!
//! This is the top of the crate: commands use [`crate::go`], [`crate::global`] and
//! [`crate::output`], and nothing but the crate root uses them.

mod auth;
mod check;
pub(crate) mod command;
mod elect;
mod endpoint;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod member;
mod mirror;
mod move_leader;
mod process;
mod snapshot_restore;
mod snapshot_status;
mod txn;
mod version;
mod watch;

use crate::global::{CtlError, Ctx, GLOBAL_FLAGS};
use command::Command;

fn help(_ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    crate::output::printer::out(command::help_for(&root(), args).as_bytes());
    Ok(())
}

/// The root command with every subcommand.
pub fn root() -> Command {
    let children = vec![
        Command::group("alarm", "alarm <subcommand>", "Alarm related commands", vec![
            Command::leaf("disarm", "disarm", "Disarms all alarms", &[], maintenance::alarm_disarm),
            Command::leaf("list", "list", "Lists all alarms", &[], maintenance::alarm_list),
        ]),
        Command::group("auth", "auth <enable or disable>", "Enable or disable authentication", vec![
            Command::leaf("disable", "disable", "Disables authentication", &[], auth::disable),
            Command::leaf("enable", "enable", "Enables authentication", &[], auth::enable),
            Command::leaf("status", "status", "Returns authentication status", &[], auth::status),
        ]),
        Command::group("check", "check <subcommand>", "commands for checking properties of the etcd cluster", vec![
            Command::leaf("datascale", "datascale [options]", "Check the memory usage of holding data for different workloads on a given server endpoint.", check::DATASCALE_FLAGS, check::datascale)
                .long(check::DATASCALE_LONG),
            Command::leaf("perf", "perf [options]", "Check the performance of the etcd cluster", check::PERF_FLAGS, check::perf),
        ]),
        Command::leaf("compaction", "compaction [options] <revision>", "Compacts the event history in etcd", maintenance::COMPACTION_FLAGS, maintenance::compaction),
        Command::leaf("defrag", "defrag", "Defragments the storage of the etcd members with given endpoints", maintenance::DEFRAG_FLAGS, maintenance::defrag),
        Command::leaf("del", "del [options] <key> [range_end]", "Removes the specified key or range of keys [key, range_end)", kv::DEL_FLAGS, kv::del),
        Command::leaf("elect", "elect <election-name> [proposal]", "Observes and participates in leader election", elect::FLAGS, elect::run),
        Command::group("endpoint", "endpoint <subcommand>", "Endpoint related commands", vec![
            Command::leaf("hashkv", "hashkv", "Prints the KV history hash for each endpoint in --endpoints", endpoint::HASHKV_FLAGS, endpoint::hashkv),
            Command::leaf("health", "health", "Checks the healthiness of endpoints specified in `--endpoints` flag", &[], endpoint::health),
            Command::leaf("status", "status", "Prints out the status of endpoints specified in `--endpoints` flag", &[], endpoint::status)
                .long(endpoint::STATUS_LONG),
        ])
        .persistent(endpoint::CLUSTER_FLAG),
        Command::leaf("get", "get [options] <key> [range_end]", "Gets the key or a range of keys", kv::GET_FLAGS, kv::get),
        Command::leaf("help", "help [command]", "Help about any command", &[], help),
        Command::group("lease", "lease <subcommand>", "Lease related commands", vec![
            Command::leaf("grant", "grant <ttl>", "Creates leases", &[], lease::grant),
            Command::leaf("keep-alive", "keep-alive [options] <leaseID>", "Keeps leases alive (renew)", lease::KEEPALIVE_FLAGS, lease::keep_alive),
            Command::leaf("list", "list", "List all active leases", &[], lease::list),
            Command::leaf("revoke", "revoke <leaseID>", "Revokes leases", &[], lease::revoke),
            Command::leaf("timetolive", "timetolive <leaseID> [options]", "Get lease information", lease::TIMETOLIVE_FLAGS, lease::timetolive),
        ]),
        Command::leaf("lock", "lock <lockname> [exec-command arg1 arg2 ...]", "Acquires a named lock", lock::FLAGS, lock::run),
        Command::leaf("make-mirror", "make-mirror [options] <destination>", "Makes a mirror at the destination etcd cluster", mirror::FLAGS, mirror::run),
        Command::group("member", "member <subcommand>", "Membership related commands", vec![
            Command::leaf("add", "add <memberName> [options]", "Adds a member into the cluster", member::ADD_FLAGS, member::add),
            Command::leaf("list", "list", "Lists all members in the cluster", &[], member::list)
                .long(member::LIST_LONG),
            Command::leaf("promote", "promote <memberID>", "Promotes a non-voting member in the cluster", &[], member::promote)
                .long(member::PROMOTE_LONG),
            Command::leaf("remove", "remove <memberID>", "Removes a member from the cluster", &[], member::remove),
            Command::leaf("update", "update <memberID> [options]", "Updates a member in the cluster", member::UPDATE_FLAGS, member::update),
        ]),
        Command::leaf("move-leader", "move-leader <transferee-member-id>", "Transfers leadership to another etcd cluster member.", &[], move_leader::run),
        Command::leaf("put", "put [options] <key> <value> (<value> can also be given from stdin)", "Puts the given key into the store", kv::PUT_FLAGS, kv::put)
            .long(kv::PUT_LONG),
        Command::group("role", "role <subcommand>", "Role related commands", vec![
            Command::leaf("add", "add <role name>", "Adds a new role", &[], auth::role_add),
            Command::leaf("delete", "delete <role name>", "Deletes a role", &[], auth::role_delete),
            Command::leaf("get", "get <role name>", "Gets detailed information of a role", &[], auth::role_get),
            Command::leaf("grant-permission", "grant-permission [options] <role name> <permission type> <key> [endkey]", "Grants a key to a role", auth::GRANT_FLAGS, auth::grant_permission),
            Command::leaf("list", "list", "Lists all roles", &[], auth::role_list),
            Command::leaf("revoke-permission", "revoke-permission <role name> <key> [endkey]", "Revokes a key from a role", auth::REVOKE_FLAGS, auth::revoke_permission),
        ]),
        Command::group("snapshot", "snapshot <subcommand>", "Manages etcd node snapshots", vec![
            Command::leaf("restore", "restore <filename> [options]", "Restores an etcd member snapshot to an etcd directory", snapshot_restore::FLAGS, snapshot_restore::snapshot_restore)
                .long(snapshot_restore::LONG),
            Command::leaf("save", "save <filename>", "Stores an etcd node backend snapshot to a given file", &[], maintenance::snapshot_save),
            Command::leaf("status", "status <filename>", "[deprecated] Gets backend snapshot status of a given file", &[], snapshot_status::snapshot_status)
                .long(snapshot_status::LONG),
        ]),
        Command::leaf("txn", "txn [options]", "Txn processes all the requests in one transaction", txn::FLAGS, txn::run),
        Command::group("user", "user <subcommand>", "User related commands", vec![
            Command::leaf("add", "add <user name or user:password> [options]", "Adds a new user", auth::USER_ADD_FLAGS, auth::user_add),
            Command::leaf("delete", "delete <user name>", "Deletes a user", &[], auth::user_delete),
            Command::leaf("get", "get <user name> [options]", "Gets detailed information of a user", auth::USER_GET_FLAGS, auth::user_get),
            Command::leaf("grant-role", "grant-role <user name> <role name>", "Grants a role to a user", &[], auth::user_grant_role),
            Command::leaf("list", "list", "Lists all users", &[], auth::user_list),
            Command::leaf("passwd", "passwd <user name> [options]", "Changes password of user", auth::USER_PASSWD_FLAGS, auth::user_passwd),
            Command::leaf("revoke-role", "revoke-role <user name> <role name>", "Revokes a role from a user", &[], auth::user_revoke_role),
        ]),
        Command::leaf("version", "version", "Prints the version of etcdctl", &[], version::run),
        Command::leaf("watch", "watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]", "Watches events stream on keys or prefixes", watch::FLAGS, watch::run),
    ];
    Command::group(
        "etcdctl",
        "etcdctl",
        "A simple command line client for etcd3.",
        children,
    )
    .persistent(GLOBAL_FLAGS)
}
