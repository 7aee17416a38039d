//! Seeded random numbers. Every random draw in optlab comes from a `ChaCha8Rng` built here, so the same seed
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
    /// Stochastic solvers (CBO particles and noise, ...); the index is the run.
    Solver = 6,
    /// Poisson sampling of private batches; the index is the step.
    Privacy = 7,
    /// Gaussian noise of private gradients; the index is the step.
    PrivacyNoise = 8,
    /// Trajectories of on-policy methods (P16); the index is the iteration.
    Rollout = 9,
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

/// Standard normal draws by Marsaglia's polar method, two per accepted pair (the second is kept for the next
/// call): about twice as fast as [`normal`] for solvers that draw millions. Deterministic given the generator.
#[derive(Debug, Clone, Default)]
pub struct Normals {
    spare: Option<f64>,
}

impl Normals {
    /// The next draw.
    pub fn next(&mut self, rng: &mut Rng) -> f64 {
        use rand::Rng as _;
        if let Some(z) = self.spare.take() {
            return z;
        }
        loop {
            let u: f64 = 2.0 * rng.gen::<f64>() - 1.0;
            let v: f64 = 2.0 * rng.gen::<f64>() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                let k = (-2.0 * s.ln() / s).sqrt();
                self.spare = Some(v * k);
                return u * k;
            }
        }
    }
}

/// Boxes of the ziggurat.
const ZIG_BOXES: usize = 128;
/// The start of the tail and the area of each box (Marsaglia & Tsang 2000, 128 boxes).
const ZIG_R: f64 = 3.442619855899;
const ZIG_V: f64 = 9.91256303526217e-3;

/// The box edges x₀ > x₁ = R > … > x₁₂₈ = 0 and the ratios x_{i+1}/x_i (Doornik 2005's ZIGNOR layout).
struct ZigTables {
    x: [f64; ZIG_BOXES + 1],
    ratio: [f64; ZIG_BOXES],
}

fn zig_tables() -> &'static ZigTables {
    static T: std::sync::OnceLock<ZigTables> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        let mut x = [0.0; ZIG_BOXES + 1];
        let mut f = (-0.5 * ZIG_R * ZIG_R).exp();
        x[0] = ZIG_V / f;
        x[1] = ZIG_R;
        for i in 2..ZIG_BOXES {
            x[i] = (-2.0 * (ZIG_V / x[i - 1] + f).ln()).sqrt();
            f = (-0.5 * x[i] * x[i]).exp();
        }
        let mut ratio = [0.0; ZIG_BOXES];
        for i in 0..ZIG_BOXES {
            ratio[i] = x[i + 1] / x[i];
        }
        ZigTables { x, ratio }
    })
}

/// xoshiro256++ (Blackman & Vigna 2019): a small, fast generator (about a nanosecond per 64 bits, several times
/// faster than [`Rng`]) for simulated data streams whose cost would otherwise be the generator's, such as the
/// online loss sequences of [`crate::online::sea`]. Seeded from `(seed, stream, index)` by SplitMix64, so the
/// same triple gives the same bits everywhere; not for anything that must be unpredictable.
#[derive(Debug, Clone)]
pub struct Fast {
    s: [u64; 4],
}

impl Fast {
    /// The generator for `(seed, stream, index)`.
    pub fn for_stream(seed: u64, stream: Stream, index: u64) -> Fast {
        let mut z = seed ^ ((stream as u64) << 48) ^ index.rotate_left(17) ^ 0x6a09_e667_f3bc_c909;
        let mut next = || {
            z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            x ^ (x >> 31)
        };
        Fast {
            s: [next(), next(), next(), next()],
        }
    }
}

impl rand::RngCore for Fast {
    #[inline]
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// A uniform draw in [0, 1) from 53 random bits.
fn unit<R: rand::RngCore>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal draw by the ziggurat method (Marsaglia & Tsang 2000, in Doornik's floating-point form):
/// one 64-bit draw and a comparison for 99% of the draws, several times faster than [`Normals`]. For the bulk
/// noise of private gradients. Deterministic given the generator.
pub fn ziggurat<R: rand::RngCore>(rng: &mut R) -> f64 {
    zig_draw(zig_tables(), rng)
}

/// Fills `out` with [`ziggurat`] draws (the same values, in order), looking the tables up once.
pub fn fill_normals<R: rand::RngCore>(rng: &mut R, out: &mut [f64]) {
    let t = zig_tables();
    for v in out.iter_mut() {
        *v = zig_draw(t, rng);
    }
}

/// Fills `out` with `scale` times standard normal draws, by the same ziggurat as [`ziggurat`] but a block at a
/// time: each block's first draws are taken together and tested for the rectangle (99% of them) in one
/// branch-free pass, and each rejected draw then finishes its own wedge or tail test from fresh bits. f64 output
/// takes 64 bits a draw and has exactly the ziggurat's distribution; f32 output takes 32 (u from 24 bits, as
/// numpy's f32 ziggurat), so its values lie on a grid of about 2⁻²³ times the box edge before rounding to f32.
/// The draws are independent; the stream is consumed in another order than by repeated [`ziggurat`] calls, so
/// the values differ from those. Several times faster, for bulk noise such as that of private gradients.
pub fn fill_scaled_normals<R, T>(rng: &mut R, scale: f64, out: &mut [T])
where
    R: rand::RngCore,
    T: num_traits::Float,
{
    const BLOCK: usize = 64;
    // f32 output takes 32 bits per draw (7 for the box, 24 for u: as many as an f32 holds), as numpy's f32
    // ziggurat does; f64 output takes 64.
    let narrow = std::mem::size_of::<T>() <= 4;
    let t = zig_tables();
    let mut bits = [0u64; BLOCK];
    let mut draw = [0f64; BLOCK];
    for chunk in out.chunks_mut(BLOCK) {
        let bits = &mut bits[..chunk.len()];
        if narrow {
            for pair in bits.chunks_mut(2) {
                let b = rng.next_u64();
                pair[0] = b & 0xffff_ffff;
                if let Some(hi) = pair.get_mut(1) {
                    *hi = b >> 32;
                }
            }
        } else {
            for b in bits.iter_mut() {
                *b = rng.next_u64();
            }
        }
        let mut rejected = 0u64;
        for (j, (&b, d)) in bits.iter().zip(draw.iter_mut()).enumerate() {
            let (u, i) = if narrow { zig_split32(b) } else { zig_split(b) };
            *d = u * t.x[i];
            rejected |= u64::from(u.abs() >= t.ratio[i]) << j;
        }
        while rejected != 0 {
            let j = rejected.trailing_zeros() as usize;
            rejected &= rejected - 1;
            let (u, i) = if narrow {
                zig_split32(bits[j])
            } else {
                zig_split(bits[j])
            };
            draw[j] = zig_edge(t, rng, u, i).unwrap_or_else(|| zig_draw(t, rng));
        }
        for (o, d) in chunk.iter_mut().zip(&draw) {
            let v = scale * d;
            // Beyond T's range: the infinity of its sign (as `as` casts do).
            *o = T::from(v).unwrap_or_else(|| {
                if v < 0.0 {
                    T::neg_infinity()
                } else {
                    T::infinity()
                }
            });
        }
    }
}

/// The uniform u in [-1, 1) (upper 53 bits) and the box index (lowest bits) of one 64-bit draw.
#[inline(always)]
fn zig_split(bits: u64) -> (f64, usize) {
    let i = (bits & (ZIG_BOXES as u64 - 1)) as usize;
    let u = 2.0 * ((bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)) - 1.0;
    (u, i)
}

/// [`zig_split`] of a 32-bit draw: u from the upper 24 bits.
#[inline(always)]
fn zig_split32(bits: u64) -> (f64, usize) {
    let i = (bits & (ZIG_BOXES as u64 - 1)) as usize;
    let u = 2.0 * (((bits >> 8) & 0xff_ffff) as f64 * (1.0 / (1u64 << 24) as f64)) - 1.0;
    (u, i)
}

#[inline(always)]
fn zig_draw<R: rand::RngCore>(t: &ZigTables, rng: &mut R) -> f64 {
    loop {
        let bits = rng.next_u64();
        let (u, i) = zig_split(bits);
        if u.abs() < t.ratio[i] {
            return u * t.x[i];
        }
        if let Some(v) = zig_edge(t, rng, u, i) {
            return v;
        }
    }
}

/// The rest of one ziggurat attempt whose u and box i missed the rectangle: the tail beyond R for box 0
/// (Marsaglia 1964, always accepts), otherwise the wedge test (`None`: reject, draw again).
fn zig_edge<R: rand::RngCore>(t: &ZigTables, rng: &mut R, u: f64, i: usize) -> Option<f64> {
    if i == 0 {
        loop {
            let x = (1.0 - unit(rng)).ln() / ZIG_R;
            let y = (1.0 - unit(rng)).ln();
            if -2.0 * y >= x * x {
                return Some(if u < 0.0 { x - ZIG_R } else { ZIG_R - x });
            }
        }
    }
    let x = u * t.x[i];
    let f0 = (-0.5 * (t.x[i] * t.x[i] - x * x)).exp();
    let f1 = (-0.5 * (t.x[i + 1] * t.x[i + 1] - x * x)).exp();
    (f1 + unit(rng) * (f0 - f1) < 1.0).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference outputs of xoshiro256++ from the state [1, 2, 3, 4] (Vigna's C code, as in rand_xoshiro's tests).
    #[test]
    fn xoshiro256pp_matches_the_reference() {
        use rand::RngCore;
        let mut r = Fast { s: [1, 2, 3, 4] };
        let want: [u64; 6] = [
            41943041,
            58720359,
            3588806011781223,
            3591011842654386,
            9228616714210784205,
            9973669472204895162,
        ];
        for w in want {
            assert_eq!(r.next_u64(), w);
        }
        let (mut a, mut b) = (
            Fast::for_stream(7, Stream::Data, 1),
            Fast::for_stream(7, Stream::Data, 2),
        );
        assert_ne!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn fill_normals_equals_one_draw_at_a_time() {
        let mut a = Fast::for_stream(1, Stream::Data, 0);
        let mut b = Fast::for_stream(1, Stream::Data, 0);
        let mut buf = vec![0.0; 1000];
        fill_normals(&mut a, &mut buf);
        for v in buf {
            assert_eq!(v.to_bits(), ziggurat(&mut b).to_bits());
        }
    }

    /// Moments and the CDF at a few points, the last two in the tail beyond R (each within 5 binomial
    /// standard deviations).
    fn assert_standard_normal(xs: &[f64]) {
        let n = xs.len();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let kurt = xs.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n as f64 / (var * var);
        assert!(mean.abs() < 0.005 && (var - 1.0).abs() < 0.005 && (kurt - 3.0).abs() < 0.03);
        for (at, p) in [
            (-2.0, 0.022750131948),
            (-0.5, 0.308537538726),
            (0.0, 0.5),
            (1.0, 0.841344746069),
            (3.5, 0.999767370921),
            (-3.6, 0.000159108590),
        ] {
            let got = xs.iter().filter(|&&x| x < at).count() as f64 / n as f64;
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            assert!(
                (got - p).abs() < 5.0 * sd + 1e-9,
                "P(z < {at}) = {got}, want {p}"
            );
        }
    }

    #[test]
    fn ziggurat_normals_have_the_normal_distribution() {
        let mut rng = rng_for(1, Stream::Probe, 0);
        let xs: Vec<f64> = (0..1_000_000).map(|_| ziggurat(&mut rng)).collect();
        assert_standard_normal(&xs);
    }

    /// The block-wise ziggurat: the same distribution (rejected draws finish their own wedge or tail test), the
    /// scale applied, a length that is not a multiple of the block; f32 output (32 bits a draw) likewise.
    #[test]
    fn block_normals_have_the_normal_distribution() {
        let mut rng = rng_for(2, Stream::Probe, 0);
        let mut xs = vec![0.0f64; 1_000_003];
        fill_scaled_normals(&mut rng, 1.0, &mut xs);
        assert_standard_normal(&xs);
        let mut narrow = vec![0.0f32; 1_000_003];
        fill_scaled_normals(&mut rng, 2.5, &mut narrow);
        let xs: Vec<f64> = narrow.iter().map(|&v| v as f64 / 2.5).collect();
        assert_standard_normal(&xs);
    }

    #[test]
    fn polar_normals_have_unit_moments() {
        let mut rng = rng_for(0, Stream::Probe, 0);
        let mut z = Normals::default();
        let n = 200_000;
        let xs: Vec<f64> = (0..n).map(|_| z.next(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        let kurt = xs.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / n as f64 / (var * var);
        assert!(mean.abs() < 0.01 && (var - 1.0).abs() < 0.01 && (kurt - 3.0).abs() < 0.05);
    }
}
