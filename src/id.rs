//! Random identifiers.

/// 128 random bits from the operating system's generator (`getrandom`). Not from a
/// process-local generator such as fastrand's: its state is copied into a forked child,
/// so parent and child would draw the same ids (dead letters with the same id in one
/// spool read as one letter). If the operating system's generator fails (it does not
/// on supported platforms), fastrand's bits mixed with the process id and the time.
pub(crate) fn random_u128() -> u128 {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_ok() {
        return u128::from_le_bytes(bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    fastrand::u128(..) ^ (u128::from(std::process::id()) << 64) ^ nanos
}

/// A random (version 4) UUID in its hyphenated lower-case text form, from
/// [`random_u128`]: unique ids, not secrets.
pub(crate) fn uuid_v4() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = random_u128().to_le_bytes();
    bytes[6] = bytes[6] & 0x0f | 0x40; // version 4
    bytes[8] = bytes[8] & 0x3f | 0x80; // variant 10 (RFC 9562)
    let mut out = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::uuid_v4;
    use std::collections::HashSet;

    /// Review of issue 21: ids came from fastrand's thread-local state, which a forked
    /// child inherits, so parent and child drew the same ids. Reseeding fastrand to the
    /// same state, as a fork does, must not repeat an id.
    #[test]
    fn ids_do_not_repeat_when_fastrands_state_does() {
        fastrand::seed(7);
        let a = uuid_v4();
        fastrand::seed(7);
        let b = uuid_v4();
        assert_ne!(a, b);
    }

    #[test]
    fn ids_are_v4_uuids_that_differ_in_every_random_digit() {
        let ids: Vec<Vec<u8>> = (0..2000).map(|_| uuid_v4().into_bytes()).collect();
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        for id in &ids {
            assert_eq!(id.len(), 36);
        }
        for at in 0..36 {
            let seen: HashSet<u8> = ids.iter().map(|id| id[at]).collect();
            match at {
                8 | 13 | 18 | 23 => assert_eq!(seen, HashSet::from([b'-'])),
                14 => assert_eq!(seen, HashSet::from([b'4'])),
                19 => assert!(seen.iter().all(|c| b"89ab".contains(c)) && seen.len() == 4),
                _ => assert_eq!(seen.len(), 16, "digit {at} takes every hex value"),
            }
        }
    }
}
