//! Linear structural equation models and DAG structure learning (P40): the simulator (Erdős–Rényi and scale-free
//! graphs, equal and non-equal noise variances), the sample covariance, thresholding to a DAG, and the accuracy
//! metrics of NOTEARS' `count_accuracy` (FDR, TPR, FPR, SHD, NNZ). The estimators are in [`colide`].

// Adjacency and covariance code reads best with (i, j) indices.
#![allow(clippy::needless_range_loop)]

pub mod colide;
mod dense;
mod side;

use crate::rng::{permutation, rng_for, Normals, Stream};
use crate::{Error, Result};
use rand::Rng as _;
use serde::Serialize;

/// Graph families of the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Graph {
    /// Erdős–Rényi with `k`·d expected edges.
    Er(usize),
    /// Scale-free (Barabási–Albert) with about `k`·d edges.
    Sf(usize),
}

impl Graph {
    /// `er2`, `er4`, `sf4`, ...
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::invalid(format!(
                "graph `{s}`: use erK or sfK with K >= 1, e.g. er2, er4, sf4"
            ))
        };
        let (kind, k) = s.split_at(s.len().min(2));
        let k: usize = k.parse().map_err(|_| bad())?;
        match (kind, k) {
            (_, 0) => Err(bad()),
            ("er", k) => Ok(Graph::Er(k)),
            ("sf", k) => Ok(Graph::Sf(k)),
            _ => Err(bad()),
        }
    }
}

/// A simulated linear SEM X = X W + E.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sem {
    /// n × d samples, row-major.
    pub x: Vec<f64>,
    pub n: usize,
    pub d: usize,
    /// The true weighted adjacency, `w[i][j]` for edge i → j.
    pub w: Vec<Vec<f64>>,
    /// The noise variance of each variable.
    pub noise_var: Vec<f64>,
}

/// Simulates n samples of a linear SEM on a random `graph` over d variables: edge weights uniform in
/// ±[0.5, 2], Gaussian noise of variance 1 (`equal_var`) or uniform in [0.5, 10] per variable.
pub fn simulate(graph: Graph, d: usize, n: usize, equal_var: bool, seed: u64) -> Result<Sem> {
    if d < 2 || n < 2 {
        return Err(Error::invalid(format!(
            "a SEM needs at least 2 variables and 2 samples (got d={d}, n={n})"
        )));
    }
    let mut rng = rng_for(seed, Stream::Data, 0);
    let mut adj = vec![vec![false; d]; d];
    match graph {
        Graph::Er(k) => {
            let p = (2.0 * (k * d) as f64 / (d * d - d) as f64).min(1.0);
            // Edges of an upper-triangular skeleton, then a random order of the nodes.
            let order = permutation(d, &mut rng);
            for i in 0..d {
                for j in i + 1..d {
                    if rng.gen::<f64>() < p {
                        adj[order[i]][order[j]] = true;
                    }
                }
            }
        }
        Graph::Sf(k) => {
            // Barabási–Albert: node t attaches to m earlier nodes chosen by degree; edges point old -> new.
            let m = k.max(1).min(d - 1);
            let mut targets: Vec<usize> = (0..m).collect();
            let mut repeated: Vec<usize> = Vec::new();
            for t in m..d {
                for &s in &targets {
                    adj[s][t] = true;
                }
                repeated.extend(&targets);
                repeated.extend(std::iter::repeat_n(t, m));
                let mut chosen = Vec::new();
                while chosen.len() < m {
                    let c = repeated[rng.gen_range(0..repeated.len())];
                    if !chosen.contains(&c) {
                        chosen.push(c);
                    }
                }
                targets = chosen;
            }
        }
    }
    let mut w = vec![vec![0.0; d]; d];
    for i in 0..d {
        for j in 0..d {
            if adj[i][j] {
                let mag = rng.gen_range(0.5..2.0);
                w[i][j] = if rng.gen::<bool>() { mag } else { -mag };
            }
        }
    }
    let noise_var: Vec<f64> = (0..d)
        .map(|_| {
            if equal_var {
                1.0
            } else {
                rng.gen_range(0.5..10.0)
            }
        })
        .collect();
    let order = topological_order(&adj).expect("simulated graphs are acyclic");
    let mut x = vec![0.0; n * d];
    let mut z = Normals::default();
    for &j in &order {
        let sd = noise_var[j].sqrt();
        for r in 0..n {
            let row = &x[r * d..(r + 1) * d];
            let eta: f64 = (0..d)
                .filter(|&i| adj[i][j])
                .map(|i| row[i] * w[i][j])
                .sum();
            x[r * d + j] = eta + sd * z.next(&mut rng);
        }
    }
    Ok(Sem {
        x,
        n,
        d,
        w,
        noise_var,
    })
}

/// C = X_cᵀ X_c / n of the column-centred data (n × d, row-major): all CoLiDE and DAGMA read of the data.
pub fn covariance(x: &[f64], n: usize, d: usize) -> Result<Vec<Vec<f64>>> {
    if n < 2 || d < 2 || x.len() != n * d {
        return Err(Error::Shape(format!(
            "need n >= 2 rows of d >= 2 variables (got {} values for n={n}, d={d})",
            x.len()
        )));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid("the data contain NaN or infinite values"));
    }
    let mean: Vec<f64> = (0..d)
        .map(|j| (0..n).map(|r| x[r * d + j]).sum::<f64>() / n as f64)
        .collect();
    let mut c = vec![vec![0.0; d]; d];
    for r in 0..n {
        let row = &x[r * d..(r + 1) * d];
        for i in 0..d {
            let a = row[i] - mean[i];
            for j in i..d {
                c[i][j] += a * (row[j] - mean[j]);
            }
        }
    }
    for i in 0..d {
        for j in i..d {
            c[i][j] /= n as f64;
            c[j][i] = c[i][j];
        }
    }
    if let Some(j) = (0..d).find(|&j| !c[j][j].is_finite()) {
        let big = (0..n).map(|r| x[r * d + j].abs()).fold(0.0, f64::max);
        return Err(Error::invalid(format!(
            "column {} has values up to {big:e}, too large to square in f64: rescale the data",
            j + 1
        )));
    }
    Ok(c)
}

/// Kahn's order of the graph `adj` (`adj[i][j]`: i → j), or `None` with a cycle (self-loops included).
pub fn topological_order(adj: &[Vec<bool>]) -> Option<Vec<usize>> {
    let d = adj.len();
    let mut indeg: Vec<usize> = (0..d)
        .map(|j| (0..d).filter(|&i| adj[i][j]).count())
        .collect();
    let mut ready: Vec<usize> = (0..d).filter(|&j| indeg[j] == 0).collect();
    let mut order = Vec::with_capacity(d);
    while let Some(i) = ready.pop() {
        order.push(i);
        for j in 0..d {
            if adj[i][j] {
                indeg[j] -= 1;
                if indeg[j] == 0 {
                    ready.push(j);
                }
            }
        }
    }
    (order.len() == d).then_some(order)
}

fn support(w: &[Vec<f64>]) -> Vec<Vec<bool>> {
    w.iter()
        .map(|r| r.iter().map(|v| *v != 0.0).collect())
        .collect()
}

/// Whether the weighted graph `w` is acyclic.
pub fn is_dag(w: &[Vec<f64>]) -> bool {
    topological_order(&support(w)).is_some()
}

/// The official post-processing: zero every |w| <= `threshold`, then drop the smallest remaining edges one by one
/// (row-major order among equal magnitudes) until the graph is acyclic.
pub fn to_dag(w: &[Vec<f64>], threshold: f64) -> Vec<Vec<f64>> {
    let mut a: Vec<Vec<f64>> = w
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| if v.abs() <= threshold { 0.0 } else { *v })
                .collect()
        })
        .collect();
    if is_dag(&a) {
        return a;
    }
    let mut edges: Vec<(usize, usize)> = (0..a.len())
        .flat_map(|i| (0..a.len()).map(move |j| (i, j)))
        .filter(|&(i, j)| a[i][j] != 0.0)
        .collect();
    edges.sort_by(|x, y| a[x.0][x.1].abs().total_cmp(&a[y.0][y.1].abs()));
    for (i, j) in edges {
        a[i][j] = 0.0;
        if is_dag(&a) {
            break;
        }
    }
    a
}

/// NOTEARS' structure metrics of an estimate against the truth (supports only).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Accuracy {
    pub fdr: f64,
    pub tpr: f64,
    pub fpr: f64,
    /// Structural Hamming distance: extra + missing skeleton edges + reversed edges.
    pub shd: usize,
    pub nnz: usize,
}

/// The metrics of `est` against `truth` (both weighted adjacencies; nonzero = edge).
pub fn accuracy(truth: &[Vec<f64>], est: &[Vec<f64>]) -> Accuracy {
    let d = truth.len();
    let (t, e) = (support(truth), support(est));
    let (mut tp, mut fp, mut rev, mut pred, mut cond) = (0, 0, 0, 0, 0);
    for i in 0..d {
        for j in 0..d {
            cond += t[i][j] as usize;
            if !e[i][j] {
                continue;
            }
            pred += 1;
            if t[i][j] {
                tp += 1;
            } else if t[j][i] {
                rev += 1;
            } else {
                fp += 1;
            }
        }
    }
    let (mut extra, mut missing) = (0, 0);
    for i in 0..d {
        for j in 0..i {
            let (pe, ce) = (e[i][j] || e[j][i], t[i][j] || t[j][i]);
            extra += (pe && !ce) as usize;
            missing += (ce && !pe) as usize;
        }
    }
    let cond_neg = (d * (d - 1) / 2).saturating_sub(cond);
    Accuracy {
        fdr: (rev + fp) as f64 / pred.max(1) as f64,
        tpr: tp as f64 / cond.max(1) as f64,
        fpr: (rev + fp) as f64 / cond_neg.max(1) as f64,
        shd: extra + missing + rev,
        nnz: pred,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_hand() {
        // Truth 0->1, 1->2. Estimate 1->0 (reversed), 1->2 (right), 0->2 (extra).
        let mut t = vec![vec![0.0; 3]; 3];
        t[0][1] = 1.0;
        t[1][2] = 1.0;
        let mut e = vec![vec![0.0; 3]; 3];
        e[1][0] = 1.0;
        e[1][2] = 1.0;
        e[0][2] = 1.0;
        let a = accuracy(&t, &e);
        assert_eq!((a.shd, a.nnz), (2, 3));
        assert_eq!((a.tpr, a.fdr), (0.5, 2.0 / 3.0));
        // cond_neg = 3 - 2 = 1.
        assert_eq!(a.fpr, 2.0);
    }

    #[test]
    fn to_dag_breaks_cycles_at_the_weakest_edge() {
        let w = vec![
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 0.8],
            vec![0.5, 0.0, 0.2],
        ];
        let a = to_dag(&w, 0.3);
        assert_eq!(
            a,
            vec![vec![0.0, 1.0, 0.0], vec![0.0, 0.0, 0.8], vec![0.0; 3]]
        );
        assert!(is_dag(&a) && !is_dag(&w));
    }

    #[test]
    fn simulated_graphs_are_dags_with_the_expected_density() {
        for g in [Graph::Er(2), Graph::Er(4), Graph::Sf(4)] {
            let sem = simulate(g, 30, 50, false, 1).unwrap();
            assert!(is_dag(&sem.w));
            let edges = sem.w.iter().flatten().filter(|v| **v != 0.0).count();
            assert!(edges > 20 && edges < 200, "{g:?}: {edges}");
            assert!(sem.noise_var.iter().all(|v| (0.5..10.0).contains(v)));
        }
        assert!(Graph::parse("er0").is_err() && Graph::parse("xx2").is_err());
        assert_eq!(Graph::parse("sf4").unwrap(), Graph::Sf(4));
        assert!(simulate(Graph::Er(2), 1, 10, true, 0).is_err());
    }

    #[test]
    fn covariance_rejects_bad_data() {
        assert!(covariance(&[1.0, f64::NAN, 2.0, 3.0], 2, 2).is_err());
        assert!(covariance(&[1.0, 2.0, 3.0], 2, 2).is_err());
        let c = covariance(&[1.0, 2.0, 3.0, 6.0], 2, 2).unwrap();
        assert_eq!(c, vec![vec![1.0, 2.0], vec![2.0, 4.0]]);
    }
}
