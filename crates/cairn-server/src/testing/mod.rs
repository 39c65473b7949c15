//! An in-process cluster for tests: N members, each a real [`Server`] (its own data
//! directory, backend, Raft log, applier, lessor and watch hub), talking over cairn-raft's
//! in-memory network instead of sockets.
//!
//! Time is the test's. Raft ticks only when the test says so ([`TestCluster::advance`]:
//! each tick's traffic settles before the next), so elections and heartbeats follow ticks,
//! not the machine's speed; messages are delivered at once, so proposals and reads need no
//! ticks while a leader is known. Leases read a [`ManualClock`] the test moves
//! ([`TestCluster::advance_lease_clock`]). Peer liveness, which strict reconfiguration asks
//! about, follows the network's rules: a member cut off by `isolate` or `partition` does
//! not answer.
//!
//! Example: three members, a write through a follower, read back linearizably elsewhere.
//!
//! ```text
//! let c = TestCluster::start(3).await;
//! let l = c.leader();
//! c.put(c.follower_of(l), "k", "v").await;
//! c.server(l).linearizable_read().await?;
//! ```

mod scenarios;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::cairnpb::internal_request::Request;
use cairn_proto::cairnpb::MembersResponse;
use cairn_proto::etcdserverpb::{PutRequest, RangeRequest};
use cairn_raft::testing::MemNetwork;
use parking_lot::Mutex;

use crate::cluster::PeerDirectory;
use crate::config::{Config, Flags};
use crate::proposal::ApplyResult;
use crate::server::{Peering, Server, Wiring};

/// The most ticks any wait takes before its test fails (an election takes 10 to 20).
const MAX_TICKS: u64 = 2_000;
/// The longest any wait on real time takes before its test fails.
const MAX_WAIT: Duration = Duration::from_secs(20);
/// The cluster token every member is started with.
const TOKEN: &str = "in-process";

/// A clock that moves only when told to.
pub(crate) struct ManualClock(Mutex<Instant>);

impl cairn_lease::Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.0.lock()
    }
}

/// Peers reached over the in-memory network: every registered member is reached by id, and
/// one counts as answering (since long enough for strict reconfiguration) while the
/// network's rules let messages reach it.
struct MemPeers {
    net: MemNetwork,
    me: u64,
    /// When peers started answering, as far as the policy is concerned.
    since: Instant,
}

impl PeerDirectory for MemPeers {
    fn set_peer(&self, _: u64, _: &[String]) {}

    fn remove_peer(&self, _: u64) {}

    fn active_since(&self, id: u64) -> Option<Instant> {
        self.net.reachable(self.me, id).then_some(self.since)
    }
}

/// One member of a [`TestCluster`].
pub(crate) struct TestMember {
    pub name: String,
    pub id: u64,
    pub peer_url: String,
    server: Option<Arc<Server>>,
    /// Kept so the data directory outlives restarts; removed with the cluster.
    dir: tempfile::TempDir,
    /// The leader's lease loop of this member.
    lease_loop: Option<tokio::task::JoinHandle<()>>,
}

/// Members started together in this process over one in-memory network.
pub(crate) struct TestCluster {
    pub net: MemNetwork,
    pub clock: Arc<ManualClock>,
    pub members: Vec<TestMember>,
    /// Flags every member gets besides its name, URLs and data directory.
    extra: Vec<String>,
}

fn peer_url(i: usize) -> String {
    format!("http://127.0.0.1:{}", 12_380 + i)
}

impl TestCluster {
    /// Starts `n` founding members and waits until they have a leader and have all
    /// published their names.
    pub(crate) async fn start(n: usize) -> TestCluster {
        TestCluster::start_with(n, &[]).await
    }

    /// As [`Self::start`], each member also given `extra` flags.
    pub(crate) async fn start_with(n: usize, extra: &[&str]) -> TestCluster {
        let mut c = TestCluster {
            net: MemNetwork::new(),
            clock: Arc::new(ManualClock(Mutex::new(Instant::now()))),
            members: Vec::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        let initial: Vec<String> = (0..n).map(|i| format!("m{i}={}", peer_url(i))).collect();
        for i in 0..n {
            let member = c.boot(i, &initial.join(","), None);
            c.members.push(member);
        }
        c.wait_for_leader().await;
        for i in 0..n {
            c.come_up(i).await;
        }
        c
    }

    /// Starts member `i` (`m{i}`) with `initial_cluster`; joins `existing` when given.
    fn boot(
        &self,
        i: usize,
        initial_cluster: &str,
        existing: Option<MembersResponse>,
    ) -> TestMember {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let name = format!("m{i}");
        let url = peer_url(i);
        let mut member = TestMember {
            name,
            id: 0,
            peer_url: url,
            server: None,
            dir,
            lease_loop: None,
        };
        member.server = Some(self.open(&member, initial_cluster, existing));
        member.id = member.server().member().id;
        member
    }

    /// Opens `member`'s data directory and starts its server.
    fn open(
        &self,
        member: &TestMember,
        initial_cluster: &str,
        existing: Option<MembersResponse>,
    ) -> Arc<Server> {
        let mut args: Vec<String> = [
            "--name",
            &member.name,
            "--data-dir",
            &member.dir.path().join("data").display().to_string(),
            "--initial-advertise-peer-urls",
            &member.peer_url,
            "--listen-peer-urls",
            &member.peer_url,
            "--initial-cluster",
            initial_cluster,
            "--initial-cluster-token",
            TOKEN,
            "--initial-cluster-state",
            if existing.is_some() {
                "existing"
            } else {
                "new"
            },
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(self.extra.iter().cloned());
        let cfg: Config =
            Flags::test_config(&args).unwrap_or_else(|e| panic!("config {args:?}: {e}"));
        let net = self.net.clone();
        let since = Instant::now()
            .checked_sub(Duration::from_secs(60))
            .unwrap_or_else(Instant::now);
        let wiring = Wiring {
            peering: Box::new(move |_, id| Peering {
                transport: Box::new(net.transport(id)),
                directory: Arc::new(MemPeers {
                    net: net.clone(),
                    me: id,
                    since,
                }),
                on_start: Box::new(move |raft| net.register(id, raft.clone())),
            }),
            lease_clock: self.clock.clone(),
            manual_ticks: true,
            existing,
        };
        tokio::task::block_in_place(|| Server::start_with(cfg, wiring))
            .unwrap_or_else(|e| panic!("start {}: {e}", member.name))
    }

    /// What a real member does once it has a leader: publish its name and client URLs,
    /// promote its lessor if it leads, and run the leader's lease loop.
    async fn come_up(&mut self, i: usize) {
        let server = self.members[i].server().clone();
        let published = tokio::time::timeout(MAX_WAIT, server.publish()).await;
        assert!(
            matches!(published, Ok(Ok(()))),
            "{} did not publish: {published:?}",
            self.members[i].name
        );
        server.leases().promote_if_due();
        let keeper = server.leases().clone();
        self.members[i].lease_loop = Some(tokio::spawn(keeper.run()));
    }

    /// The member at index `i`.
    pub(crate) fn server(&self, i: usize) -> &Arc<Server> {
        self.members[i].server()
    }

    /// The indexes of the running members.
    pub(crate) fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|&i| self.members[i].server.is_some())
            .collect()
    }

    /// Advances every member's Raft clock by `ticks`, one at a time.
    pub(crate) fn advance(&self, ticks: u64) {
        tokio::task::block_in_place(|| self.net.advance(ticks));
    }

    /// Moves the lessors' clock forward.
    pub(crate) fn advance_lease_clock(&self, by: Duration) {
        *self.clock.0.lock() += by;
    }

    /// Ticks until `cond` holds; fails the test after [`MAX_TICKS`], or after [`MAX_WAIT`]
    /// of real time (a tick waits for its traffic to settle, at most 200 ms).
    pub(crate) fn tick_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + MAX_WAIT;
        for _ in 0..MAX_TICKS {
            if cond() {
                return;
            }
            assert!(Instant::now() < deadline, "not within {MAX_WAIT:?}: {what}");
            self.advance(1);
        }
        assert!(cond(), "not within {MAX_TICKS} ticks: {what}");
    }

    /// The index of the member every running member that knows a leader agrees leads;
    /// `None` while none leads or they disagree.
    pub(crate) fn leader_among(&self, among: &[usize]) -> Option<usize> {
        let leaders: Vec<usize> = among
            .iter()
            .copied()
            .filter(|&i| self.server(i).raft_status().is_leader)
            .collect();
        let [leader] = leaders[..] else {
            return None;
        };
        let id = self.members[leader].id;
        among
            .iter()
            .all(|&i| self.server(i).raft_status().leader_id == id)
            .then_some(leader)
    }

    /// Ticks until the running members agree on a leader, and returns its index.
    pub(crate) async fn wait_for_leader(&self) -> usize {
        let running = self.running();
        self.tick_until("a leader", || self.leader_among(&running).is_some());
        self.leader_among(&running)
            .unwrap_or_else(|| unreachable!())
    }

    /// The current leader's index.
    pub(crate) fn leader(&self) -> usize {
        self.leader_among(&self.running())
            .unwrap_or_else(|| panic!("no agreed leader"))
    }

    /// A running member that does not lead.
    pub(crate) fn follower(&self) -> usize {
        let l = self.leader();
        self.running()
            .into_iter()
            .find(|&i| i != l)
            .unwrap_or_else(|| panic!("no follower"))
    }

    /// Puts `key` = `value` through member `i`; returns the revision.
    pub(crate) async fn put(&self, i: usize, key: &str, value: &str) -> i64 {
        let req = PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        };
        let put = self.server(i).propose(Request::Put(req));
        match tokio::time::timeout(MAX_WAIT, put).await {
            Ok(Ok(ApplyResult::Put(r))) => r.header.map(|h| h.revision).unwrap_or_default(),
            other => panic!("put {key} through m{i}: {other:?}"),
        }
    }

    /// Reads `key` on member `i` from its local store (a serializable read).
    pub(crate) fn get_local(&self, i: usize, key: &str) -> Option<String> {
        let req = RangeRequest {
            key: key.into(),
            ..Default::default()
        };
        let resp = self
            .server(i)
            .store()
            .range(&req)
            .unwrap_or_else(|e| panic!("range on m{i}: {e}"));
        resp.kvs
            .first()
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
    }

    /// Reads `key` on member `i` linearizably.
    pub(crate) async fn get(&self, i: usize, key: &str) -> Option<String> {
        let read = self.server(i).linearizable_read();
        match tokio::time::timeout(MAX_WAIT, read).await {
            Ok(Ok(())) => self.get_local(i, key),
            other => panic!("linearizable read on m{i}: {other:?}"),
        }
    }

    /// Checks that every running member holds the same keys, values and history (their
    /// HashKV agree).
    pub(crate) fn assert_same_data(&self) {
        let hashes: Vec<(usize, u32)> = self
            .running()
            .into_iter()
            .map(|i| {
                let hash = self.server(i).store().hash_kv(0);
                (
                    i,
                    hash.map(|h| h.hash).unwrap_or_else(|e| panic!("m{i}: {e}")),
                )
            })
            .collect();
        assert!(hashes.windows(2).all(|w| w[0].1 == w[1].1), "{hashes:?}");
    }

    /// Cuts member `i` off from every other member.
    pub(crate) fn isolate(&self, i: usize) {
        self.net.isolate(self.members[i].id);
    }

    /// Removes every network fault.
    pub(crate) fn heal(&self) {
        self.net.heal();
    }

    /// Starts a new member that joins the running cluster (after `member add`), waits until
    /// it has caught up with the leader's applied index, and returns its index.
    pub(crate) async fn join(&mut self, peer_url_index: usize) -> usize {
        let leader = self.leader();
        let existing = MembersResponse {
            cluster_id: self.server(leader).cluster_id(),
            members: self.server(leader).member_list(),
        };
        let initial: Vec<String> = existing
            .members
            .iter()
            .map(|m| {
                let name = if m.name.is_empty() {
                    format!("m{peer_url_index}")
                } else {
                    m.name.clone()
                };
                format!("{name}={}", m.peer_ur_ls.join(","))
            })
            .collect();
        let member = self.boot(peer_url_index, &initial.join(","), Some(existing));
        self.members.push(member);
        let i = self.members.len() - 1;
        let target = self.server(leader).applied_index();
        let joined = self.server(i).clone();
        self.tick_until("the new member catches up", || {
            joined.applied_index() >= target
        });
        self.come_up(i).await;
        i
    }

    /// Stops member `i` (as a crash would leave it: no leadership hand-over).
    pub(crate) fn stop(&mut self, i: usize) {
        let member = &mut self.members[i];
        if let Some(task) = member.lease_loop.take() {
            task.abort();
        }
        if let Some(server) = member.server.take() {
            self.net.unregister(member.id);
            tokio::task::block_in_place(|| server.stop());
        }
    }
}

impl TestMember {
    fn server(&self) -> &Arc<Server> {
        self.server
            .as_ref()
            .unwrap_or_else(|| panic!("{} is stopped", self.name))
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            if let Some(task) = self.members[i].lease_loop.take() {
                task.abort();
            }
            if let Some(server) = self.members[i].server.take() {
                self.net.unregister(self.members[i].id);
                server.stop();
            }
        }
    }
}
