//! Seeded random numbers. Every random draw in optlab comes from a [`ChaCha8Rng`] built here, so the same seed
//! gives the same bits on every machine.

use rand::SeedableRng;
pub use rand_chacha::ChaCha8Rng as Rng;

/// Independent streams of one seed, by purpose.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// Parameter initialisation.
    Init = 1,
    /// Train/validation split.
    Split = 2,
    /// Shuffling of epoch `e` (the epoch is mixed in by [`rng_for`]).
    Shuffle = 3,
    /// Synthetic data generation.
    Data = 4,
    /// Probes of estimators (Hutchinson, SLQ, ...).
    Probe = 5,
}

/// The generator for `(seed, stream, index)`: e.g. the shuffle of epoch 7 is `rng_for(seed, Shuffle, 7)`.
pub fn rng_for(seed: u64, stream: Stream, index: u64) -> Rng {
    let mut r = Rng::seed_from_u64(seed);
    r.set_stream(((stream as u64) << 48) ^ index);
    r
}

/// A uniformly random permutation of `0..n` (Fisher-Yates).
pub fn permutation(n: usize, rng: &mut Rng) -> Vec<usize> {
    use rand::seq::SliceRandom;
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(rng);
    idx
}

/// A standard normal draw (Box-Muller, so the bits do not depend on rand_distr's version).
pub fn normal(rng: &mut Rng) -> f64 {
    use rand::Rng as _;
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}
