//! bcrypt as `golang.org/x/crypto/bcrypt` computes it (so etcd's hashes verify here and
//! ours there), built to verify several passwords at once.
//!
//! One bcrypt is a long chain of Blowfish rounds, each waiting on the memory loads of the
//! one before: a core spends most of its time waiting, not computing. Lanes are
//! independent hashes run in lock-step by one thread, their rounds interleaved, so the core
//! works on one lane while another waits. [`verify_batch`] runs up to [`LANES`] of them
//! at a time: a thread verifies more passwords a second with several lanes than with one,
//! and a lone password costs what it always did.

mod tables;

/// The most hashes [`verify_batch`] runs in lock-step on one thread.
pub const LANES: usize = 4;

const MIN_COST: u32 = 4;
const MAX_COST: u32 = 31;
const SALT_LEN: usize = 16;
/// bcrypt reads at most this many bytes of a password, its closing NUL included.
const MAX_KEY_LEN: usize = 72;
/// The text encrypted 64 times with the final state; its ciphertext is the hash.
const MAGIC: &[u8; 24] = b"OrpheanBeholderScryDoubt";
/// Bytes of ciphertext kept: the last of the 24 is dropped, as every bcrypt does.
const HASH_LEN: usize = 23;
const ALPHABET: &[u8; 64] = b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Why a stored hash cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("not a bcrypt hash")]
    Malformed,
    #[error("bcrypt cost {0} is outside 4 to 31")]
    Cost(u32),
}

/// One Blowfish state: 18 subkeys and four S-boxes.
#[derive(Clone)]
struct State {
    p: [u32; 18],
    s: [[u32; 256]; 4],
}

impl State {
    fn initial() -> State {
        State {
            p: tables::P,
            s: tables::S,
        }
    }

    #[inline(always)]
    fn f(&self, x: u32) -> u32 {
        let [a, b, c, d] = x.to_be_bytes();
        (self.s[0][a as usize].wrapping_add(self.s[1][b as usize]) ^ self.s[2][c as usize])
            .wrapping_add(self.s[3][d as usize])
    }
}

/// Encrypts one block in each lane, the lanes' rounds interleaved.
#[inline(always)]
fn encrypt<const N: usize>(st: &[State; N], l: &mut [u32; N], r: &mut [u32; N]) {
    for i in 0..N {
        l[i] ^= st[i].p[0];
    }
    for round in (1..17).step_by(2) {
        for i in 0..N {
            r[i] ^= st[i].f(l[i]) ^ st[i].p[round];
        }
        for i in 0..N {
            l[i] ^= st[i].f(r[i]) ^ st[i].p[round + 1];
        }
    }
    for i in 0..N {
        let left = l[i];
        l[i] = r[i] ^ st[i].p[17];
        r[i] = left;
    }
}

/// Blowfish's key schedule in each lane: the subkeys XORed with `key`, then every subkey
/// and S-box entry replaced in turn by the encryption of the previous block, XORed first
/// with the salt's words when `salt` is given (bcrypt's expensive setup).
#[inline(always)]
fn expand<const N: usize>(st: &mut [State; N], key: &[[u32; 18]; N], salt: Option<&[[u32; 4]; N]>) {
    for i in 0..N {
        for (p, k) in st[i].p.iter_mut().zip(key[i]) {
            *p ^= k;
        }
    }
    let (mut l, mut r) = ([0u32; N], [0u32; N]);
    let mut word = 0;
    let mut next = |l: &mut [u32; N], r: &mut [u32; N], st: &[State; N]| {
        if let Some(salt) = salt {
            for i in 0..N {
                l[i] ^= salt[i][word];
                r[i] ^= salt[i][word + 1];
            }
            word ^= 2;
        }
        encrypt(st, l, r);
    };
    for j in (0..18).step_by(2) {
        next(&mut l, &mut r, st);
        for i in 0..N {
            st[i].p[j] = l[i];
            st[i].p[j + 1] = r[i];
        }
    }
    for b in 0..4 {
        for j in (0..256).step_by(2) {
            next(&mut l, &mut r, st);
            for i in 0..N {
                st[i].s[b][j] = l[i];
                st[i].s[b][j + 1] = r[i];
            }
        }
    }
}

/// The first 18 big-endian words of `bytes` repeated end to end.
fn cycled_words(bytes: &[u8]) -> [u32; 18] {
    let mut words = [0u32; 18];
    let mut it = bytes.iter().cycle();
    for w in &mut words {
        for _ in 0..4 {
            *w = (*w << 8) | u32::from(it.next().copied().unwrap_or(0));
        }
    }
    words
}

/// One hash's input: the password's key words and the salt.
struct Input {
    key: [u32; 18],
    salt: [u8; SALT_LEN],
}

impl Input {
    fn new(password: &[u8], salt: [u8; SALT_LEN]) -> Input {
        let mut key = Vec::with_capacity(password.len() + 1);
        key.extend_from_slice(password);
        key.push(0);
        key.truncate(MAX_KEY_LEN);
        Input {
            key: cycled_words(&key),
            salt,
        }
    }
}

/// The raw 23-byte bcrypt of each input, all at `cost`, in lock-step.
fn raw<const N: usize>(inputs: [&Input; N], cost: u32) -> [[u8; HASH_LEN]; N] {
    let key: [[u32; 18]; N] = std::array::from_fn(|i| inputs[i].key);
    let salt_key: [[u32; 18]; N] = std::array::from_fn(|i| cycled_words(&inputs[i].salt));
    let salt: [[u32; 4]; N] = std::array::from_fn(|i| {
        std::array::from_fn(|w| u32::from_be_bytes(word_bytes(&inputs[i].salt, w)))
    });
    let mut st: Box<[State; N]> = Box::new(std::array::from_fn(|_| State::initial()));
    expand(&mut st, &key, Some(&salt));
    for _ in 0..1u64 << cost {
        expand(&mut st, &key, None);
        expand(&mut st, &salt_key, None);
    }
    let mut text: [[u32; 6]; N] =
        [std::array::from_fn(|w| u32::from_be_bytes(word_bytes(MAGIC, w))); N];
    for half in 0..3 {
        let mut l: [u32; N] = std::array::from_fn(|i| text[i][2 * half]);
        let mut r: [u32; N] = std::array::from_fn(|i| text[i][2 * half + 1]);
        for _ in 0..64 {
            encrypt(&st, &mut l, &mut r);
        }
        for i in 0..N {
            text[i][2 * half] = l[i];
            text[i][2 * half + 1] = r[i];
        }
    }
    std::array::from_fn(|i| {
        let mut out = [0u8; HASH_LEN];
        for (chunk, w) in out.chunks_mut(4).zip(text[i]) {
            chunk.copy_from_slice(&w.to_be_bytes()[..chunk.len()]);
        }
        out
    })
}

fn word_bytes(bytes: &[u8], w: usize) -> [u8; 4] {
    let mut out = [0u8; 4];
    out.copy_from_slice(&bytes[4 * w..4 * w + 4]);
    out
}

/// The raw hashes of `inputs` at `cost`, [`LANES`] at a time.
fn raw_many(inputs: &[&Input], cost: u32) -> Vec<[u8; HASH_LEN]> {
    let mut out = Vec::with_capacity(inputs.len());
    for chunk in inputs.chunks(LANES) {
        match *chunk {
            [a, b, c, d] => out.extend(raw([a, b, c, d], cost)),
            [a, b, c] => out.extend(raw([a, b, c], cost)),
            [a, b] => out.extend(raw([a, b], cost)),
            [a] => out.extend(raw([a], cost)),
            _ => {}
        }
    }
    out
}

/// bcrypt's base64: its own alphabet, no padding.
fn encode64(bytes: &[u8], out: &mut String) {
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for k in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * k) & 63) as usize]));
        }
    }
}

/// Decodes `text` into exactly `N` bytes; bits past the last byte are ignored, as Go's
/// decoder ignores them.
fn decode64<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != (N * 4).div_ceil(3) {
        return None;
    }
    let mut out = [0u8; N];
    let mut acc = 0u32;
    let mut bits = 0;
    let mut at = 0;
    for &c in text {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            if at < N {
                out[at] = (acc >> bits) as u8;
                at += 1;
            }
        }
    }
    Some(out)
}

/// A stored hash taken apart: `$2a$10$` + 22 characters of salt + 31 of hash.
struct Stored<'a> {
    cost: u32,
    salt: [u8; SALT_LEN],
    hash: &'a [u8],
}

fn parse(stored: &[u8]) -> Result<Stored<'_>, HashError> {
    // `$2$`, or `$2` and one more letter (a, b, x or y), as Go's parser takes them.
    let version_len = match stored {
        [b'$', b'2', b'$', ..] => 3,
        [b'$', b'2', minor, b'$', ..] if minor.is_ascii_lowercase() => 4,
        _ => return Err(HashError::Malformed),
    };
    let rest = &stored[version_len..];
    let (cost, rest) = match rest {
        [a, b, b'$', rest @ ..] if a.is_ascii_digit() && b.is_ascii_digit() => {
            (u32::from(a - b'0') * 10 + u32::from(b - b'0'), rest)
        }
        _ => return Err(HashError::Malformed),
    };
    if !(MIN_COST..=MAX_COST).contains(&cost) {
        return Err(HashError::Cost(cost));
    }
    if rest.len() != 22 + 31 {
        return Err(HashError::Malformed);
    }
    let salt = decode64::<SALT_LEN>(&rest[..22]).ok_or(HashError::Malformed)?;
    decode64::<HASH_LEN>(&rest[22..]).ok_or(HashError::Malformed)?;
    Ok(Stored {
        cost,
        salt,
        hash: &rest[22..],
    })
}

/// Formats a hash as Go writes it: `$2a$`, the cost in two digits, salt and hash.
fn format(cost: u32, salt: &[u8; SALT_LEN], raw: &[u8; HASH_LEN]) -> String {
    let mut out = format!("$2a${cost:02}$");
    encode64(salt, &mut out);
    encode64(raw, &mut out);
    out
}

/// Hashes `password` at `cost` with `salt`, as `$2a$` (Go's bcrypt writes that version).
pub fn hash_with_salt(
    password: &[u8],
    cost: u32,
    salt: [u8; SALT_LEN],
) -> Result<String, HashError> {
    if !(MIN_COST..=MAX_COST).contains(&cost) {
        return Err(HashError::Cost(cost));
    }
    let input = Input::new(password, salt);
    let [raw] = raw([&input], cost);
    Ok(format(cost, &salt, &raw))
}

/// Hashes `password` at `cost` with a fresh random salt.
pub fn hash(password: &[u8], cost: u32) -> Result<String, HashError> {
    hash_with_salt(password, cost, rand::random())
}

/// Whether each password matches its stored hash; a malformed hash matches nothing. The
/// hashes are computed [`LANES`] at a time among those of equal cost.
pub fn verify_batch(pairs: &[(&[u8], &[u8])]) -> Vec<bool> {
    let parsed: Vec<Option<Stored<'_>>> = pairs.iter().map(|(_, h)| parse(h).ok()).collect();
    let inputs: Vec<Option<Input>> = pairs
        .iter()
        .zip(&parsed)
        .map(|((pw, _), s)| s.as_ref().map(|s| Input::new(pw, s.salt)))
        .collect();
    let mut matched = vec![false; pairs.len()];
    let mut costs: Vec<u32> = parsed.iter().flatten().map(|s| s.cost).collect();
    costs.sort_unstable();
    costs.dedup();
    for cost in costs {
        let at: Vec<usize> = (0..pairs.len())
            .filter(|&i| parsed[i].as_ref().is_some_and(|s| s.cost == cost))
            .collect();
        let batch: Vec<&Input> = at.iter().filter_map(|&i| inputs[i].as_ref()).collect();
        for (&i, raw) in at.iter().zip(raw_many(&batch, cost)) {
            if let Some(s) = &parsed[i] {
                let mut text = String::with_capacity(31);
                encode64(&raw, &mut text);
                matched[i] = constant_time_eq(text.as_bytes(), s.hash);
            }
        }
    }
    matched
}

/// Whether `password` matches `stored`; a malformed hash matches nothing.
pub fn verify(password: &[u8], stored: &[u8]) -> bool {
    verify_batch(&[(password, stored)]) == [true]
}

/// Compares without stopping at the first difference, so the time taken says nothing of
/// where two hashes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by `golang.org/x/crypto/bcrypt` (as etcd hashes): password, hash.
    const GO_HASHES: [(&[u8], &str); 10] = [
        (
            b"",
            "$2a$04$6njOBPlMSHBnybSy2uCEyO9aSkctCztl./svcI.rk8hI/7DZyg8i.",
        ),
        (
            b"a",
            "$2a$05$1CVW3z/p/K8XItvrG0qUWezkE9Clxkp6r2EHDeSQGakhaZbDpUW7O",
        ),
        (
            b"bench-pw",
            "$2a$06$WCji0ZM0MDsR.OCr5cvbxOrQC/YUjR/ckTY2iDCOEy4a1OABE0l..",
        ),
        (
            b"bench-pw",
            "$2a$04$Dsul8J/hMBZZY872e4LL4uM3A1l.6C8K3GG3QRTm8HkcBGuV84XW.",
        ),
        (
            b"12345678",
            "$2a$04$Zb8jLiyV1xo9dlQZX7gju.yuQt2u7Rebz7vOZSiMYZxBGt0s8Vs6W",
        ),
        (
            &[b'x'; 71],
            "$2a$05$Si0GukyS0IqR71mKQwXZ4umQyy3Mve3cIjR1XeOjNTTaXt4ATFCy6",
        ),
        (
            &[b'y'; 72],
            "$2a$06$AsKiiHeW0xKIgUuNvhDU6uypll4W0wcnHpc7vEMNKG07n7bX9Gub6",
        ),
        (
            &[b'z'; 73],
            "$2a$04$n8XsPMzHZVFBLNQekaxmAu9Wk1wUtZHLTuRpHDPW02zUlzv5Hydtq",
        ),
        (
            "pässwörd ☃".as_bytes(),
            "$2a$05$6hWh0jxNfh9otBfLfY2/vurS/ykR6T51BqwyxTCLFnlQtJfQmsARq",
        ),
        (
            b"\x00\xff\x01",
            "$2a$06$pP8sbQopGVbjkJ0eAtXXYeGwQMlIkpqtbfGSIIMS27zgkE.NwvGw.",
        ),
    ];

    fn salt_of(stored: &str) -> [u8; SALT_LEN] {
        parse(stored.as_bytes()).unwrap().salt
    }

    #[test]
    fn go_made_hashes_verify_and_are_made_again_byte_for_byte() {
        for (pw, h) in GO_HASHES {
            assert!(verify(pw, h.as_bytes()), "{h}");
            let cost = parse(h.as_bytes()).unwrap().cost;
            assert_eq!(hash_with_salt(pw, cost, salt_of(h)).unwrap(), h);
            let mut other = pw.to_vec();
            other.push(b'!');
            // bcrypt reads 72 bytes at most: a longer password matches with anything after.
            assert_eq!(verify(&other, h.as_bytes()), pw.len() >= MAX_KEY_LEN, "{h}");
        }
        assert!(!verify(b"bench-pX", GO_HASHES[3].1.as_bytes()));
        assert!(!verify(b"", GO_HASHES[1].1.as_bytes()));
    }

    #[test]
    fn a_batch_answers_each_pair_as_alone_whatever_the_lanes_and_costs() {
        let mut pairs: Vec<(&[u8], &[u8])> = Vec::new();
        let mut want = Vec::new();
        // Eleven hashes of three costs (lane groups of 4, 3, 2 and 1), each tried with its
        // own password and with its neighbour's, plus hashes nothing matches.
        for (i, (pw, h)) in GO_HASHES.iter().enumerate() {
            pairs.push((pw, h.as_bytes()));
            want.push(true);
            let (other, _) = GO_HASHES[(i + 1) % GO_HASHES.len()];
            if other != *pw {
                pairs.push((other, h.as_bytes()));
                want.push(false);
            }
        }
        pairs.push((b"a", b"not a hash"));
        pairs.push((b"a", b""));
        want.extend([false, false]);
        assert_eq!(verify_batch(&pairs), want);
        let alone: Vec<bool> = pairs.iter().map(|(p, h)| verify(p, h)).collect();
        assert_eq!(alone, want);
    }

    #[test]
    fn fresh_hashes_are_go_shaped_salted_and_verify() {
        let a = hash(b"secret", 4).unwrap();
        let b = hash(b"secret", 4).unwrap();
        assert!(a.starts_with("$2a$04$") && a.len() == 60, "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify(b"secret", a.as_bytes()) && verify(b"secret", b.as_bytes()));
        assert!(!verify(b"Secret", a.as_bytes()));
        assert_eq!(hash(b"x", 3), Err(HashError::Cost(3)));
        assert_eq!(hash(b"x", 32), Err(HashError::Cost(32)));
    }

    #[test]
    fn versions_and_malformed_hashes_are_read_as_go_reads_them() {
        let (pw, h) = GO_HASHES[3];
        let tail = &h[4..];
        // Go computes one algorithm whatever the minor letter, or none.
        for version in ["$2b$", "$2y$", "$2x$", "$2$"] {
            assert!(
                verify(pw, format!("{version}{tail}").as_bytes()),
                "{version}"
            );
        }
        for bad in [
            format!("$3a${tail}"),
            format!("$2A${tail}"),
            format!("2a$${tail}"),
            h[..h.len() - 1].to_string(),
            format!("{h}."),
            h.replace("$04$", "$4$"),
            h.replace("$04$", "$xx$"),
            h.replace('D', "!"),
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
            assert!(!verify(pw, bad.as_bytes()), "{bad}");
        }
        assert_eq!(
            parse(h.replace("$04$", "$03$").as_bytes()).err(),
            Some(HashError::Cost(3))
        );
        assert_eq!(
            parse(h.replace("$04$", "$32$").as_bytes()).err(),
            Some(HashError::Cost(32))
        );
    }

    #[test]
    fn base64_round_trips_in_bcrypts_alphabet() {
        let bytes: [u8; HASH_LEN] = std::array::from_fn(|i| (i * 37 + 5) as u8);
        let mut text = String::new();
        encode64(&bytes, &mut text);
        assert_eq!(text.len(), 31);
        assert_eq!(decode64::<HASH_LEN>(text.as_bytes()), Some(bytes));
        assert_eq!(decode64::<HASH_LEN>(&text.as_bytes()[1..]), None);
        let mut salt_text = String::new();
        encode64(&[0xff; SALT_LEN], &mut salt_text);
        assert_eq!(salt_text, "999999999999999999999u");
    }
}
