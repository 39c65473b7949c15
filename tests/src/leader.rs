//! Which member leads, as the members report it in their status.

use std::time::Duration;

use crate::grpc::{block_on, status};
use crate::wait::wait_until_async;
use crate::ServerProc;

/// How long the members have to agree on a leader.
const AGREE_WITHIN: Duration = Duration::from_secs(20);

/// The index in `urls` of the member that every member in `among` names as leader, once they
/// all answer and agree on one other than `not` (waits up to 20 s). A subset of the members
/// agrees on a leader while the others are cut off or down.
pub async fn leader_among(urls: &[String], among: &[usize], not: Option<usize>) -> usize {
    let what = format!("members {among:?} to agree on a leader other than {not:?}");
    wait_until_async(AGREE_WITHIN, what, || async move {
        // (member id, the leader it names) of each member that answers.
        let mut seen = Vec::new();
        for url in urls {
            let st = status(url).await;
            seen.push(st.map(|s| (s.header.map_or(0, |h| h.member_id), s.leader)));
        }
        let named: Vec<Option<u64>> = among.iter().map(|&i| seen[i].map(|s| s.1)).collect();
        let agreed = match named.first() {
            Some(&Some(l)) if l != 0 && named.iter().all(|n| *n == Some(l)) => Some(l),
            _ => None,
        };
        let index = agreed.and_then(|l| seen.iter().position(|s| s.map(|s| s.0) == Some(l)));
        match index {
            Some(i) if Some(i) != not => Ok(i),
            _ => Err(format!("(member id, leader) per member: {seen:?}")),
        }
    })
    .await
}

/// The index of the member that every running member names as leader (waits up to 20 s).
pub fn leader(members: &[ServerProc]) -> usize {
    let urls: Vec<String> = members.iter().map(|m| m.url()).collect();
    let running: Vec<usize> = (0..members.len())
        .filter(|&i| members[i].pid().is_some())
        .collect();
    block_on(leader_among(&urls, &running, None))
}
