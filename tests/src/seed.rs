//! Seeded randomness that a failing run prints and `SIGNOFF_TEST_SEED` replays.

use std::env;

use anyhow::{Context as _, Result};
use rand::SeedableRng as _;
use rand::rngs::StdRng;

/// Environment variable that fixes the seed of every randomized test.
pub const SEED_VAR: &str = "SIGNOFF_TEST_SEED";

/// A random generator for test `name`, seeded from `SIGNOFF_TEST_SEED` or at random; the
/// seed is printed so that a failure can be replayed.
pub fn seeded_rng(name: &str) -> Result<(u64, StdRng)> {
    let seed = match env::var(SEED_VAR) {
        Ok(text) => text
            .trim()
            .parse()
            .with_context(|| format!("{SEED_VAR}={text} is not a u64"))?,
        Err(_) => rand::random(),
    };
    eprintln!("{name}: seed {seed} (replay with {SEED_VAR}={seed})");
    Ok((seed, StdRng::seed_from_u64(seed)))
}
