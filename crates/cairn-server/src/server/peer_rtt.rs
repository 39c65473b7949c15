//! etcd's `etcd_network_peer_round_trip_time_seconds{To}`: every [`PROBE_INTERVAL`] this
//! member asks each other member for its member list over the peer URLs (the cheapest call
//! the peer service answers) and records how long the answer took. Each peer's connection
//! is kept between probes, so a probe times one request and its answer, not a connect;
//! a probe that fails or times out drops it and records nothing, as etcd's prober does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::cairnpb::raft_peer_client::RaftPeerClient;
use cairn_proto::cairnpb::MembersRequest;

use super::Server;

/// How often each peer is probed (etcd: its connection read timeout less a second).
const PROBE_INTERVAL: Duration = Duration::from_secs(4);

/// How long a probe may take before it counts as failed.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

type PeerClient = RaftPeerClient<tonic::transport::Channel>;

impl Server {
    /// Probes every other member for ever, recording round trips in the metrics.
    pub async fn probe_peers(self: Arc<Self>) {
        let mut clients: HashMap<u64, PeerClient> = HashMap::new();
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let peers: Vec<(u64, Vec<String>)> = self
                .members
                .peers()
                .into_iter()
                .filter(|(id, _)| *id != self.member.id)
                .collect();
            clients.retain(|id, _| peers.iter().any(|(p, _)| p == id));
            for (id, urls) in peers {
                let client = match clients.remove(&id) {
                    Some(c) => c,
                    None => match crate::peer::connect(&urls, 1 << 10).await {
                        Some(c) => c,
                        None => continue,
                    },
                };
                if let Some(client) = self.probe(id, client).await {
                    clients.insert(id, client);
                }
            }
        }
    }

    /// One probe of member `id`; the client back if it answered.
    async fn probe(&self, id: u64, mut client: PeerClient) -> Option<PeerClient> {
        let started = Instant::now();
        let answer = tokio::time::timeout(PROBE_TIMEOUT, client.members(MembersRequest {})).await;
        match answer {
            Ok(Ok(_)) => {
                self.metrics
                    .more
                    .peer_round_trip
                    .with_label_values(&[&format!("{id:x}")])
                    .observe(started.elapsed().as_secs_f64());
                Some(client)
            }
            _ => None,
        }
    }
}
