//! The spool's record framing: one record per line, `<crc32 hex> <tag> <body>\n`.
//!
//! - `L <json>`: a letter (compact JSON: no raw newline can appear in it).
//! - `D <id>`: the letter with this id was delivered by a replay (a tombstone).
//!
//! The CRC-32 (IEEE) covers `<tag> <body>`. A line is a record only when it ends with a
//! newline and its checksum matches: a write cut short by a crash, a tail of zeros left
//! by a file system that extended the file before writing its blocks, or a damaged
//! sector, are all counted as damaged lines and skipped. Newline framing resynchronises
//! at the next line, where a corrupt length prefix would lose everything after it.
//! Lines of the first spool format (bare JSON letters, no checksum) are still read.

use super::DeadLetter;

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

/// CRC-32 (IEEE 802.3, as zlib and gzip).
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(body.len() + 2);
    payload.push(tag);
    payload.push(b' ');
    payload.extend_from_slice(body);
    let mut out = format!("{:08x} ", crc32(&payload)).into_bytes();
    out.extend_from_slice(&payload);
    out.push(b'\n');
    out
}

/// A letter's record.
pub(crate) fn letter(letter: &DeadLetter) -> serde_json::Result<Vec<u8>> {
    Ok(frame(b'L', &serde_json::to_vec(letter)?))
}

/// A tombstone's record.
pub(crate) fn delivered(id: &str) -> Vec<u8> {
    frame(b'D', id.as_bytes())
}

/// One line of a spool.
#[derive(Debug)]
pub(crate) enum Record {
    Letter(Box<DeadLetter>),
    Delivered(String),
    /// Not a record: cut short, corrupt, or unreadable.
    Damaged,
    /// An empty line (the newline that ends a damaged tail).
    Blank,
}

/// Parses one line, with its newline if it has one.
pub(crate) fn parse(line: &[u8]) -> Record {
    let Some(body) = line.strip_suffix(b"\n") else {
        // A last line without its newline was cut short.
        return if line.is_empty() {
            Record::Blank
        } else {
            Record::Damaged
        };
    };
    if body.is_empty() {
        return Record::Blank;
    }
    if body.first() == Some(&b'{') {
        // The first spool format: a bare JSON letter.
        return match serde_json::from_slice::<DeadLetter>(body) {
            Ok(l) => Record::Letter(Box::new(l)),
            Err(_) => Record::Damaged,
        };
    }
    let (Some(crc), Some(payload)) = (body.get(..8), body.get(9..)) else {
        return Record::Damaged;
    };
    let Some(crc) = std::str::from_utf8(crc)
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
    else {
        return Record::Damaged;
    };
    if body.get(8) != Some(&b' ') || crc32(payload) != crc {
        return Record::Damaged;
    }
    match payload {
        [b'L', b' ', json @ ..] => match serde_json::from_slice::<DeadLetter>(json) {
            Ok(l) => Record::Letter(Box::new(l)),
            Err(_) => Record::Damaged,
        },
        [b'D', b' ', id @ ..] => match std::str::from_utf8(id) {
            Ok(id) => Record::Delivered(id.to_owned()),
            Err(_) => Record::Damaged,
        },
        _ => Record::Damaged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn a_flipped_bit_or_a_cut_is_damage() {
        let rec = delivered("abc");
        assert!(matches!(parse(&rec), Record::Delivered(id) if id == "abc"));
        let mut flipped = rec.clone();
        flipped[10] ^= 1;
        assert!(matches!(parse(&flipped), Record::Damaged));
        for cut in 1..rec.len() {
            let mut torn = rec[..cut].to_vec();
            assert!(matches!(parse(&torn), Record::Damaged));
            // Terminated by the next writer's newline: still damage, never a record.
            if cut < rec.len() - 1 {
                torn.push(b'\n');
                assert!(matches!(parse(&torn), Record::Damaged | Record::Blank));
            }
        }
        assert!(matches!(parse(&[0u8; 12]), Record::Damaged));
    }
}
