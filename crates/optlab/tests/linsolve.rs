//! P18 and its sparse linear algebra: the Poisson matrix, CG, PCG, the DCDM iteration, the Lanczos of the training
//! set and the training loss against the official code (fixtures from tools/reference/dcdm_fixtures.py); the
//! discretization's second order; IC(0) and the solvers against dense solves; training and saving the network.

use crate::common::numbers;
use candle_core::{Device, Tensor};
use faer::linalg::solvers::Solve;
use optlab::linsolve::csr::Csr;
use optlab::linsolve::dcdm::{dcdm, train, Direction, NetDirection, PoissonSystem, TrainConfig};
use optlab::linsolve::krylov::{cg, pcg, IncompleteCholesky, Preconditioner, Stop};
use optlab::linsolve::net::DirectionNet;
use optlab::linsolve::poisson::Grid;
use optlab::linsolve::ritz::{ritz_pairs_from, ritz_rhs, RitzConfig};
use optlab::linsolve::run::{bench, BenchConfig, Rhs};

fn fixture() -> serde_json::Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/linsolve/dcdm.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn fixture_grid(f: &serde_json::Value) -> Grid {
    let n = f["n"].as_u64().unwrap() as usize;
    let solid = f["solid"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64() == Some(1))
        .collect();
    Grid::from_mask(n, solid).unwrap()
}

/// The oracle of the fixture: q = mask ⊙ (r + 0.5 tanh(3r)).
struct Oracle(Vec<f64>);

impl Direction for Oracle {
    fn direction(&self, r: &[f64]) -> optlab::Result<Vec<f64>> {
        Ok(r.iter()
            .zip(&self.0)
            .map(|(r, m)| m * (r + 0.5 * (3.0 * r).tanh()))
            .collect())
    }
}

struct Jacobi(Vec<f64>);

impl Preconditioner for Jacobi {
    fn apply(&self, r: &[f64], z: &mut [f64]) {
        z.iter_mut()
            .zip(r)
            .zip(&self.0)
            .for_each(|((z, r), d)| *z = r / d);
    }
}

/// Relative agreement of two residual histories over the entries above `floor`·r₀.
fn history_err(got: &[f64], want: &[f64], floor: f64) -> f64 {
    got.iter()
        .zip(want)
        .take_while(|(_, w)| **w > floor * want[0])
        .map(|(g, w)| (g - w).abs() / w)
        .fold(0.0, f64::max)
}

#[test]
fn poisson_matrix_equals_the_reference_construction() {
    let f = fixture();
    let g = fixture_grid(&f);
    let a = g.laplacian().unwrap();
    let t = f["triplets"].as_array().unwrap();
    let want = Csr::from_triplets(
        g.cells(),
        t.iter()
            .map(|e| {
                (
                    e[0].as_u64().unwrap() as usize,
                    e[1].as_u64().unwrap() as usize,
                    e[2].as_f64().unwrap(),
                )
            })
            .collect(),
    )
    .unwrap();
    assert_eq!(a, want);
    assert!(a.is_symmetric());
}

#[test]
fn dcdm_cg_and_pcg_follow_the_official_residual_histories() {
    let f = fixture();
    let g = fixture_grid(&f);
    let a = g.laplacian().unwrap();
    let b = numbers(&f["b"]);
    let stop = Stop {
        tol: 1e-12,
        max_iters: 40,
    };
    let d = dcdm(&a, &b, &Oracle(g.fluid_mask()), stop).unwrap();
    let want = numbers(&f["dcdm_residuals"]);
    assert_eq!(d.residuals.len(), want.len());
    let e = history_err(&d.residuals, &want, 0.0);
    assert!(e < 1e-9, "DCDM residuals differ by {e:e}");
    // CG and PCG: ours are the recurrence residuals, the reference's the true ones; they agree until rounding.
    let c = cg(&a, &b, stop).unwrap();
    let e = history_err(&c.residuals, &numbers(&f["cg_residuals"]), 1e-9);
    assert!(e < 1e-7, "CG residuals differ by {e:e}");
    let p = pcg(&a, &b, &Jacobi(a.diagonal()), stop).unwrap();
    let e = history_err(&p.residuals, &numbers(&f["jacobi_pcg_residuals"]), 1e-9);
    assert!(e < 1e-7, "PCG residuals differ by {e:e}");
}

#[test]
fn ritz_values_and_loss_match_the_reference() {
    let f = fixture();
    let g = fixture_grid(&f);
    let system = PoissonSystem::new(g.clone()).unwrap();
    let m = f["lanczos_steps"].as_u64().unwrap() as usize;
    let pairs = ritz_pairs_from(&system.matrix, numbers(&f["lanczos_start"]), m).unwrap();
    let want = numbers(&f["ritz_values"]);
    assert_eq!(pairs.values.len(), want.len());
    for (v, w) in pairs.values.iter().zip(&want) {
        assert!(
            (v - w).abs() < 1e-8 * w.abs().max(1.0),
            "Ritz value {v} vs {w}"
        );
    }
    // Each Ritz pair satisfies ‖A v − θ v‖ ≤ the Lanczos bound's scale; the extreme ones converge.
    let av = system.matrix.matvec(&pairs.vectors[m - 1]);
    let res: f64 = av
        .iter()
        .zip(&pairs.vectors[m - 1])
        .map(|(a, v)| (a - pairs.values[m - 1] * v).powi(2))
        .sum();
    assert!(
        res.sqrt() < 1e-2,
        "the top Ritz pair's residual is {}",
        res.sqrt()
    );

    // The loss of train.py for the oracle's directions (the network replaced by an oracle tensor).
    let n = g.n;
    let batch: Vec<Vec<f64>> = f["loss_batch"]
        .as_array()
        .unwrap()
        .iter()
        .map(numbers)
        .collect();
    let oracle = Oracle(g.fluid_mask());
    let mut loss = 0.0;
    for b in &batch {
        let q = oracle.direction(b).unwrap();
        let t = |v: &[f64]| {
            Tensor::from_slice(v, (1, 1, n, n), &Device::Cpu)
                .unwrap()
                .to_dtype(candle_core::DType::F32)
                .unwrap()
        };
        let aq: Vec<f32> = system
            .apply(&t(&q))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let want = system.matrix.matvec(&q);
        for (x, y) in aq.iter().zip(&want) {
            assert!(
                (*x as f64 - y).abs() < 1e-5 * (1.0 + y.abs()),
                "stencil {x} vs CSR {y}"
            );
        }
        let qb: f64 = q.iter().zip(b).map(|(a, b)| a * b).sum();
        let qaq: f64 = q.iter().zip(&want).map(|(a, b)| a * b).sum();
        loss += b
            .iter()
            .zip(&want)
            .map(|(b, aq)| (b - aq * qb / qaq).powi(2))
            .sum::<f64>();
    }
    loss /= batch.len() as f64;
    let fl = f["loss"].as_f64().unwrap();
    assert!((loss - fl).abs() < 1e-12 * fl, "loss {loss} vs {fl}");
}

#[test]
fn the_network_loss_is_the_one_step_residual() {
    // system.loss through the network equals the formula evaluated in f64 on the network's own directions.
    let grid = Grid::with_obstacles(8, 1, 3).unwrap();
    let system = PoissonSystem::new(grid).unwrap();
    let net = DirectionNet::new(4, 1).unwrap();
    let data = ritz_rhs(
        &system.matrix,
        &system.grid.fluid_mask(),
        &RitzConfig {
            vectors: 16,
            samples: 2,
            ..Default::default()
        },
    )
    .unwrap();
    let b = Tensor::from_slice(&data, (2, 1, 8, 8), &Device::Cpu).unwrap();
    let got = system.loss(&net, &b).unwrap().to_scalar::<f32>().unwrap() as f64;
    let q: Vec<f32> = system
        .direction(&net, &b, true)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let mut want = 0.0;
    for s in 0..2 {
        let qs: Vec<f64> = q[s * 64..(s + 1) * 64].iter().map(|&v| v as f64).collect();
        let bs: Vec<f64> = data[s * 64..(s + 1) * 64]
            .iter()
            .map(|&v| v as f64)
            .collect();
        let aq = system.matrix.matvec(&qs);
        let qb: f64 = qs.iter().zip(&bs).map(|(a, b)| a * b).sum();
        let qaq: f64 = qs.iter().zip(&aq).map(|(a, b)| a * b).sum();
        want += bs
            .iter()
            .zip(&aq)
            .map(|(b, aq)| (b - aq * qb / qaq).powi(2))
            .sum::<f64>()
            / 2.0;
    }
    assert!((got - want).abs() < 1e-4 * want, "loss {got} vs {want}");
    assert!(data
        .chunks(64)
        .all(|c| (c.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5));
}

#[test]
fn five_point_laplacian_is_second_order() {
    // −Δu = f on the unit square, u = sin(πx) sin(πy), f = 2π² u; h = 1/(n+1): error ∝ h².
    let err = |n: usize| {
        let a = Grid::empty(n).unwrap().laplacian().unwrap();
        let h = 1.0 / (n + 1) as f64;
        let pi = std::f64::consts::PI;
        let u = |i: usize| {
            let (x, y) = ((i % n + 1) as f64 * h, (i / n + 1) as f64 * h);
            (pi * x).sin() * (pi * y).sin()
        };
        let b: Vec<f64> = (0..n * n).map(|i| h * h * 2.0 * pi * pi * u(i)).collect();
        let s = cg(
            &a,
            &b,
            Stop {
                tol: 1e-12,
                max_iters: 5000,
            },
        )
        .unwrap();
        assert!(s.converged);
        (0..n * n)
            .map(|i| (s.x[i] - u(i)).abs())
            .fold(0.0, f64::max)
    };
    let (e1, e2) = (err(15), err(31));
    let order = (e1 / e2).log2();
    assert!(
        (order - 2.0).abs() < 0.1,
        "observed order {order} (errors {e1:e}, {e2:e})"
    );
}

#[test]
fn solvers_match_a_dense_solve_and_ic0_keeps_the_pattern() {
    let grid = Grid::with_obstacles(10, 2, 7).unwrap();
    let a = grid.laplacian().unwrap();
    let n = a.n;
    let b: Vec<f64> = (0..n)
        .map(|i| grid.fluid_mask()[i] * ((i * 7919 % 13) as f64 - 6.0))
        .collect();
    let dense = faer::Mat::from_fn(n, n, |i, j| a.get(i, j));
    let rhs = faer::Mat::from_fn(n, 1, |i, _| b[i]);
    let x = dense.full_piv_lu().solve(&rhs);
    let stop = Stop {
        tol: 1e-12,
        max_iters: 1000,
    };
    let ic = IncompleteCholesky::new(&a).unwrap();
    for s in [cg(&a, &b, stop).unwrap(), pcg(&a, &b, &ic, stop).unwrap()] {
        assert!(s.converged);
        let e = (0..n)
            .map(|i| (s.x[i] - x[(i, 0)]).abs())
            .fold(0.0, f64::max);
        assert!(e < 1e-9, "solution error {e:e}");
    }
    // (L Lᵀ)_ij = A_ij on A's pattern (IC(0)'s defining property).
    let l = ic.factor();
    for i in 0..n {
        for (j, v) in a.row(i) {
            let llt: f64 = l.row(i).map(|(k, lik)| lik * l.get(j, k)).sum();
            assert!((llt - v).abs() < 1e-12, "(LLᵀ)[{i},{j}] = {llt}, A = {v}");
        }
    }
    // On a 1-D (tridiagonal) matrix IC(0) is the exact Cholesky factor: PCG converges in one step.
    let t = Csr::from_triplets(
        6,
        (0..6)
            .flat_map(|i| {
                [(i, i, 2.0)]
                    .into_iter()
                    .chain((i > 0).then(|| (i, i - 1, -1.0)))
                    .chain((i < 5).then(|| (i, i + 1, -1.0)))
            })
            .collect(),
    )
    .unwrap();
    let s = pcg(&t, &[1.0; 6], &IncompleteCholesky::new(&t).unwrap(), stop).unwrap();
    assert_eq!(s.iterations, 1);
}

#[test]
fn dcdm_with_the_residual_as_direction_is_cg() {
    // q = r A-orthogonalized against the last two directions is CG's direction (exact arithmetic).
    struct Residual;
    impl Direction for Residual {
        fn direction(&self, r: &[f64]) -> optlab::Result<Vec<f64>> {
            Ok(r.to_vec())
        }
    }
    let a = Grid::with_obstacles(16, 3, 1).unwrap().laplacian().unwrap();
    let b: Vec<f64> = (0..a.n).map(|i| (i as f64 * 0.37).sin()).collect();
    let stop = Stop {
        tol: 1e-6,
        max_iters: 500,
    };
    let (d, c) = (
        dcdm(&a, &b, &Residual, stop).unwrap(),
        cg(&a, &b, stop).unwrap(),
    );
    assert!(d.converged && c.converged);
    assert!(
        d.iterations.abs_diff(c.iterations) <= 1,
        "DCDM {} vs CG {}",
        d.iterations,
        c.iterations
    );
    let e = history_err(&d.residuals[..20], &c.residuals[..20], 0.0);
    assert!(e < 1e-6, "{e:e}");
}

#[test]
fn bad_systems_get_one_clear_error() {
    // Enclosed fluid: a singular (pure Neumann) block.
    let mut solid = vec![false; 25];
    for i in [6, 7, 8, 11, 13, 16, 17, 18] {
        solid[i] = true;
    }
    let e = Grid::from_mask(5, solid).unwrap_err().to_string();
    assert!(e.contains("enclosed"), "{e}");
    assert!(Grid::empty(1).is_err() && Grid::from_mask(4, vec![false; 3]).is_err());
    // Indefinite matrices: CG and IC(0) refuse.
    let ind = Csr::from_triplets(2, vec![(0, 0, 1.0), (1, 1, -1.0)]).unwrap();
    assert!(cg(&ind, &[1.0, 1.0], Stop::default())
        .unwrap_err()
        .to_string()
        .contains("positive definite"));
    assert!(IncompleteCholesky::new(&ind).is_err());
    let a = Grid::empty(4).unwrap().laplacian().unwrap();
    assert!(cg(&a, &[f64::NAN; 16], Stop::default()).is_err());
    assert!(cg(&a, &[1.0; 3], Stop::default()).is_err());
    assert!(cg(
        &a,
        &[1.0; 16],
        Stop {
            tol: 0.0,
            max_iters: 10
        }
    )
    .is_err());
    assert!(Csr::new(2, vec![0, 1], vec![0], vec![1.0]).is_err());
    assert!(Csr::new(2, vec![0, 2, 2], vec![1, 0], vec![1.0, 1.0]).is_err());
    // A network that outputs zero: qᵀAq = 0 is reported, not divided by.
    struct Zero;
    impl Direction for Zero {
        fn direction(&self, r: &[f64]) -> optlab::Result<Vec<f64>> {
            Ok(vec![0.0; r.len()])
        }
    }
    assert!(dcdm(&a, &[1.0; 16], &Zero, Stop::default()).is_err());
}

#[test]
fn training_lowers_the_loss_and_the_network_round_trips() {
    let grid = Grid::empty(8).unwrap();
    let system = PoissonSystem::new(grid).unwrap();
    let data = ritz_rhs(
        &system.matrix,
        &system.grid.fluid_mask(),
        &RitzConfig {
            vectors: 32,
            samples: 40,
            ..Default::default()
        },
    )
    .unwrap();
    let net = DirectionNet::new(8, 0).unwrap();
    let mut losses = Vec::new();
    let cfg = TrainConfig {
        steps: 60,
        batch_size: 10,
        optimizer: "adam:lr=3e-3".into(),
        seed: 0,
    };
    train(&net, &system, &data, &cfg, &mut |_, l| losses.push(l)).unwrap();
    let head: f64 = losses[..10].iter().sum::<f64>() / 10.0;
    let tail: f64 = losses[50..].iter().sum::<f64>() / 10.0;
    assert!(tail < 0.8 * head, "loss {head} -> {tail}");

    let dir = std::env::temp_dir().join(format!("optlab-dcdm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("net.safetensors");
    net.save(&path).unwrap();
    let back = DirectionNet::load(&path).unwrap();
    let r: Vec<f64> = (0..64).map(|i| (i as f64).cos()).collect();
    let d1 = NetDirection {
        net: &net,
        system: &system,
    }
    .direction(&r)
    .unwrap();
    let d2 = NetDirection {
        net: &back,
        system: &system,
    }
    .direction(&r)
    .unwrap();
    assert_eq!(d1, d2);
    std::fs::write(&path, b"not safetensors").unwrap();
    assert!(DirectionNet::load(&path).is_err());
    std::fs::remove_dir_all(&dir).ok();
    // An odd grid is refused by the network with one error.
    let odd = PoissonSystem::new(Grid::empty(7).unwrap()).unwrap();
    assert!(NetDirection {
        net: &net,
        system: &odd
    }
    .direction(&[0.1; 49])
    .is_err());
}

#[test]
fn bench_reports_every_method_on_every_grid() {
    let net = DirectionNet::new(4, 0).unwrap();
    let cfg = BenchConfig {
        sides: vec![16],
        obstacles: vec![0, 2],
        count: 2,
        rhs: Rhs::Gaussian,
        tols: vec![1e-4, 1e-6],
        max_iters: 400,
        seed: 0,
    };
    let report = bench(Some(&net), &cfg, &mut |_, _| {}).unwrap();
    let rows = &report.rows;
    assert_eq!(rows.len(), 2 * 3 * 2);
    assert_eq!((report.curves.len(), report.fields.len()), (2 * 3, 2));
    let get = |m: &str, o: usize, t: f64| {
        rows.iter()
            .find(|r| r.method == m && r.obstacles == o && r.tol == t)
            .unwrap()
    };
    for o in [0, 2] {
        let (c, p) = (get("cg", o, 1e-6), get("ic-pcg", o, 1e-6));
        assert_eq!((c.reached, p.reached), (2, 2));
        assert!(p.mean_iterations < c.mean_iterations);
        assert!(get("cg", o, 1e-4).mean_iterations <= c.mean_iterations);
    }
    assert!(bench(
        Some(&net),
        &BenchConfig {
            sides: vec![15],
            ..cfg.clone()
        },
        &mut |_, _| {}
    )
    .is_err());
}
