//! The backend quota (`--quota-backend-bytes`): writes that would pass it raise the
//! NOSPACE alarm and are refused, as etcd's quota does.

use cairn_proto::cairnpb::internal_request::Request;
use cairn_proto::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType};
use cairn_proto::EtcdError;

use super::Server;

impl Server {
    /// Raises the NOSPACE alarm for this member through Raft.
    pub async fn raise_no_space(&self) {
        let req = AlarmRequest {
            action: AlarmAction::Activate as i32,
            member_id: self.member.id,
            alarm: AlarmType::Nospace as i32,
        };
        if let Err(e) = self.propose(Request::Alarm(req)).await {
            tracing::warn!(error = %e, "failed to raise the NOSPACE alarm");
        } else {
            tracing::warn!(
                quota_size_bytes = self.cfg.quota_backend_bytes,
                current_size_bytes = self.store.db_size(),
                "alarm NOSPACE raised: backend quota exceeded"
            );
        }
    }

    /// Checks the backend quota before a write that costs `cost` bytes, raising NOSPACE
    /// when it would be exceeded, as etcd's quota does.
    pub async fn check_quota(&self, cost: u64) -> Result<(), EtcdError> {
        if cost == 0 {
            return Ok(());
        }
        if self.store.db_size() + cost < self.cfg.quota_backend_bytes {
            return Ok(());
        }
        self.raise_no_space().await;
        Err(EtcdError::NoSpace)
    }
}
