//! Active alarms (NOSPACE, CORRUPT), kept in memory and persisted in the backend's meta
//! table by the applier.

use std::sync::atomic::{AtomicU8, Ordering};

use cairn_proto::etcdserverpb::{AlarmMember, AlarmResponse, AlarmType};
use parking_lot::RwLock;
use prost::Message;

/// The meta key the applier stores the alarm list under.
pub const META_KEY: &str = cairn_migrate::layout::ALARMS_KEY;

/// Set in [`Alarms::kinds`] while a NOSPACE alarm is active.
const NO_SPACE: u8 = 1;
/// Set in [`Alarms::kinds`] while a CORRUPT alarm is active.
const CORRUPT: u8 = 2;

/// The set of active alarms.
#[derive(Default)]
pub struct Alarms {
    /// The active alarms, in activation order. Written only by the applier.
    list: RwLock<Vec<AlarmMember>>,
    /// The kinds active in `list`, so the applier's checks take no lock. Written under
    /// `list`'s write lock.
    kinds: AtomicU8,
}

fn kinds_of(list: &[AlarmMember]) -> u8 {
    list.iter().fold(0, |k, a| {
        k | if a.alarm == AlarmType::Nospace as i32 {
            NO_SPACE
        } else if a.alarm == AlarmType::Corrupt as i32 {
            CORRUPT
        } else {
            0
        }
    })
}

impl Alarms {
    /// Loads the alarms persisted under [`META_KEY`].
    pub fn decode(bytes: Option<&[u8]>) -> Alarms {
        let list = bytes
            .and_then(|b| AlarmResponse::decode(b).ok())
            .map(|r| r.alarms)
            .unwrap_or_default();
        Alarms {
            kinds: AtomicU8::new(kinds_of(&list)),
            list: RwLock::new(list),
        }
    }

    /// Replaces the alarms with those persisted in `bytes` (after a snapshot restore).
    pub fn reload(&self, bytes: Option<&[u8]>) {
        let mut list = self.list.write();
        *list = Alarms::decode(bytes).list.into_inner();
        self.kinds.store(kinds_of(&list), Ordering::Release);
    }

    /// The bytes to persist.
    pub fn encode(&self) -> Vec<u8> {
        AlarmResponse {
            header: None,
            alarms: self.list.read().clone(),
        }
        .encode_to_vec()
    }

    /// Whether a NOSPACE alarm is active on any member.
    pub fn no_space(&self) -> bool {
        self.kinds.load(Ordering::Acquire) & NO_SPACE != 0
    }

    /// Whether a CORRUPT alarm is active on any member.
    pub fn corrupt(&self) -> bool {
        self.kinds.load(Ordering::Acquire) & CORRUPT != 0
    }

    /// The alarms of one type, or all of them for `AlarmType::None`.
    pub fn get(&self, kind: AlarmType) -> Vec<AlarmMember> {
        self.list
            .read()
            .iter()
            .filter(|a| kind == AlarmType::None || a.alarm == kind as i32)
            .cloned()
            .collect()
    }

    /// Activates an alarm; false if it was already active.
    pub fn activate(&self, m: AlarmMember) -> bool {
        let mut list = self.list.write();
        if list.contains(&m) {
            return false;
        }
        list.push(m);
        self.kinds.store(kinds_of(&list), Ordering::Release);
        true
    }

    /// Deactivates an alarm; false if it was not active.
    pub fn deactivate(&self, m: &AlarmMember) -> bool {
        let mut list = self.list.write();
        let before = list.len();
        list.retain(|a| a != m);
        self.kinds.store(kinds_of(&list), Ordering::Release);
        list.len() != before
    }

    /// The alarms as etcd prints them in `StatusResponse.errors`.
    pub fn status_errors(&self) -> Vec<String> {
        self.list
            .read()
            .iter()
            .map(|a| {
                let name = AlarmType::try_from(a.alarm)
                    .map(|t| t.as_str_name())
                    .unwrap_or("NONE");
                format!("memberID:{} alarm:{} ", a.member_id, name)
            })
            .collect()
    }

    /// Names of the active alarm types, for `/health`'s reason.
    pub fn names(&self) -> Vec<&'static str> {
        self.list
            .read()
            .iter()
            .map(|a| {
                AlarmType::try_from(a.alarm)
                    .map(|t| t.as_str_name())
                    .unwrap_or("NONE")
            })
            .collect()
    }
}
