//! etcd's simple tokens: 16 random letters, a dot, and the Raft index of the Authenticate
//! entry that assigned it (`qAzWsXeDcRfVtGbY.42`).
//!
//! The member that checks the password makes the random part and proposes it through Raft;
//! every member assigns the token when it applies the entry, so the token is valid on all
//! of them. Tokens live in memory only (a restarted member forgets them, and clients
//! authenticate again, as with etcd). A token unused for the TTL expires; each use starts
//! its TTL again. Times are passed in, so tests control them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use rand::Rng;

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const PREFIX_LEN: usize = 16;

/// A fresh random token prefix, as the member that checked the password proposes it.
pub fn new_token_prefix() -> String {
    let mut rng = rand::rng();
    (0..PREFIX_LEN)
        .map(|_| LETTERS[rng.random_range(0..LETTERS.len())] as char)
        .collect()
}

/// The Raft index a simple token names, if it has the shape of one.
pub fn token_index(token: &str) -> Option<u64> {
    let (prefix, index) = token.split_once('.')?;
    if prefix.is_empty() || index.contains('.') {
        return None;
    }
    index.parse().ok()
}

struct Entry {
    user: String,
    /// When the token expires, in nanoseconds after the table's base instant; moved on by
    /// each use under the table's read lock.
    expires: AtomicU64,
}

struct Tokens {
    by_token: HashMap<String, Entry>,
    /// When expired tokens were last swept out.
    swept: Instant,
}

/// The simple tokens this member knows.
pub struct SimpleTokens {
    ttl: Duration,
    /// Expiry times are counted from here.
    base: Instant,
    /// Protects the token table. Every request with a token takes it shared (a use moves
    /// the token's expiry atomically); assigning, sweeping and invalidating take it
    /// exclusively. Never held across a call out.
    tokens: RwLock<Tokens>,
}

impl SimpleTokens {
    pub fn new(ttl: Duration) -> SimpleTokens {
        let base = Instant::now();
        SimpleTokens {
            ttl,
            base,
            tokens: RwLock::new(Tokens {
                by_token: HashMap::new(),
                swept: base,
            }),
        }
    }

    /// The token an Authenticate entry at `index` assigns, as every member makes it.
    pub fn token(prefix: &str, index: u64) -> String {
        format!("{prefix}.{index}")
    }

    fn nanos(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_nanos() as u64
    }

    /// Assigns `token` to `user` at `now`. Expired tokens are swept out at most once per
    /// TTL, so the table holds only what was used within about two TTLs.
    pub fn assign(&self, token: String, user: &str, now: Instant) {
        let now_nanos = self.nanos(now);
        let mut t = self.tokens.write();
        if now.saturating_duration_since(t.swept) >= self.ttl {
            t.by_token
                .retain(|_, e| e.expires.load(Ordering::Relaxed) > now_nanos);
            t.swept = now;
        }
        t.by_token.insert(
            token,
            Entry {
                user: user.to_string(),
                expires: AtomicU64::new(self.nanos(now + self.ttl)),
            },
        );
    }

    /// The user of a live token, whose TTL starts again.
    pub fn user(&self, token: &str, now: Instant) -> Option<String> {
        let t = self.tokens.read();
        let e = t.by_token.get(token)?;
        let now_nanos = self.nanos(now);
        let renewed = self.nanos(now + self.ttl);
        // Moved on only while it has not expired; an expired one stays expired until the
        // next sweep removes it.
        e.expires
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |exp| {
                (exp > now_nanos).then_some(exp.max(renewed))
            })
            .ok()?;
        Some(e.user.clone())
    }

    /// Forgets every token of `user` (deleted, or its password changed).
    pub fn invalidate_user(&self, user: &str) {
        self.tokens.write().by_token.retain(|_, e| e.user != user);
    }

    /// Forgets every token (auth disabled).
    pub fn clear(&self) {
        self.tokens.write().by_token.clear();
    }

    /// How many tokens are held.
    pub fn len(&self) -> usize {
        self.tokens.read().by_token.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_etcds_shape() {
        let p = new_token_prefix();
        assert_eq!(p.len(), 16);
        assert!(p.bytes().all(|b| b.is_ascii_alphabetic()), "{p}");
        let t = SimpleTokens::token(&p, 42);
        assert_eq!(token_index(&t), Some(42));
        for bad in ["", "abc", ".5", "abc.", "abc.x", "a.1.2", "abc.-1"] {
            assert_eq!(token_index(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_token_expires_after_its_ttl_unless_used() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let s = SimpleTokens::new(ttl);
        s.assign("a.1".into(), "alice", t0);
        s.assign("b.2".into(), "bob", t0);
        // Used at 8 s: alice's lives until 18 s.
        assert_eq!(
            s.user("a.1", t0 + Duration::from_secs(8)).as_deref(),
            Some("alice")
        );
        assert_eq!(s.user("b.2", t0 + Duration::from_secs(10)), None);
        assert_eq!(
            s.user("a.1", t0 + Duration::from_secs(17)).as_deref(),
            Some("alice")
        );
        assert_eq!(s.user("a.1", t0 + Duration::from_secs(28)), None);
        assert_eq!(s.user("nope.3", t0), None);
    }

    #[test]
    fn expired_tokens_are_swept_and_users_invalidated() {
        let t0 = Instant::now();
        let s = SimpleTokens::new(Duration::from_secs(1));
        for i in 0..100 {
            s.assign(format!("t.{i}"), "u", t0);
        }
        s.assign("v.1".into(), "v", t0);
        assert_eq!(s.len(), 101);
        s.assign("w.1".into(), "w", t0 + Duration::from_secs(5));
        assert_eq!(s.len(), 1);
        s.assign("w.2".into(), "w", t0 + Duration::from_secs(5));
        s.assign("x.1".into(), "x", t0 + Duration::from_secs(5));
        s.invalidate_user("w");
        assert_eq!(s.len(), 1);
        s.clear();
        assert!(s.is_empty());
    }
}
