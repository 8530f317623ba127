//! Protocol fuzzing on stable Rust: seeded, mutated frontend byte streams (see
//! `fuzz/generate.rs`) through pgate's decoders in process, and through a running pgate in
//! front of a real PostgreSQL and in front of a scripted server. No input may panic, hang a
//! connection past its deadline, or leak a server.
//!
//! `cargo test --test fuzz` runs a seeded slice of about 10^5 inputs in all. The seed is
//! `PGATE_FUZZ_SEED`; `PGATE_FUZZ_CASES` scales every layer (100000 is the default total).
//! The long run, 10^7 inputs, in the background:
//!
//! ```text
//! PGATE_FUZZ_CASES=10000000 PGATE_FUZZ_SEED=$RANDOM nohup cargo test --release --test fuzz \
//!     -- --include-ignored --nocapture > fuzz.log 2>&1 &
//! ```

mod common;
#[path = "fuzz/decoders.rs"]
mod decoders;
#[path = "fuzz/generate.rs"]
mod generate;

use std::time::Instant;

use generate::{Gen, share};

/// Runs `cases` in-process cases from `seed`; each case has its own seed, printed when it
/// panics, so it can be replayed alone.
fn in_process(cases: usize, seed: u64) -> decoders::Reached {
    let mut reached = decoders::Reached::default();
    for case in 0..cases as u64 {
        let case_seed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(case);
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one_case(case_seed, &mut reached)));
        if let Err(e) = run {
            panic!("case {case} (PGATE_FUZZ_REPLAY={case_seed}) panicked: {e:?}");
        }
    }
    reached
}

fn one_case(case_seed: u64, reached: &mut decoders::Reached) {
    let mut g = Gen::new(case_seed);
    if g.chance(0.3) {
        let mut pieces = vec![g.startup_packet("dave", "akko")];
        if g.chance(0.5) {
            pieces.insert(0, generate::ssl_request());
        }
        pieces.extend((0..g.below(3)).map(|_| g.password_message()));
        let mutations = g.below(4);
        g.mutate(&mut pieces, mutations);
        decoders::startup_case(&mut g, &pieces, reached);
    } else {
        let n = 1 + g.below(8);
        let mut pieces = g.pipeline(n);
        if g.chance(0.2) {
            pieces.push(g.password_message());
        }
        let mutations = g.below(4);
        g.mutate(&mut pieces, mutations);
        let writes = g.split(&pieces);
        decoders::session_case(&mut g, &writes, reached);
    }
}

#[test]
fn decoders_never_panic_on_mutated_streams() {
    let (cases, seed) = share(90_000);
    if let Some(replay) = std::env::var("PGATE_FUZZ_REPLAY").ok().and_then(|v| v.parse().ok()) {
        return one_case(replay, &mut decoders::Reached::default());
    }
    let started = Instant::now();
    let reached = in_process(cases, seed);
    let took = started.elapsed();
    eprintln!(
        "{cases} in-process cases (seed {seed}) in {took:.1?}: {:.0} cases/s; {reached:?}",
        cases as f64 / took.as_secs_f64()
    );
    // The run must reach the decoders, not stop at the first bad header every time.
    assert!(reached.frames > cases as u64, "{reached:?}");
    assert!(reached.decoded_ok > cases as u64 / 2, "{reached:?}");
    assert!(reached.startup_packets > cases as u64 / 5, "{reached:?}");
    assert!(reached.classified > 0 && reached.scram > 0, "{reached:?}");
}
