//! Random identifiers.

/// A random (version 4) UUID in its hyphenated lower-case text form.
///
/// The bits come from `fastrand` (already in the build for retries' jitter), whose
/// generator is seeded per thread from the standard library's randomly keyed hasher:
/// unique ids, not secrets.
pub(crate) fn uuid_v4() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bytes = fastrand::u128(..).to_le_bytes();
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
