//! `snapshot restore FILE`: a snapshot in etcd's format (from etcd 3.4, 3.5 or cairn) made
//! into a new cairn data directory, with etcdutl 3.5's flags, checks, messages and log
//! lines (zap's console lines on stderr).
//!
//! The flags are checked as etcdutl checks them, in its order: the peer URLs, the initial
//! cluster, this member's place in it, the data and wal directories; then the file's hash.
//! The work itself is `cairn_migrate::Restore`, which writes nothing unless it succeeds.
//!
//! Differences, each documented in COMPAT.md: `--data-dir` defaults to `<name>.etcd` (as
//! etcdctl 3.5's restore and etcdutl's own code; etcdutl 3.5.1's flag parser demands it),
//! the Raft log goes to `raft/` in the data directory or to `--wal-dir`, and a refused
//! restore leaves no partial directory behind.

use cairn_migrate::{Restore, RestoreConfig};

use crate::global::{zap_string, CtlError, Ctx};
use crate::go::flags::{Kind, Spec};
use crate::go::{gofmt, url};

/// The command's flags: etcdutl 3.5's, with the revision bump of later 3.5 releases.
pub const FLAGS: &[Spec] = &[
    Spec::new("bump-revision", Kind::Int, "0", "How much to increase the latest revision after restore"),
    Spec::new("data-dir", Kind::Str, "", "Path to the data directory"),
    Spec::new("initial-advertise-peer-urls", Kind::Str, "http://localhost:2380", "List of this member's peer URLs to advertise to the rest of the cluster"),
    Spec::new("initial-cluster", Kind::Str, "default=http://localhost:2380", "Initial cluster configuration for restore bootstrap"),
    Spec::new("initial-cluster-token", Kind::Str, "etcd-cluster", "Initial cluster token for the etcd cluster during restore bootstrap"),
    Spec::new("mark-compacted", Kind::Bool, "false", "Mark the latest revision after restore as the point of scheduled compaction (required if --bump-revision > 0, disallowed otherwise)"),
    Spec::new("name", Kind::Str, "default", "Human-readable name for this member"),
    Spec::new("skip-hash-check", Kind::Bool, "false", "Ignore snapshot integrity hash value (required if copied from data directory)"),
    Spec::new("wal-dir", Kind::Str, "", "Path to the WAL directory (use --data-dir if none given)"),
];

/// etcdctl 3.5's description of the command.
pub const LONG: &str = "Moved to `etcdctl snapshot restore ...`\n";

/// One zap console line on stderr: time, level, caller, message, fields.
fn log(caller: &str, msg: &str, fields: &[(&str, String)]) {
    let now = gofmt::iso8601_now();
    let ts = format!("{}Z", now.get(..19).unwrap_or(&now));
    let mut line = format!("{ts}\tinfo\t{caller}\t{msg}");
    if !fields.is_empty() {
        let parts: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}: {v}", zap_string(k)))
            .collect();
        line.push_str(&format!("\t{{{}}}", parts.join(", ")));
    }
    eprintln!("{line}");
}

/// A list of strings as zap's console encoder shows it: `["a", "b"]`.
fn zap_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| zap_string(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// etcd's `types.NewURLs`: every URL checked, then sorted.
fn parse_urls(text: &[&str]) -> Result<Vec<String>, String> {
    let urls: Vec<String> = text.iter().map(|s| s.to_string()).collect();
    url::check(&urls)?;
    let mut urls = urls;
    urls.sort();
    Ok(urls)
}

/// etcd's `types.NewURLsMap`: `name=url` pairs, a name given several times gathering its
/// URLs; in name order.
fn parse_cluster(text: &str) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (name, u) = part.split_once('=').unwrap_or((part, ""));
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(u.to_string()),
            None => out.push((name.to_string(), vec![u.to_string()])),
        }
    }
    for (_, urls) in &mut out {
        let refs: Vec<&str> = urls.iter().map(String::as_str).collect();
        *urls = parse_urls(&refs)?;
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// The cluster as etcd's `URLsMap.String` prints it: sorted `name=url` pairs.
fn cluster_string(cluster: &[(String, Vec<String>)]) -> String {
    let mut pairs: Vec<String> = cluster
        .iter()
        .flat_map(|(n, urls)| urls.iter().map(move |u| format!("{n}={u}")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// etcd's `VerifyBootstrap` for a restore: this member in the cluster with the URLs it
/// advertises, and no URL given to two members.
fn verify_bootstrap(
    name: &str,
    advertised: &[String],
    cluster: &[(String, Vec<String>)],
) -> Result<(), String> {
    let Some((_, mine)) = cluster.iter().find(|(n, _)| n == name) else {
        return Err(format!(
            "couldn't find local name {} in the initial cluster configuration",
            gofmt::quote(name.as_bytes())
        ));
    };
    if mine != advertised {
        let missing: Vec<String> = mine
            .iter()
            .filter(|u| !advertised.contains(u))
            .map(|u| format!("{name}={u}"))
            .collect();
        if !missing.is_empty() {
            let why = if mine.len() != advertised.len() {
                let list = |v: &[String]| {
                    v.iter()
                        .map(|u| gofmt::quote(u.as_bytes()))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                format!("len([{}]) != len([{}])", list(advertised), list(mine))
            } else {
                let (a, b) = advertised
                    .iter()
                    .zip(mine)
                    .find(|(a, b)| a != b)
                    .map(|(a, b)| (a.clone(), b.clone()))
                    .unwrap_or_default();
                let (qa, qb) = (gofmt::quote(a.as_bytes()), gofmt::quote(b.as_bytes()));
                format!("{qa}(resolved from {qa}) != {qb}(resolved from {qb})")
            };
            return Err(format!(
                "--initial-cluster has {} but missing from --initial-advertise-peer-urls={} ({why})",
                missing.join(","),
                advertised.join(",")
            ));
        }
        let extra: Vec<String> = advertised
            .iter()
            .filter(|u| !mine.contains(u))
            .cloned()
            .collect();
        return Err(format!(
            "--initial-advertise-peer-urls has {} but missing from --initial-cluster={}",
            extra.join(","),
            cluster_string(&[(name.to_string(), advertised.to_vec())])
        ));
    }
    let mut all: Vec<&String> = cluster.iter().flat_map(|(_, urls)| urls).collect();
    let total = all.len();
    all.sort();
    all.dedup();
    if all.len() != total {
        return Err(format!(
            "initial cluster {} has duplicate url",
            cluster_string(cluster)
        ));
    }
    Ok(())
}

/// `snapshot restore`.
pub fn snapshot_restore(ctx: &mut Ctx, args: &[String]) -> Result<(), CtlError> {
    if args.len() != 1 {
        return Err(CtlError::bad_args(
            "snapshot restore requires exactly one argument",
        ));
    }
    let flags = &ctx.flags;
    let bump = flags.int("bump-revision");
    if bump < 0 {
        return Err(CtlError::bad_args(format!(
            "invalid argument {} for \"--bump-revision\" flag: strconv.ParseUint: parsing {}: invalid syntax",
            gofmt::quote(bump.to_string().as_bytes()),
            gofmt::quote(bump.to_string().as_bytes())
        )));
    }
    let mark = flags.bool("mark-compacted");
    if (bump == 0 && mark) || (bump > 0 && !mark) {
        return Err(CtlError::bad_args(
            "--mark-compacted required if --revision-bump > 0",
        ));
    }
    let name = flags.str("name").to_string();
    let data_dir = match flags.str("data-dir") {
        "" => format!("{name}.etcd"),
        d => d.to_string(),
    };
    let wal_dir = Some(flags.str("wal-dir"))
        .filter(|w| !w.is_empty())
        .map(std::path::PathBuf::from);
    let peer_text: Vec<&str> = flags
        .str("initial-advertise-peer-urls")
        .split(',')
        .collect();
    let advertised = parse_urls(&peer_text).map_err(CtlError::error)?;
    let cluster = parse_cluster(flags.str("initial-cluster")).map_err(CtlError::error)?;
    verify_bootstrap(&name, &advertised, &cluster).map_err(CtlError::error)?;
    let path = args[0].clone();
    let plan = Restore::plan(RestoreConfig {
        snapshot: path.clone().into(),
        name,
        data_dir: data_dir.clone().into(),
        wal_dir,
        initial_cluster: cluster,
        initial_cluster_token: flags.str("initial-cluster-token").to_string(),
        skip_hash_check: flags.bool("skip-hash-check"),
        revision_bump: (bump > 0).then_some(bump as u64),
    })
    .map_err(|e| CtlError::error(e.to_string()))?;
    let where_fields = |raft: &std::path::Path| {
        vec![
            ("path", zap_string(&path)),
            ("wal-dir", zap_string(&raft.display().to_string())),
            ("data-dir", zap_string(&data_dir)),
        ]
    };
    let raft_dir = plan.raft_dir();
    log(
        "snapshot/v3_snapshot.go:251",
        "restoring snapshot",
        &where_fields(&raft_dir),
    );
    let membership = plan.membership().clone();
    let report = plan.run().map_err(|e| CtlError::error(e.to_string()))?;
    log(
        "membership/store.go:141",
        "Trimming membership information from the backend...",
        &[],
    );
    for m in &membership.members {
        log(
            "membership/cluster.go:421",
            "added member",
            &[
                (
                    "cluster-id",
                    zap_string(&format!("{:x}", membership.cluster_id)),
                ),
                ("local-member-id", zap_string("0")),
                ("added-peer-id", zap_string(&format!("{:x}", m.id))),
                ("added-peer-peer-urls", zap_list(&m.peer_ur_ls)),
            ],
        );
    }
    if let Some(bump) = (bump > 0).then_some(bump) {
        log(
            "snapshot/v3_snapshot.go:384",
            "bumping latest revision",
            &[
                ("bump-amount", bump.to_string()),
                (
                    "new-latest-revision",
                    report.import.backend.current_revision.to_string(),
                ),
            ],
        );
    }
    log(
        "snapshot/v3_snapshot.go:272",
        "restored snapshot",
        &where_fields(&raft_dir),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(text: &str) -> Vec<(String, Vec<String>)> {
        parse_cluster(text).unwrap_or_default()
    }

    /// The texts etcdutl 3.5.1 prints for the same flags.
    #[test]
    fn bootstrap_checks_say_what_etcdutl_says() {
        let local = vec!["http://localhost:2380".to_string()];
        let cases: &[(&str, &str, &[String], Option<&str>)] = &[
            ("default", "default=http://localhost:2380", &local, None),
            ("foo", "default=http://localhost:2380", &local, Some("couldn't find local name \"foo\" in the initial cluster configuration")),
            ("default", "default=http://127.0.0.1:1", &local, Some("--initial-cluster has default=http://127.0.0.1:1 but missing from --initial-advertise-peer-urls=http://localhost:2380 (\"http://localhost:2380\"(resolved from \"http://localhost:2380\") != \"http://127.0.0.1:1\"(resolved from \"http://127.0.0.1:1\"))")),
            ("default", "default=http://localhost:2380,default=http://localhost:2381", &local, Some("--initial-cluster has default=http://localhost:2381 but missing from --initial-advertise-peer-urls=http://localhost:2380 (len([\"http://localhost:2380\"]) != len([\"http://localhost:2380\" \"http://localhost:2381\"]))")),
            ("a", "a=http://localhost:2380,b=http://localhost:2380", &local, Some("initial cluster a=http://localhost:2380,b=http://localhost:2380 has duplicate url")),
        ];
        for (name, text, advertised, want) in cases {
            let got = verify_bootstrap(name, advertised, &cluster(text)).err();
            assert_eq!(got.as_deref(), *want, "{name} {text}");
        }
        let two = vec![
            "http://127.0.0.1:2380".to_string(),
            "http://localhost:2380".to_string(),
        ];
        assert_eq!(
            verify_bootstrap("default", &two, &cluster("default=http://localhost:2380")).err().as_deref(),
            Some("--initial-advertise-peer-urls has http://127.0.0.1:2380 but missing from --initial-cluster=default=http://127.0.0.1:2380,default=http://localhost:2380")
        );
        assert_eq!(
            parse_cluster("bad").err().as_deref(),
            Some("URL scheme must be http, https, unix, or unixs: ")
        );
    }
}
