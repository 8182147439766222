//! Property tests of the SignalR codec: no panic on any input, framing that
//! does not depend on how the bytes are split, a bounded buffer.
//!
//! CI runs a modest number of cases. The long run (one million inputs per
//! property) is `#[ignore]`d:
//! `PROPTEST_CASES=1000000 cargo test --release --no-default-features --test events_codec -- --ignored`

use proptest::prelude::*;
use safeguard_sdk::events::signalr::{
    parse_handshake_response, FrameReader, Message, NegotiateResponse, ProtocolError,
    RECORD_SEPARATOR,
};
use safeguard_sdk::events::Event;
use serde_json::{json, Value};

/// Feeds every codec entry point with `data` split at `cuts`; must not panic.
fn exercise(data: &[u8], cuts: &[usize], limit: usize) {
    let _ = NegotiateResponse::parse(data).map(|n| n.connection_key().len());
    let _ = parse_handshake_response(data);
    let mut reader = FrameReader::new(limit);
    let mut start = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.sort_unstable();
    points.push(data.len());
    for p in points {
        let chunk = &data[start..p.max(start)];
        start = p.max(start);
        match reader.push(chunk) {
            Ok(records) => {
                for r in records {
                    assert!(r.len() <= limit);
                    assert!(!r.contains(&RECORD_SEPARATOR));
                    if let Ok(Message::Invocation {
                        target, arguments, ..
                    }) = Message::parse(&r)
                    {
                        let _ = Event::from_invocation(&target, &arguments);
                    }
                }
            }
            Err(ProtocolError::FrameTooLarge { size, limit: l }) => {
                assert!(size > l);
                assert_eq!(reader.pending(), 0);
            }
            Err(other) => panic!("push only fails with FrameTooLarge, got {other}"),
        }
        assert!(reader.pending() <= limit);
    }
}

/// Bytes that look like SignalR traffic: JSON fragments, separators, junk.
fn signalr_like() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"{\"type\":1,\"target\":\"NotifyEventAsync\",\"arguments\":[".to_vec()),
        Just(b"{\"Name\":\"UserCreated\",\"Data\":{\"EventName\":\"X\"}}".to_vec()),
        Just(b"{\"Name\":12,\"Data\":{\"EventName\":\"AssetCreated\"}}".to_vec()),
        Just(b"]}".to_vec()),
        Just(b"{\"type\":6}".to_vec()),
        Just(b"{\"type\":7,\"error\":\"x\",\"allowReconnect\":true}".to_vec()),
        Just(b"{}".to_vec()),
        Just(vec![RECORD_SEPARATOR]),
        Just(b"\"\\u001e\"".to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
        "[ -~]{0,12}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|v| v.concat())
}

/// A random JSON value of limited depth.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[A-Za-z]{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::Ping),
        (proptest::option::of(".{0,10}"), any::<bool>()).prop_map(|(error, allow_reconnect)| {
            Message::Close {
                error: error.filter(|e| !e.is_empty()),
                allow_reconnect,
            }
        }),
        (
            proptest::option::of("[a-z0-9]{1,4}"),
            ".{0,12}",
            prop::collection::vec(json_value(), 0..3)
        )
            .prop_map(|(invocation_id, target, arguments)| Message::Invocation {
                invocation_id,
                target,
                arguments,
            }),
        (2u64..6).prop_map(|kind| Message::Other { kind }),
    ]
}

fn properties(cases: u32, body: impl Fn(&mut proptest::test_runner::TestRunner)) {
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    body(&mut runner);
}

fn run_all(cases: u32) {
    properties(cases, |runner| {
        runner
            .run(
                &(
                    prop::collection::vec(any::<u8>(), 0..256),
                    prop::collection::vec(any::<usize>(), 0..6),
                    1usize..300,
                ),
                |(data, cuts, limit)| {
                    exercise(&data, &cuts, limit);
                    Ok(())
                },
            )
            .unwrap();
    });
    properties(cases, |runner| {
        runner
            .run(
                &(
                    signalr_like(),
                    prop::collection::vec(any::<usize>(), 0..6),
                    8usize..400,
                ),
                |(data, cuts, limit)| {
                    exercise(&data, &cuts, limit);
                    Ok(())
                },
            )
            .unwrap();
    });
    // Encoded messages survive any split and parse back to themselves.
    properties(cases, |runner| {
        runner
            .run(
                &(
                    prop::collection::vec(message(), 1..5),
                    prop::collection::vec(any::<usize>(), 0..8),
                ),
                |(messages, cuts)| {
                    let bytes: Vec<u8> = messages.iter().flat_map(Message::encode).collect();
                    let mut reader = FrameReader::new(bytes.len().max(1));
                    let mut points: Vec<usize> =
                        cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
                    points.sort_unstable();
                    points.push(bytes.len());
                    let mut start = 0;
                    let mut records = Vec::new();
                    for p in points {
                        records.extend(reader.push(&bytes[start..p]).unwrap());
                        start = p;
                    }
                    prop_assert_eq!(records.len(), messages.len());
                    for (r, m) in records.iter().zip(&messages) {
                        let parsed = Message::parse(r).unwrap();
                        // Any JSON arguments give events without a panic.
                        if let Message::Invocation { arguments, .. } = &parsed {
                            let events = Event::from_invocation("NotifyEventAsync", arguments);
                            prop_assert!(events.len() <= arguments.len());
                        }
                        // JSON numbers may not round-trip bit for bit (floats).
                        if let (
                            Message::Invocation { target: a, .. },
                            Message::Invocation { target: b, .. },
                        ) = (&parsed, m)
                        {
                            prop_assert_eq!(a, b);
                        } else {
                            prop_assert_eq!(&parsed, m);
                        }
                    }
                    prop_assert_eq!(reader.pending(), 0);
                    Ok(())
                },
            )
            .unwrap();
    });
}

#[test]
fn codec_never_panics_and_frames_independently_of_splits() {
    run_all(2_000);
}

/// The long run: `PROPTEST_CASES` inputs per property (default one million).
#[test]
#[ignore]
fn codec_fuzz_one_million() {
    let cases: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let started = std::time::Instant::now();
    run_all(cases);
    eprintln!(
        "{} inputs ({} per property x 3) without a panic in {:?}",
        cases as u64 * 3,
        cases,
        started.elapsed()
    );
}
