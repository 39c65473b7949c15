//! Start-up: opens the data directory and the backend, finds or makes this member's and
//! the cluster's identity (a new cluster, an existing one to join, or a restart), and
//! starts Raft with the applier.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_mvcc::Store;
use cairn_proto::cairnpb::MembersResponse;
use cairn_raft::{RaftConfig, RaftHandle, Transport};
use tokio::sync::watch;

use super::data_dir::{self, BACKEND_FILE};
use super::read_barrier::ReadBarrier;
use super::{MemberInfo, Server, StartError};
use crate::apply::alarm::Alarms;
use crate::apply::{Applier, ApplierParts};
use crate::cluster::{Members, PeerDirectory};
use crate::config::Config;
use crate::lease::LeaseKeeper;
use crate::metrics::Metrics;
use crate::peer::PeerSet;
use crate::proposal::{Proposer, Waiters};
use crate::watch::WatchHub;
use cairn_migrate::layout::{CLUSTER_ID_KEY, MEMBER_ID_KEY};

/// How a member reaches its peers and keeps time. A real member uses the network
/// ([`Wiring::network`]) and the system's clocks; in-process tests an in-memory network,
/// Raft ticks they give themselves and a lease clock they move.
pub(crate) struct Wiring {
    /// Makes the transport and the peer directory once the cluster's and this member's
    /// ids are known: `(cluster_id, member_id)`.
    pub peering: Box<dyn FnOnce(u64, u64) -> Peering + Send>,
    /// What the lessor reads the time from.
    pub lease_clock: Arc<dyn cairn_lease::Clock>,
    /// Raft ticks only when told to (`RaftHandle::tick`), never on its own.
    pub manual_ticks: bool,
    /// For `--initial-cluster-state existing`: the cluster to join, instead of asking the
    /// peers in `--initial-cluster` for it.
    pub existing: Option<MembersResponse>,
}

/// A member's way to its peers.
pub(crate) struct Peering {
    pub transport: Box<dyn Transport>,
    pub directory: Arc<dyn PeerDirectory>,
    /// Told the Raft handle once Raft runs.
    pub on_start: Box<dyn FnOnce(&RaftHandle) + Send>,
}

impl Wiring {
    /// Peers over the network on their peer URLs, sending messages of at most
    /// `message_limit` bytes; the system's clocks.
    pub(crate) fn network(message_limit: usize) -> Wiring {
        let runtime = tokio::runtime::Handle::current();
        Wiring {
            peering: Box::new(move |cluster_id, member_id| {
                let raft_cell = crate::peer::RaftCell::default();
                let peer_set = PeerSet::new(
                    runtime,
                    cluster_id,
                    member_id,
                    raft_cell.clone(),
                    message_limit,
                );
                Peering {
                    transport: Box::new(peer_set.clone()),
                    directory: Arc::new(peer_set),
                    on_start: Box::new(move |raft| {
                        let _ = raft_cell.set(raft.clone());
                    }),
                }
            }),
            lease_clock: Arc::new(cairn_lease::SystemClock),
            manual_ticks: false,
            existing: None,
        }
    }
}

fn meta_u64(store: &Store, key: &str) -> Result<Option<u64>, StartError> {
    Ok(store
        .meta(key)?
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes))
}

/// Asks the members named in `--initial-cluster` for the cluster's id and members, and
/// finds this member among them by its peer URLs (it must have been added with
/// `member add` first), as etcd does for `--initial-cluster-state=existing`.
fn join_existing(
    cfg: &Config,
    known: Option<MembersResponse>,
) -> Result<(u64, u64, Members), StartError> {
    let others: Vec<String> = cfg
        .initial_cluster
        .iter()
        .filter(|(name, _)| *name != cfg.name)
        .flat_map(|(_, urls)| urls.clone())
        .collect();
    let mut fetched = known;
    if fetched.is_none() {
        let runtime = tokio::runtime::Handle::current();
        for _ in 0..10 {
            fetched = runtime.block_on(crate::peer::fetch_members(&others));
            if fetched.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    let resp = fetched.ok_or_else(|| {
        StartError::DataDir(format!(
            "cannot fetch cluster info from peer urls: could not retrieve cluster information from the given URLs {others:?}"
        ))
    })?;
    let mut mine = cfg.initial_advertise_peer_urls.clone();
    mine.sort();
    let me = resp.members.iter().find(|m| {
        let mut urls = m.peer_ur_ls.clone();
        urls.sort();
        urls == mine
    });
    let Some(me) = me else {
        return Err(StartError::DataDir(format!(
            "member with peer URLs {mine:?} is not in the cluster {:x}; add it with `member add` first",
            resp.cluster_id
        )));
    };
    tracing::info!(
        local_member_id = %format!("{:x}", me.id),
        cluster_id = %format!("{:x}", resp.cluster_id),
        "joining an existing cluster"
    );
    let id = me.id;
    let members = Members::decode(None);
    members.replace(resp.members.clone());
    Ok((id, resp.cluster_id, members))
}

impl Server {
    /// Opens the data directory, starts Raft and the applier, and waits until this member
    /// leads (a single member elects itself at once).
    pub fn start(cfg: Config) -> Result<Arc<Server>, StartError> {
        let wiring = Wiring::network(crate::peer::message_limit(cfg.max_request_bytes));
        Server::start_with(cfg, wiring)
    }

    /// Opens the data directory, starts Raft and the applier, with the peers and clocks
    /// of `wiring`.
    pub(crate) fn start_with(cfg: Config, wiring: Wiring) -> Result<Arc<Server>, StartError> {
        let started = Instant::now();
        let metrics = Arc::new(Metrics::new(cfg.metrics_extensive)?);
        data_dir::prepare(&cfg.data_dir, cfg.wal_dir.as_deref())?;
        let raft_dir = data_dir::raft_log_dir(&cfg.data_dir, cfg.wal_dir.as_deref())?;
        let store = Arc::new(Store::open(&cfg.data_dir.join(BACKEND_FILE))?);
        metrics.db_open_seconds.set(started.elapsed().as_secs_f64());
        let compaction = metrics.more.compaction.clone();
        store.set_compaction_observer(Arc::new(move |c| compaction.observe(c)));
        tracing::info!(
            path = %cfg.data_dir.join(BACKEND_FILE).display(),
            took = ?started.elapsed(),
            "opened backend db"
        );
        super::defrag::defragment_at_start(
            &store,
            cfg.bootstrap_defrag_threshold_megabytes,
            &metrics.more,
        )?;

        let member_id =
            crate::ids::member_id(&cfg.initial_advertise_peer_urls, &cfg.initial_cluster_token);
        let stored = (
            meta_u64(&store, MEMBER_ID_KEY)?,
            meta_u64(&store, CLUSTER_ID_KEY)?,
        );
        let (member_id, cluster_id, members) = match stored {
            (Some(m), Some(c)) => {
                let members = Members::decode(store.meta(crate::cluster::META_KEY)?.as_deref());
                if cfg.force_new_cluster {
                    // Disaster recovery: keep this member alone, with its data.
                    let mut me = members.get(m).unwrap_or_default();
                    me.id = m;
                    me.is_learner = false;
                    members.replace(vec![me]);
                    let mut batch = store.begin_apply()?;
                    batch.put_meta(crate::cluster::META_KEY, &members.encode())?;
                    batch.commit(true)?;
                    tracing::warn!(local_member_id = %format!("{m:x}"), "forcing a new one-member cluster from this member's data");
                }
                (m, c, members)
            }
            _ if !cfg.initial_cluster_state_new => {
                let (member_id, cluster_id, members) = join_existing(&cfg, wiring.existing)?;
                let mut batch = store.begin_apply()?;
                batch.put_meta(MEMBER_ID_KEY, &member_id.to_be_bytes())?;
                batch.put_meta(CLUSTER_ID_KEY, &cluster_id.to_be_bytes())?;
                batch.put_meta(crate::cluster::META_KEY, &members.encode())?;
                batch.commit(true)?;
                (member_id, cluster_id, members)
            }
            _ => {
                let initial: Vec<(u64, String, Vec<String>)> = cfg
                    .initial_cluster
                    .iter()
                    .map(|(name, urls)| {
                        let id = crate::ids::member_id(urls, &cfg.initial_cluster_token);
                        (id, name.clone(), urls.clone())
                    })
                    .collect();
                let ids: Vec<u64> = initial.iter().map(|(id, _, _)| *id).collect();
                let cluster_id = crate::ids::cluster_id(&ids);
                let members = Members::initial(&initial);
                let mut batch = store.begin_apply()?;
                batch.put_meta(MEMBER_ID_KEY, &member_id.to_be_bytes())?;
                batch.put_meta(CLUSTER_ID_KEY, &cluster_id.to_be_bytes())?;
                batch.put_meta(crate::cluster::META_KEY, &members.encode())?;
                // Every founding member starts from the same point, as if it had installed
                // a snapshot at index 1; a member that joins later is sent a real snapshot
                // (with the voters in it) instead of a log that lacks them.
                batch.set_applied_index(1);
                batch.commit(true)?;
                (member_id, cluster_id, members)
            }
        };
        let joining = store.applied_index() == 0;
        let members = Arc::new(members);
        let peers = members.peers();
        let peering = (wiring.peering)(cluster_id, member_id);
        for (id, urls) in &peers {
            peering.directory.set_peer(*id, urls);
        }
        let alarms = Arc::new(Alarms::decode(
            store.meta(crate::apply::alarm::META_KEY)?.as_deref(),
        ));
        let lessor = cairn_lease::Lessor::new(
            cairn_lease::LessorConfig {
                min_ttl: cairn_lease::min_ttl(cfg.heartbeat_interval, cfg.election_timeout),
                checkpoint_interval: cfg.lease_checkpoint_interval,
            },
            wiring.lease_clock,
        );
        let leases = Arc::new(crate::lease::Leases::new(
            lessor,
            member_id,
            cfg.election_timeout,
            metrics.lease.clone(),
        ));
        leases.reload(&store)?;
        let auth = Arc::new(auth_store(&cfg.auth)?);
        crate::apply::auth::load(&auth, &store)
            .map_err(|e| StartError::DataDir(format!("cannot read the auth store: {e}")))?;
        let waiters = Arc::new(Waiters::default());
        let (durable_tx, mut durable_rx) = watch::channel(store.applied_index());
        let watch = Arc::new(WatchHub::new(store.current_revision()));
        let applier = Applier::new(ApplierParts {
            watch: watch.clone(),
            store: store.clone(),
            waiters: waiters.clone(),
            alarms: alarms.clone(),
            metrics: metrics.clone(),
            members: members.clone(),
            peers: peering.directory.clone(),
            leases: leases.clone(),
            durable_tx,
            member_id,
            data_dir: cfg.data_dir.clone(),
            auth: auth.clone(),
        });
        let election_tick = (cfg.election_timeout.as_millis()
            / cfg.heartbeat_interval.as_millis().max(1))
        .max(2) as usize;
        let raft_cfg = RaftConfig {
            id: member_id,
            // A joining member learns the voters from the leader's snapshot.
            voters: if joining {
                vec![]
            } else {
                peers.iter().map(|(id, _)| *id).collect()
            },
            dir: raft_dir,
            tick_interval: cfg.heartbeat_interval,
            manual_ticks: wiring.manual_ticks,
            election_tick,
            heartbeat_tick: 1,
            applied: store.applied_index(),
            sync_observer: Some({
                let h = metrics.wal_fsync_duration.clone();
                cairn_raft::SyncObserver(Arc::new(move |d| h.observe(d.as_secs_f64())))
            }),
            unsafe_no_fsync: cfg.unsafe_no_fsync,
            // The backend is durable by itself, so etcd's "snapshot" is the durable applied
            // index; every --snapshot-count entries past it the log is compacted, keeping
            // --experimental-snapshot-catchup-entries behind it for slow members.
            log_retain_entries: cfg.snapshot_catchup_entries,
            log_compact_step: cfg.snapshot_count.max(1),
            force_new_cluster: cfg.force_new_cluster,
        };
        let raft = cairn_raft::start(raft_cfg, applier, peering.transport)?;
        (peering.on_start)(&raft);
        {
            // Let the Raft log be purged behind each durable backend commit.
            let raft = raft.clone();
            std::thread::Builder::new()
                .name("cairn-log-purge".into())
                .spawn(move || {
                    while durable_rx.blocking_recv_changed() {
                        raft.set_durable_applied(*durable_rx.borrow_and_update());
                    }
                })?;
        }
        metrics
            .quota_backend_bytes
            .set(cfg.quota_backend_bytes as i64);
        metrics
            .server_version
            .with_label_values(&[crate::config::ETCD_API_VERSION])
            .set(1);
        // etcd labels the cluster version by its major and minor numbers only ("3.5").
        let cluster_version: Vec<&str> = crate::config::ETCD_CLUSTER_VERSION
            .split('.')
            .take(2)
            .collect();
        metrics
            .cluster_version
            .with_label_values(&[&cluster_version.join(".")])
            .set(1);
        let member = MemberInfo {
            id: member_id,
            name: cfg.name.clone(),
            peer_urls: cfg.initial_advertise_peer_urls.clone(),
            client_urls: cfg.advertise_client_urls.clone(),
        };
        let proposer = Proposer::new(
            raft.clone(),
            waiters,
            metrics.clone(),
            cfg.max_request_bytes,
            cfg.election_timeout,
        );
        let leases = LeaseKeeper::new(
            leases,
            raft.clone(),
            proposer.clone(),
            members.clone(),
            cluster_id,
            member_id,
        );
        Ok(Arc::new(Server {
            cfg,
            store,
            reads: ReadBarrier::new(raft.clone(), metrics.more.slow_read_indexes.clone()),
            raft,
            member,
            cluster_id,
            proposer,
            alarms,
            members,
            peers: peering.directory,
            metrics,
            leases,
            watch,
            snapshot_receiving: Arc::new(tokio::sync::Semaphore::new(1)),
            auth,
            passwords: super::passwords::PasswordPool::per_core(),
        }))
    }
}

/// The auth store `--auth-token` asks for: simple tokens, or JWTs with the keys read now.
fn auth_store(cfg: &crate::config::AuthConfig) -> Result<cairn_auth::AuthStore, StartError> {
    use crate::config::TokenKind;
    match &cfg.token {
        TokenKind::Simple => Ok(cairn_auth::AuthStore::new(cfg.token_ttl)),
        TokenKind::Jwt {
            sign_method,
            pub_key,
            priv_key,
            ttl,
        } => {
            let read = |p: &Option<std::path::PathBuf>| {
                p.as_ref()
                    .map(|p| {
                        std::fs::read(p)
                            .map_err(|e| StartError::TokenProvider(format!("{}: {e}", p.display())))
                    })
                    .transpose()
            };
            let (public, private) = (read(pub_key)?, read(priv_key)?);
            let jwt = cairn_auth::JwtTokens::new(
                sign_method,
                public.as_deref(),
                private.as_deref(),
                *ttl,
            )
            .map_err(|e| StartError::TokenProvider(e.to_string()))?;
            Ok(cairn_auth::AuthStore::with_jwt(jwt))
        }
    }
}

/// Extension used by the purge thread: blocks until the value changes; false once the
/// sender is gone.
trait BlockingChanged {
    fn blocking_recv_changed(&mut self) -> bool;
}

impl BlockingChanged for watch::Receiver<u64> {
    fn blocking_recv_changed(&mut self) -> bool {
        futures::executor::block_on(self.changed()).is_ok()
    }
}
