//! Seeded synthetic data sets: two moons, spirals, a Gaussian mixture and linear regression.

use super::{Dataset, Target};
use crate::rng::{normal, rng_for, Rng, Stream};
use crate::{Error, Result};
use rand::Rng as _;
use std::f64::consts::PI;

fn check(n: usize, what: &str) -> Result<()> {
    if n == 0 || n > 100_000_000 {
        return Err(Error::invalid(format!(
            "{what}={n} must be between 1 and 100000000"
        )));
    }
    Ok(())
}

fn check_noise(noise: f64) -> Result<()> {
    if noise < 0.0 {
        return Err(Error::invalid(format!("noise={noise} must be >= 0")));
    }
    Ok(())
}

fn gen(seed: u64) -> Rng {
    rng_for(seed, Stream::Data, 0)
}

/// Two interleaving half circles (as scikit-learn's `make_moons`), `n` points, Gaussian noise of std `noise`.
pub fn two_moons(n: usize, noise: f64, seed: u64) -> Result<Dataset> {
    check(n, "n")?;
    check_noise(noise)?;
    let mut r = gen(seed);
    let (mut x, mut labels) = (Vec::with_capacity(2 * n), Vec::with_capacity(n));
    let n_out = n / 2;
    for i in 0..n {
        let (px, py, l) = if i < n_out {
            let t = PI * i as f64 / (n_out.max(2) - 1) as f64;
            (t.cos(), t.sin(), 0)
        } else {
            let j = i - n_out;
            let t = PI * j as f64 / ((n - n_out).max(2) - 1) as f64;
            (1.0 - t.cos(), 0.5 - t.sin(), 1)
        };
        x.push((px + noise * normal(&mut r)) as f32);
        x.push((py + noise * normal(&mut r)) as f32);
        labels.push(l);
    }
    Dataset::new(
        "moons",
        x,
        vec![2],
        Target::Classes {
            labels,
            n_classes: 2,
        },
    )
}

/// `classes` interleaved spiral arms of `n` points in total.
pub fn two_spirals(n: usize, classes: usize, noise: f64, seed: u64) -> Result<Dataset> {
    check(n, "n")?;
    check_noise(noise)?;
    if classes < 2 {
        return Err(Error::invalid(format!(
            "classes={classes} must be at least 2"
        )));
    }
    let mut r = gen(seed);
    let (mut x, mut labels) = (Vec::with_capacity(2 * n), Vec::with_capacity(n));
    for i in 0..n {
        let c = i % classes;
        let t: f64 = r.gen::<f64>();
        let radius = 0.1 + 0.9 * t;
        let angle = 3.0 * PI * t + 2.0 * PI * c as f64 / classes as f64;
        x.push((radius * angle.cos() + noise * 0.1 * normal(&mut r)) as f32);
        x.push((radius * angle.sin() + noise * 0.1 * normal(&mut r)) as f32);
        labels.push(c as u32);
    }
    Dataset::new(
        "spirals",
        x,
        vec![2],
        Target::Classes {
            labels,
            n_classes: classes,
        },
    )
}

/// A mixture of `classes` isotropic Gaussians in `dim` dimensions with unit-variance noise around centres drawn
/// from N(0, spread² · 4 I).
pub fn gaussian_mixture(
    n: usize,
    classes: usize,
    dim: usize,
    spread: f64,
    seed: u64,
) -> Result<Dataset> {
    check(n, "n")?;
    check(dim, "dim")?;
    if classes < 2 {
        return Err(Error::invalid(format!(
            "classes={classes} must be at least 2"
        )));
    }
    let mut r = gen(seed);
    let centres: Vec<f64> = (0..classes * dim)
        .map(|_| 2.0 * spread * normal(&mut r))
        .collect();
    let (mut x, mut labels) = (Vec::with_capacity(dim * n), Vec::with_capacity(n));
    for i in 0..n {
        let c = i % classes;
        for j in 0..dim {
            x.push((centres[c * dim + j] + normal(&mut r)) as f32);
        }
        labels.push(c as u32);
    }
    Dataset::new(
        "gaussians",
        x,
        vec![dim],
        Target::Classes {
            labels,
            n_classes: classes,
        },
    )
}

/// y = x·w + b + noise·N(0,1) with x ~ N(0, I), w ~ N(0, I), b ~ N(0, 1): a regression target of width 1.
pub fn linear_regression(n: usize, dim: usize, noise: f64, seed: u64) -> Result<Dataset> {
    check(n, "n")?;
    check(dim, "dim")?;
    check_noise(noise)?;
    let mut r = gen(seed);
    let w: Vec<f64> = (0..dim).map(|_| normal(&mut r)).collect();
    let b = normal(&mut r);
    let (mut x, mut y) = (Vec::with_capacity(dim * n), Vec::with_capacity(n));
    for _ in 0..n {
        let mut t = b;
        for wj in &w {
            let v = normal(&mut r);
            t += v * wj;
            x.push(v as f32);
        }
        y.push((t + noise * normal(&mut r)) as f32);
    }
    Dataset::new("linreg", x, vec![dim], Target::Values { y, dim: 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_shaped() {
        let a = two_moons(200, 0.1, 3).unwrap();
        assert_eq!(a, two_moons(200, 0.1, 3).unwrap());
        assert_ne!(a, two_moons(200, 0.1, 4).unwrap());
        assert_eq!((a.len(), a.feature_dim(), a.output_dim()), (200, 2, 2));
        let s = two_spirals(300, 3, 0.2, 0).unwrap();
        assert_eq!((s.len(), s.output_dim()), (300, 3));
        let g = gaussian_mixture(100, 4, 5, 1.0, 0).unwrap();
        assert_eq!((g.len(), g.feature_dim(), g.output_dim()), (100, 5, 4));
        let l = linear_regression(50, 3, 0.0, 0).unwrap();
        assert_eq!((l.len(), l.feature_dim(), l.output_dim()), (50, 3, 1));
        assert!(two_moons(0, 0.1, 0).is_err());
        assert!(two_moons(10, -1.0, 0).is_err());
        assert!(two_spirals(10, 1, 0.1, 0).is_err());
    }

    #[test]
    fn noiseless_linear_regression_is_exactly_linear() {
        // Without noise, y - y_0 is linear in x - x_0: three points determine consistency in 1-D.
        let l = linear_regression(3, 1, 0.0, 9).unwrap();
        let super::Target::Values { y, .. } = &l.target else {
            panic!()
        };
        let slope1 = (y[1] - y[0]) / (l.x[1] - l.x[0]);
        let slope2 = (y[2] - y[0]) / (l.x[2] - l.x[0]);
        assert!((slope1 - slope2).abs() < 1e-4);
    }
}
