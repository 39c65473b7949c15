//! One user's permissions, merged from all its roles: etcd's permission range cache.
//!
//! A permission is a single key (`range_end` empty), a range `[key, range_end)`, or every
//! key from `key` on (`range_end` = `"\0"`). Read and write permissions are kept apart, each
//! as a sorted list of disjoint half-open intervals: overlapping and touching grants merge,
//! so "is this range allowed" is one binary search.
//!
//! Example: a role with READ on `a` (the point `[a, a\0)`), READWRITE on the prefix `b`
//! (`[b, c)`) and WRITE from `x` on (`[x, ∞)`) gives
//!
//! ```text
//! read:  [a, a\0) [b, c)
//! write: [b, c) [x, ∞)
//! ```
//!
//! so reading `b/1`, the range `[b/1, b/9)` and the point `a` are allowed; reading the
//! range `[a, c)` is not (`[a\0, b)` is not covered), nor writing `a`.

use cairn_proto::authpb::{permission::Type, Role};

/// What a request does to a key range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// An interval's end: a key, or past every key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Key(Vec<u8>),
    Infinite,
}

/// Disjoint, sorted, non-touching half-open intervals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct IntervalSet {
    spans: Vec<(Vec<u8>, End)>,
}

impl IntervalSet {
    fn from_spans(mut spans: Vec<(Vec<u8>, End)>) -> IntervalSet {
        spans.retain(|(start, end)| match end {
            End::Key(e) => start < e,
            End::Infinite => true,
        });
        spans.sort();
        let mut merged: Vec<(Vec<u8>, End)> = Vec::with_capacity(spans.len());
        for (start, end) in spans {
            if let Some(last) = merged.last_mut() {
                let touches = match &last.1 {
                    End::Infinite => true,
                    End::Key(e) => start <= *e,
                };
                if touches {
                    if end > last.1 {
                        last.1 = end;
                    }
                    continue;
                }
            }
            merged.push((start, end));
        }
        IntervalSet { spans: merged }
    }

    /// The interval that starts at or before `key`, if any.
    fn around(&self, key: &[u8]) -> Option<&(Vec<u8>, End)> {
        let i = self.spans.partition_point(|(s, _)| s.as_slice() <= key);
        i.checked_sub(1).and_then(|i| self.spans.get(i))
    }

    fn contains_point(&self, key: &[u8]) -> bool {
        self.around(key).is_some_and(|(_, end)| match end {
            End::Infinite => true,
            End::Key(e) => key < e.as_slice(),
        })
    }

    /// Whether `[start, end)` lies inside one interval.
    fn contains(&self, start: &[u8], end: &End) -> bool {
        self.around(start).is_some_and(|(_, e)| e >= end)
    }
}

/// One user's merged read and write permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPerms {
    read: IntervalSet,
    write: IntervalSet,
}

/// The interval a permission or request covers, as etcd reads `(key, range_end)`.
fn span(key: &[u8], range_end: &[u8]) -> (Vec<u8>, End) {
    if range_end.is_empty() {
        let mut next = key.to_vec();
        next.push(0);
        return (key.to_vec(), End::Key(next));
    }
    if range_end == [0] {
        return (key.to_vec(), End::Infinite);
    }
    (key.to_vec(), End::Key(range_end.to_vec()))
}

impl UserPerms {
    /// Merges the permissions of `roles`.
    pub fn merge<'a>(roles: impl IntoIterator<Item = &'a Role>) -> UserPerms {
        let mut read = Vec::new();
        let mut write = Vec::new();
        for role in roles {
            for p in &role.key_permission {
                let s = span(&p.key, &p.range_end);
                match Type::try_from(p.perm_type) {
                    Ok(Type::Read) => read.push(s),
                    Ok(Type::Write) => write.push(s),
                    Ok(Type::Readwrite) => {
                        read.push(s.clone());
                        write.push(s);
                    }
                    Err(_) => {}
                }
            }
        }
        UserPerms {
            read: IntervalSet::from_spans(read),
            write: IntervalSet::from_spans(write),
        }
    }

    /// Whether `access` to the key (empty `range_end`) or range is allowed, as etcd decides
    /// it: every key of the range must be covered. A range whose end is not after its key
    /// (it holds no key) is checked as its first key.
    pub fn allows(&self, access: Access, key: &[u8], range_end: &[u8]) -> bool {
        let set = match access {
            Access::Read => &self.read,
            Access::Write => &self.write,
        };
        if range_end.is_empty() {
            return set.contains_point(key);
        }
        let (start, end) = span(key, range_end);
        match &end {
            End::Key(e) if e.as_slice() <= start.as_slice() => set.contains_point(key),
            _ => set.contains(&start, &end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::authpb::Permission;

    fn perm(t: Type, key: &str, end: &[u8]) -> Permission {
        Permission {
            perm_type: t as i32,
            key: key.as_bytes().to_vec(),
            range_end: end.to_vec(),
        }
    }

    fn role(perms: Vec<Permission>) -> Role {
        Role {
            name: b"r".to_vec(),
            key_permission: perms,
        }
    }

    #[test]
    fn points_ranges_and_open_ends_as_etcd_reads_them() {
        let r = role(vec![
            perm(Type::Read, "a", b""),
            perm(Type::Readwrite, "b", b"c"),
            perm(Type::Write, "x", b"\0"),
        ]);
        let p = UserPerms::merge([&r]);
        use Access::*;
        let cases: &[(Access, &str, &[u8], bool)] = &[
            (Read, "a", b"", true),
            (Write, "a", b"", false),
            (Read, "a0", b"", false),
            (Read, "b", b"", true),
            (Read, "b/1", b"b/9", true),
            (Read, "b", b"c", true),
            (Read, "b", b"c\0", false),
            (Read, "a", b"c", false),
            (Read, "b", b"\0", false),
            (Write, "x", b"\0", true),
            (Write, "xyz", b"\0", true),
            (Write, "zz", b"", true),
            (Write, "w", b"\0", false),
            (Read, "x", b"", false),
            // The range [a, a\0) is the point a.
            (Read, "a", b"a\0", true),
            // An end before the key holds no key: checked as the key.
            (Read, "b/5", b"a", true),
            (Read, "q", b"a", false),
        ];
        for (access, key, end, want) in cases {
            assert_eq!(
                p.allows(*access, key.as_bytes(), end),
                *want,
                "{access:?} {key} {end:?}"
            );
        }
    }

    #[test]
    fn grants_of_several_roles_merge_when_they_touch() {
        let r1 = role(vec![perm(Type::Read, "a", b"c")]);
        let r2 = role(vec![perm(Type::Read, "c", b"e")]);
        let r3 = role(vec![perm(Type::Read, "f", b"g")]);
        let p = UserPerms::merge([&r1, &r2, &r3]);
        assert!(p.allows(Access::Read, b"a", b"e"));
        assert!(p.allows(Access::Read, b"b", b"d"));
        assert!(!p.allows(Access::Read, b"a", b"g"));
        assert!(!p.allows(Access::Write, b"a", b""));
        let everything = UserPerms::merge([&role(vec![perm(Type::Readwrite, "\0", b"\0")])]);
        assert!(everything.allows(Access::Write, b"\0", b"\0"));
        assert!(everything.allows(Access::Read, b"any", b""));
        assert!(!UserPerms::default().allows(Access::Read, b"a", b""));
    }
}
