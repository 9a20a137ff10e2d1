//! A small mutation fuzzer that runs under `cargo test` on stable Rust, for
//! the decoders of hostile input (store objects, configuration, HTTP
//! requests). Not part of the engine's API.
//!
//! Each target starts from a seed corpus kept in the repository
//! (`fuzz-corpus/<target>/`, one input per file), derives inputs by stacking
//! random mutations (bit flips, boundary values, truncation, insertion,
//! deletion, duplication, splicing, fresh random bytes), and calls the target
//! on each. A panic in the target fails the run: the input is written to the
//! temporary directory and named in the panic message. The run is bounded by
//! iterations, not time, and deterministic for a seed:
//! `KLOSET_FUZZ_ITERS` (default [`DEFAULT_ITERATIONS`]) and `KLOSET_FUZZ_SEED`
//! (default: derived from the target name) change them.

use std::path::Path;
use std::time::{Duration, Instant};

/// Iterations per target when `KLOSET_FUZZ_ITERS` is not set: a few seconds
/// at most on a loaded machine.
pub const DEFAULT_ITERATIONS: u64 = 5_000;

/// What a run did.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Inputs the target was called with (corpus included).
    pub executions: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// A SplitMix64 generator: small, fast, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const INTERESTING: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xc0, 0xdc, 0xde, 0xff];
const INTERESTING_U32: [u32; 6] = [0, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 0x0010_0000];

fn mutate_once(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = input.len();
    match rng.below(9) {
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            input[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        2 => input.truncate(rng.below(len + 1)),
        3 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(32);
            let extra = rng.bytes(n);
            input.splice(at..at, extra);
        }
        4 if len > 0 => {
            let from = rng.below(len);
            let to = from + rng.below(len - from + 1);
            input.drain(from..to);
        }
        5 if len > 0 => {
            let from = rng.below(len);
            let to = from + rng.below((len - from).min(64) + 1);
            let copy = input[from..to].to_vec();
            let at = rng.below(len + 1);
            input.splice(at..at, copy);
        }
        6 if !corpus.is_empty() => {
            let other = &corpus[rng.below(corpus.len())];
            let keep = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            input.truncate(keep);
            input.extend_from_slice(&other[from..]);
        }
        7 if len >= 4 => {
            let at = rng.below(len - 3);
            let v = INTERESTING_U32[rng.below(INTERESTING_U32.len())];
            let bytes = if rng.below(2) == 0 {
                v.to_le_bytes()
            } else {
                v.to_be_bytes()
            };
            input[at..at + 4].copy_from_slice(&bytes);
        }
        _ => {
            let n = rng.below(257);
            *input = rng.bytes(n);
        }
    }
}

/// Reads every file of `dir` as one corpus input (sorted by name, so runs
/// are reproducible). A missing or empty directory is an error: a target
/// without seeds would fuzz nothing but random bytes.
pub fn load_corpus(dir: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    let corpus = names
        .iter()
        .map(std::fs::read)
        .collect::<std::io::Result<Vec<_>>>()?;
    if corpus.is_empty() {
        return Err(std::io::Error::other(format!(
            "the seed corpus {} is empty",
            dir.display()
        )));
    }
    Ok(corpus)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// Runs `target` on every corpus input, then on mutated inputs until
/// `KLOSET_FUZZ_ITERS` executions; panics (failing the test) when the target
/// panics, after saving the input. Prints the figures to standard error.
pub fn run(name: &str, corpus: &[Vec<u8>], mut target: impl FnMut(&[u8])) -> Stats {
    let iterations = env_u64("KLOSET_FUZZ_ITERS").unwrap_or(DEFAULT_ITERATIONS);
    let seed = env_u64("KLOSET_FUZZ_SEED").unwrap_or_else(|| {
        name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    });
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut executions = 0;
    let mut call = |input: &[u8], executions: &mut u64| {
        *executions += 1;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target(input)));
        if outcome.is_err() {
            let path =
                std::env::temp_dir().join(format!("kloset-fuzz-{name}-{seed}-{executions}.bin"));
            let saved = match std::fs::write(&path, input) {
                Ok(()) => path.display().to_string(),
                Err(e) => format!("(not saved: {e})"),
            };
            panic!(
                "fuzz target {name} panicked on input {saved} ({} bytes, seed {seed}, execution {executions})",
                input.len()
            );
        }
    };
    for input in corpus {
        call(input, &mut executions);
    }
    while executions < iterations {
        let mut input = if corpus.is_empty() {
            Vec::new()
        } else {
            corpus[rng.below(corpus.len())].clone()
        };
        for _ in 0..1 + rng.below(4) {
            mutate_once(&mut rng, &mut input, corpus);
        }
        call(&input, &mut executions);
    }
    let stats = Stats {
        executions,
        elapsed: started.elapsed(),
    };
    eprintln!(
        "fuzz {name}: {} executions in {:.1} s, 0 crashes (seed {seed})",
        stats.executions,
        stats.elapsed.as_secs_f64()
    );
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_target_fails_the_run() {
        let corpus = vec![b"seed".to_vec()];
        let caught = std::panic::catch_unwind(|| {
            run("selftest", &corpus, |input| {
                assert!(input.len() < 6, "long input");
            })
        });
        let err = caught.expect_err("the run must fail");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("fuzz target selftest panicked"), "{msg}");
    }

    #[test]
    fn mutations_reach_lengths_and_bytes_beyond_the_seed() {
        let corpus = vec![vec![0u8; 8]];
        let mut longest = 0;
        let mut nonzero = false;
        let stats = run("mutations", &corpus, |input| {
            longest = longest.max(input.len());
            nonzero |= input.iter().any(|&b| b != 0);
        });
        assert!(stats.executions >= 1);
        assert!(longest > 8 && nonzero, "{longest} {nonzero}");
    }
}
