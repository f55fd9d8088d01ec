//! Fuzzing under `cargo test` (feature `test-util`): a runner bounded by a case count and a
//! time budget, whichever comes first, and the input generators the fuzz targets share, raw
//! (random bytes and text) and structure-aware (mutations of valid inputs, protobuf-shaped
//! messages), so that parsers are driven past their first check.
//!
//! Budget: `SIGNET_FUZZ_CASES` (default 100000) and `SIGNET_FUZZ_SECONDS` (default 10) per
//! target; `SIGNET_FUZZ_SEED` replays a run (the seed is printed with each figure).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRng, TestRunner};

/// Cases and seconds each target may use.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// At most this many cases.
    pub cases: u64,
    /// At most this long.
    pub time: Duration,
}

impl Budget {
    /// `SIGNET_FUZZ_CASES` and `SIGNET_FUZZ_SECONDS`, defaulting to 100000 cases or 10 s.
    pub fn from_env() -> Self {
        let var = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(default)
        };
        Self {
            cases: var("SIGNET_FUZZ_CASES", 100_000),
            time: Duration::from_secs(var("SIGNET_FUZZ_SECONDS", 10)),
        }
    }
}

/// What one target ran.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    /// Cases run, all passing.
    pub cases: u64,
    /// Wall time spent.
    pub elapsed: Duration,
    /// The seed the run used.
    pub seed: u64,
}

/// Runs `test` on values of `strategy` until the budget is spent and returns the figure
/// (also printed, `fuzz <name>: N cases in S s, seed X, 0 failures`). A case that panics or
/// returns an error is shrunk to a minimal input and the target panics with it.
pub fn run<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), String>) -> Report
where
    S: Strategy,
    S::Value: Debug,
{
    run_with(name, Budget::from_env(), strategy, test)
}

/// [`run`] with an explicit budget.
pub fn run_with<S>(
    name: &str,
    budget: Budget,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), String>,
) -> Report
where
    S: Strategy,
    S::Value: Debug,
{
    let seed = std::env::var("SIGNET_FUZZ_SEED")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        // A fresh seed each run, from the standard library's randomly keyed hasher.
        .unwrap_or_else(|| RandomState::new().hash_one(name));
    let mut seed_bytes = [0u8; 32];
    for chunk in seed_bytes.chunks_mut(8) {
        chunk.copy_from_slice(&seed.to_le_bytes());
    }
    let config = Config {
        failure_persistence: None,
        max_shrink_time: 60_000,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let start = Instant::now();
    let mut cases = 0;
    while cases < budget.cases && start.elapsed() < budget.time {
        let tree = match strategy.new_tree(&mut runner) {
            Ok(tree) => tree,
            Err(why) => panic!("fuzz {name}: no input could be generated: {why}"),
        };
        match runner.run_one(tree, |v| test(v).map_err(TestCaseError::fail)) {
            Ok(_) => cases += 1,
            Err(TestError::Fail(why, input)) => panic!(
                "fuzz {name}: case {cases} failed (seed {seed}): {why}\nminimal input: {input:?}"
            ),
            Err(TestError::Abort(why)) => panic!("fuzz {name}: aborted (seed {seed}): {why}"),
        }
    }
    let report = Report {
        cases,
        elapsed: start.elapsed(),
        seed,
    };
    println!(
        "fuzz {name}: {cases} cases in {:.1} s, seed {seed}, 0 failures",
        report.elapsed.as_secs_f64()
    );
    report
}

/// How a target's cases ended (`ok`, or the first words of each error), to show that the
/// inputs reach past the first check; printed as `fuzz <name> outcomes: key=count ...`.
#[derive(Debug, Default)]
pub struct Outcomes(Mutex<BTreeMap<String, u64>>);

impl Outcomes {
    /// Counts a success, or an error by its first `words` words.
    pub fn add<E: std::fmt::Display>(&self, result: &Result<impl Sized, E>, words: usize) {
        match result {
            Ok(_) => self.add_key("ok".to_owned()),
            Err(e) => self.add_error(&e.to_string(), words),
        }
    }

    /// Counts an error by the first `words` words of its text.
    pub fn add_error(&self, text: &str, words: usize) {
        self.add_key(
            text.split_whitespace()
                .take(words)
                .collect::<Vec<_>>()
                .join(" "),
        );
    }

    fn add_key(&self, key: String) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(key).or_default() += 1;
        }
    }

    /// Prints the counts, most frequent first (at most 12).
    pub fn print(&self, name: &str) {
        let Ok(m) = self.0.lock() else { return };
        let mut all: Vec<(&String, &u64)> = m.iter().collect();
        all.sort_by(|a, b| b.1.cmp(a.1));
        let line: Vec<String> = all
            .iter()
            .take(12)
            .map(|(k, n)| format!("[{k}]={n}"))
            .collect();
        println!("fuzz {name} outcomes: {}", line.join(" "));
    }

    /// The count of successes.
    pub fn ok(&self) -> u64 {
        self.0
            .lock()
            .map_or(0, |m| m.get("ok").copied().unwrap_or(0))
    }
}

/// Any bytes, up to `max` long.
pub fn raw_bytes(max: usize) -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max).boxed()
}

/// Byte values that parsers of lengths and tags trip on.
const EDGE_BYTES: [u8; 10] = [0x00, 0x01, 0x7f, 0x80, 0x81, 0x82, 0x84, 0xfe, 0xff, 0x30];

/// One change to a valid input.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    SetEdge(Index, Index),
    Insert(Index, Vec<u8>),
    InsertToken(Index, Index),
    ReplaceWithToken(Index, usize, Index),
    Remove(Index, usize),
    Duplicate(Index, usize),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, e)| Mutation::SetEdge(i, e)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, t)| Mutation::InsertToken(i, t)),
        (any::<Index>(), 1usize..16, any::<Index>())
            .prop_map(|(i, n, t)| Mutation::ReplaceWithToken(i, n, t)),
        (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Remove(i, n)),
        (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut data: Vec<u8>, mutations: &[Mutation], tokens: &[&[u8]]) -> Vec<u8> {
    let token = |t: &Index| -> &[u8] {
        if tokens.is_empty() {
            b""
        } else {
            tokens[t.index(tokens.len())]
        }
    };
    for m in mutations {
        let len = data.len();
        // A position in the data, or 0 when it is empty (insertions may append).
        let at = |i: &Index| if len == 0 { 0 } else { i.index(len) };
        let at_end = |i: &Index| i.index(len + 1);
        match m {
            Mutation::FlipBit(i, bit) if len > 0 => data[at(i)] ^= 1 << bit,
            Mutation::SetByte(i, b) if len > 0 => data[at(i)] = *b,
            Mutation::SetEdge(i, e) if len > 0 => {
                data[at(i)] = EDGE_BYTES[e.index(EDGE_BYTES.len())];
            }
            Mutation::Insert(i, bytes) => {
                let p = at_end(i);
                data.splice(p..p, bytes.iter().copied());
            }
            Mutation::InsertToken(i, t) => {
                let p = at_end(i);
                data.splice(p..p, token(t).iter().copied());
            }
            Mutation::ReplaceWithToken(i, n, t) => {
                let p = at_end(i);
                let end = (p + n).min(len);
                data.splice(p..end, token(t).iter().copied());
            }
            Mutation::Remove(i, n) if len > 0 => {
                let p = at(i);
                data.drain(p..(p + n).min(len));
            }
            Mutation::Duplicate(i, n) if len > 0 => {
                let p = at(i);
                let chunk = data[p..(p + n).min(len)].to_vec();
                data.splice(p..p, chunk);
            }
            Mutation::Truncate(i) => data.truncate(at_end(i)),
            _ => {}
        }
    }
    data
}

/// A valid input from `seeds` with 1 to 7 mutations: bit flips, edge bytes, insertions of
/// random bytes or of `tokens` (a format's syntax: delimiters, keywords, length prefixes),
/// removals, duplications, truncation.
pub fn mutated(seeds: Vec<Vec<u8>>, tokens: &'static [&'static [u8]]) -> BoxedStrategy<Vec<u8>> {
    assert!(!seeds.is_empty(), "mutated: no seed");
    (
        prop::sample::select(seeds),
        prop::collection::vec(mutation(), 1..8),
    )
        .prop_map(move |(seed, ms)| apply(seed, &ms, tokens))
        .boxed()
}

/// Raw bytes (one case in four) or mutated seeds (the rest), and the seeds themselves now
/// and then.
pub fn raw_or_mutated(
    seeds: Vec<Vec<u8>>,
    tokens: &'static [&'static [u8]],
    max_raw: usize,
) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        1 => raw_bytes(max_raw),
        1 => prop::sample::select(seeds.clone()),
        6 => mutated(seeds, tokens),
    ]
    .boxed()
}

/// Text for text parsers: [`raw_or_mutated`] bytes read as UTF-8 (invalid sequences
/// replaced), or any string.
pub fn text(seeds: Vec<String>, tokens: &'static [&'static [u8]]) -> BoxedStrategy<String> {
    let seeds = seeds.into_iter().map(String::into_bytes).collect();
    prop_oneof![
        1 => any::<String>(),
        7 => raw_or_mutated(seeds, tokens, 256)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
    .boxed()
}

/// Strings of the SPIFFE ID grammar and just outside it: scheme variants, trust domains and
/// path segments over a set of characters that includes the forbidden ones.
pub fn spiffe_id_text() -> BoxedStrategy<String> {
    let scheme = prop::sample::select(vec![
        "spiffe://",
        "SPIFFE://",
        "spiffe:/",
        "spiffe:",
        "http://",
        "",
    ]);
    let td = "[a-z0-9._-]{0,12}|[A-Za-z0-9.%:@_-]{0,8}|\\PC{0,6}";
    let segment = "[a-zA-Z0-9._-]{0,8}|\\.|\\.\\.|[%?#:@ ]{1,2}|\\PC{0,4}";
    (
        scheme,
        td,
        prop::collection::vec(segment, 0..5),
        prop::sample::select(vec!["", "/", "?q", "#f"]),
    )
        .prop_map(|(s, td, segs, tail)| {
            let mut id = format!("{s}{td}");
            for seg in segs {
                id.push('/');
                id.push_str(&seg);
            }
            id.push_str(tail);
            id
        })
        .boxed()
}

/// Strings that protobuf string fields in this project's messages carry when valid, for
/// [`proto_message`] to put in its length-delimited fields.
const PROTO_STRINGS: [&str; 16] = [
    "",
    "example.org",
    "/workload",
    "spiffe://example.org/workload",
    "spiffe://example.org/spire/agent/join_token/x",
    "spiffe://example.org",
    "unix",
    "uid:0",
    "unix:uid:0",
    "join_token",
    "x509-svid",
    "https_spiffe",
    "default",
    "ROOTCA",
    "eyJhbGciOiJFUzI1NiJ9.e30.AA",
    "spiffe://other.org/x",
];

/// One field on the protobuf wire: tag, wire type, value.
fn proto_field(inner: BoxedStrategy<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let tag = prop_oneof![8 => 1u32..16, 1 => 16u32..2048, 1 => any::<u32>()];
    let value = prop_oneof![
        // varint (valid, and now and then a huge or overlong one)
        3 => any::<u64>().prop_map(|v| (0u8, varint(v))),
        1 => prop::sample::select(vec![0u64, 1, 2, 3, u32::MAX as u64, u64::MAX])
            .prop_map(|v| (0u8, varint(v))),
        1 => Just((0u8, vec![0xff; 11])),
        // fixed64 / fixed32
        1 => any::<[u8; 8]>().prop_map(|b| (1u8, b.to_vec())),
        1 => any::<[u8; 4]>().prop_map(|b| (5u8, b.to_vec())),
        // length-delimited: a known string, random bytes, a nested message
        4 => prop::sample::select(PROTO_STRINGS.to_vec())
            .prop_map(|s| (2u8, len_delimited(s.as_bytes()))),
        2 => raw_bytes(48).prop_map(|b| (2u8, len_delimited(&b))),
        3 => inner.prop_map(|b| (2u8, len_delimited(&b))),
        // a length prefix longer than what follows; group and reserved wire types
        1 => (1u64..1 << 32, raw_bytes(8)).prop_map(|(n, b)| {
            let mut v = varint(n);
            v.extend(b);
            (2u8, v)
        }),
        1 => prop::sample::select(vec![3u8, 4, 6, 7]).prop_map(|w| (w, Vec::new())),
    ];
    (tag, value).prop_map(|(tag, (wire, body))| {
        let mut out = varint(u64::from(tag) << 3 | u64::from(wire));
        out.extend(body);
        out
    })
}

/// Protobuf-shaped messages: up to 8 fields of every wire type, with strings this project's
/// messages use and nested messages up to 3 deep, so that decoders accept most of them and
/// the handlers behind them see unusual field combinations.
pub fn proto_message() -> BoxedStrategy<Vec<u8>> {
    let leaf = prop::collection::vec(proto_field(raw_bytes(16)), 0..4)
        .prop_map(|fs| fs.concat())
        .boxed();
    leaf.prop_recursive(3, 24, 8, |inner| {
        prop::collection::vec(proto_field(inner), 0..8)
            .prop_map(|fs| fs.concat())
            .boxed()
    })
    .boxed()
}

/// `v` as a protobuf varint.
pub fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn len_delimited(b: &[u8]) -> Vec<u8> {
    let mut out = varint(b.len() as u64);
    out.extend_from_slice(b);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree;

    #[test]
    fn varints_are_protobufs() {
        assert_eq!(varint(0), [0]);
        assert_eq!(varint(300), [0xac, 0x02]);
        assert_eq!(varint(u64::MAX).len(), 10);
    }

    #[test]
    fn the_runner_stops_at_the_case_count_and_shrinks_failures() {
        let budget = Budget {
            cases: 50,
            time: Duration::from_secs(60),
        };
        let report = run_with("count", budget, raw_bytes(8), |_| Ok(()));
        assert_eq!(report.cases, 50);

        let failed = std::panic::catch_unwind(|| {
            run_with("shrink", budget, 0u32..1000, |v| {
                if v >= 10 {
                    Err(format!("{v} too big"))
                } else {
                    Ok(())
                }
            })
        });
        let Err(payload) = failed else {
            panic!("a failing target passed")
        };
        let msg = payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(msg.contains("minimal input: 10"), "{msg}");
    }

    #[test]
    fn mutations_change_the_seed_and_keep_within_reach_of_it() {
        let seed = b"spiffe://example.org/workload".to_vec();
        let s = mutated(vec![seed.clone()], &[b"/", b"%"]);
        let mut runner = TestRunner::deterministic();
        let mut changed = 0;
        for _ in 0..200 {
            let Ok(tree) = s.new_tree(&mut runner) else {
                panic!("no tree")
            };
            if tree.current() != seed {
                changed += 1;
            }
        }
        assert!(changed > 150, "{changed} of 200 changed");
    }
}
