//! The event-stream decoder of `InvokeWithResponseStream`: the specification's worked
//! examples byte for byte, and properties over arbitrary bytes and valid streams cut at
//! every offset.

use bytes::Bytes;
use invoke_stack::stream::decoder::{encode, DecodeError, Event, EventDecoder};
use invoke_stack::stream::Completion;
use proptest::prelude::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(char::is_ascii_hexdigit).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Example A: `PayloadChunk` with `Hello` (111 bytes).
const A: &str = "00 00 00 6f 00 00 00 5a f5 fe 87 1f 0b 3a 65 76
65 6e 74 2d 74 79 70 65 07 00 0c 50 61 79 6c 6f
61 64 43 68 75 6e 6b 0d 3a 63 6f 6e 74 65 6e 74
2d 74 79 70 65 07 00 18 61 70 70 6c 69 63 61 74
69 6f 6e 2f 6f 63 74 65 74 2d 73 74 72 65 61 6d
0d 3a 6d 65 73 73 61 67 65 2d 74 79 70 65 07 00
05 65 76 65 6e 74 48 65 6c 6c 6f e8 26 3d 64";
/// Example B: `InvokeComplete` with `{}` (102 bytes).
const B: &str = "00000066000000541f56c8690b3a6576656e742d7479706507000e496e766f6b65436f6d706c6574650d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700056576656e747b7d7006d467";
/// Example C: `InvokeComplete` with a function error and a log tail (186 bytes).
const C: &str = "000000ba0000005453535a310b3a6576656e742d7479706507000e496e766f6b65436f6d706c6574650d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d747970650700056576656e747b224572726f72436f6465223a22556e68616e646c6564222c224572726f7244657461696c73223a22626f6f6d222c224c6f67526573756c74223a225255354549464a6c6358566c6333524a5a446f674d516f3d227df9e4b9d3";
/// Example D: an unmodeled `error` message (90 bytes).
const D: &str = "0000005a0000004a8188a08d0d3a6d6573736167652d747970650700056572726f720b3a6572726f722d636f646507000f496e7465726e616c4661696c7572650e3a6572726f722d6d657373616765070004626f6f6dd78e0703";

fn decode_all(bytes: &[u8]) -> Result<Vec<Event>, DecodeError> {
    let mut d = EventDecoder::default();
    d.push(bytes)?;
    let mut out = Vec::new();
    while let Some(e) = d.next_event()? {
        out.push(e);
    }
    Ok(out)
}

#[test]
fn spec_examples_decode_byte_for_byte() {
    let (a, b, c, d) = (hex(A), hex(B), hex(C), hex(D));
    assert_eq!((a.len(), b.len(), c.len(), d.len()), (111, 102, 186, 90));
    assert_eq!(
        decode_all(&a).expect("A"),
        [Event::Chunk(Bytes::from_static(b"Hello"))]
    );
    assert_eq!(
        decode_all(&b).expect("B"),
        [Event::Complete(Completion::default())]
    );
    let Event::Complete(done) = &decode_all(&c).expect("C")[0] else {
        panic!("C is InvokeComplete");
    };
    assert!(done.is_function_error());
    assert_eq!(done.error_code.as_deref(), Some("Unhandled"));
    assert_eq!(done.error_details.as_deref(), Some("boom"));
    assert_eq!(done.log_tail().as_deref(), Some("END RequestId: 1\n"));
    assert_eq!(
        decode_all(&d),
        Err(DecodeError::ErrorMessage {
            code: "InternalFailure".into(),
            message: "boom".into()
        })
    );
    // A whole successful body: A then B.
    let body = [a.clone(), b.clone()].concat();
    assert_eq!(decode_all(&body).expect("A+B").len(), 2);
}

#[test]
fn our_encoder_writes_the_spec_examples_byte_for_byte() {
    assert_eq!(encode::payload_chunk("Hello").as_ref(), hex(A));
    assert_eq!(encode::invoke_complete("{}").as_ref(), hex(B));
    assert_eq!(
        encode::error_message("InternalFailure", "boom").as_ref(),
        hex(D)
    );
}

#[test]
fn a_flipped_message_crc_is_a_typed_error() {
    let mut a = hex(A);
    let last = a.len() - 1;
    a[last] ^= 1;
    match decode_all(&a) {
        Err(DecodeError::Frame(msg)) => assert!(msg.contains("checksum"), "{msg}"),
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

#[test]
fn a_hostile_prelude_is_refused_before_its_frame_is_buffered() {
    // A valid prelude CRC announcing 2 GiB: refused as soon as its 12 bytes are in.
    let mut prelude = Vec::new();
    prelude.extend_from_slice(&0x8000_0000u32.to_be_bytes());
    prelude.extend_from_slice(&0u32.to_be_bytes());
    let crc = crc(&prelude);
    prelude.extend_from_slice(&crc.to_be_bytes());
    let mut d = EventDecoder::new(1 << 20);
    assert_eq!(
        d.push(&prelude),
        Err(DecodeError::FrameTooLarge {
            len: 0x8000_0000,
            max: 1 << 20
        })
    );
    // Nothing was reserved for it (capacity, not length: a reservation before the cap
    // check would show here).
    assert!(d.buffered() <= 12);
    assert!(d.buffer_capacity() <= 4096, "{}", d.buffer_capacity());
    // A proxy's HTML page is not an event stream: the prelude CRC says so.
    let mut d = EventDecoder::default();
    assert_eq!(
        d.push(b"<html><body>502 Bad Gateway</body></html>"),
        Err(DecodeError::PreludeChecksum)
    );
}

#[test]
fn unknown_events_and_exceptions_and_missing_types() {
    let other = invoke_stack::stream::decoder::encode::exception("ServiceException", "{}");
    assert!(matches!(
        decode_all(&other),
        Err(DecodeError::Exception { exception_type, .. }) if exception_type == "ServiceException"
    ));
}

/// CRC-32 (IEEE), as the format uses, for building test preludes.
fn crc(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn valid_stream(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        out.extend_from_slice(&encode::payload_chunk(c.clone()));
    }
    out.extend_from_slice(&encode::invoke_complete(r#"{"LogResult":"eA=="}"#));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary bytes, fed in arbitrary pieces: no panic, typed errors, and never more
    /// buffered than the cap plus one piece.
    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        data in proptest::collection::vec(any::<u8>(), 0..2048),
        split in 1usize..64,
    ) {
        let cap = 256;
        let mut d = EventDecoder::new(cap);
        'outer: for (i, piece) in data.chunks(split).enumerate() {
            let pushed = if i % 3 == 0 {
                d.push_bytes(Bytes::copy_from_slice(piece))
            } else {
                d.push(piece)
            };
            if pushed.is_err() {
                break;
            }
            prop_assert!(d.buffered() <= cap + split);
            prop_assert!(d.buffer_capacity() <= 4 * (cap + split) + 4096);
            loop {
                match d.next_event() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => break 'outer,
                }
            }
        }
    }

    /// A valid stream cut at every offset: the events before the cut come out intact,
    /// the rest is incomplete (never an error, never a wrong event); fed whole in pieces
    /// of any size it decodes to the same events.
    #[test]
    fn valid_streams_cut_at_every_offset(
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..5),
        split in 1usize..50,
    ) {
        let body = valid_stream(&chunks);
        let whole = decode_all(&body).expect("a valid stream");
        prop_assert_eq!(whole.len(), chunks.len() + 1);
        for cut in 0..=body.len() {
            let mut d = EventDecoder::default();
            d.push(&body[..cut]).expect("a valid prefix");
            let mut got = Vec::new();
            while let Some(e) = d.next_event().expect("a valid prefix") {
                got.push(e);
            }
            prop_assert_eq!(&got[..], &whole[..got.len()]);
            // A cut inside a frame leaves bytes that are not an event.
            prop_assert_eq!(d.is_empty(), got.len() == whole.len() || frame_boundary(&body, cut));
        }
        // In pieces, alternately copied and handed over as `Bytes` (decoded in place).
        let mut d = EventDecoder::default();
        let mut got = Vec::new();
        for (i, piece) in body.chunks(split).enumerate() {
            if i % 2 == 0 {
                d.push_bytes(Bytes::copy_from_slice(piece)).expect("valid");
            } else {
                d.push(piece).expect("valid");
            }
            while let Some(e) = d.next_event().expect("valid") {
                got.push(e);
            }
        }
        prop_assert_eq!(got, whole);
    }
}

/// Whether `cut` falls between two frames of `body`.
fn frame_boundary(body: &[u8], cut: usize) -> bool {
    let mut at = 0;
    while at < cut {
        let len = u32::from_be_bytes([body[at], body[at + 1], body[at + 2], body[at + 3]]) as usize;
        at += len;
    }
    at == cut
}

fn frame(headers: &[(&'static str, &str)], payload: &[u8]) -> Vec<u8> {
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let headers = headers
        .iter()
        .map(|(k, v)| Header::new(*k, HeaderValue::String(v.to_string().into())))
        .collect();
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(
        &Message::new_from_parts(headers, Bytes::copy_from_slice(payload)),
        &mut out,
    )
    .expect("encode");
    out
}

#[test]
fn tolerant_where_the_sdks_differ_strict_where_the_format_is() {
    // A chunk without `:content-type` (the Rust SDK refuses it; botocore and JS do not).
    let bare = frame(
        &[(":message-type", "event"), (":event-type", "PayloadChunk")],
        b"x",
    );
    assert_eq!(
        decode_all(&bare).expect("accepted"),
        [Event::Chunk("x".into())]
    );
    // An unknown event (a future member, a stray initial-response) is reported as such;
    // the response stream skips it.
    let unknown = frame(
        &[
            (":message-type", "event"),
            (":event-type", "initial-response"),
        ],
        b"{}",
    );
    assert_eq!(
        decode_all(&unknown).expect("accepted"),
        [Event::Unknown {
            event_type: "initial-response".into()
        }]
    );
    // InvokeComplete with an empty payload, or unknown keys, or nulls: all fields optional.
    for payload in [&b""[..], b"{}", br#"{"ErrorCode":null,"Other":1}"#] {
        let done = frame(
            &[
                (":message-type", "event"),
                (":event-type", "InvokeComplete"),
            ],
            payload,
        );
        assert_eq!(
            decode_all(&done).expect("accepted"),
            [Event::Complete(Completion::default())]
        );
    }
    // No `:message-type`: a protocol error.
    let untyped = frame(&[(":event-type", "PayloadChunk")], b"x");
    assert_eq!(
        decode_all(&untyped),
        Err(DecodeError::MissingHeader(":message-type"))
    );
    // InvokeComplete that is not JSON.
    let bad = frame(
        &[
            (":message-type", "event"),
            (":event-type", "InvokeComplete"),
        ],
        b"nope",
    );
    assert!(matches!(
        decode_all(&bad),
        Err(DecodeError::InvalidCompletion(_))
    ));
}
