//! bcrypt, as etcd hashes passwords (`golang.org/x/crypto/bcrypt`, `$2a$` hashes).

/// Hashes `password` at `cost` (4 to 31). Slow on purpose: run it off async workers.
pub fn hash_password(password: &str, cost: u32) -> Result<String, bcrypt::BcryptError> {
    Ok(bcrypt::hash_with_result(password, cost)?.format_for_version(bcrypt::Version::TwoA))
}

/// Whether `password` matches `hash`. A malformed hash matches nothing.
pub fn verify_password(password: &str, hash: &[u8]) -> bool {
    let Ok(hash) = std::str::from_utf8(hash) else {
        return false;
    };
    bcrypt::verify(password, hash).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let h = hash_password("secret", 4).unwrap();
        assert!(h.starts_with("$2a$04$"), "{h}");
        assert!(verify_password("secret", h.as_bytes()));
        assert!(!verify_password("Secret", h.as_bytes()));
        assert!(!verify_password("secret", b"not a hash"));
        assert!(!verify_password("", b""));
    }
}
