//! Equality-constrained test problems of the CUTEst set P19 uses (Hock–Schittkowski, Boggs–Tolle and nonlinear
//! equations written as feasibility problems with f = 0), hand-coded from their SIF definitions with the standard
//! starting points and published optimal values. Derivatives are exact, by hyper-dual numbers ([`super::dual`]).

use super::check_multipliers;
use super::dual::Dual;
use super::Nlp;
use crate::{Error, Result};
use faer::Mat;

/// f and c of a problem at x.
type Formula = fn(&[Dual]) -> (Dual, Vec<Dual>);

/// One test problem.
#[derive(Clone)]
pub struct TestProblem {
    pub name: &'static str,
    x0: Vec<f64>,
    m: usize,
    formula: Formula,
    /// The published optimal value.
    pub fstar: f64,
    /// A published solution, where the literature gives one in closed form.
    pub xstar: Option<Vec<f64>>,
}

impl std::fmt::Debug for TestProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (n = {}, m = {})", self.name, self.x0.len(), self.m)
    }
}

impl TestProblem {
    /// f and c with ε₁ on x_i and ε₂ on x_j.
    fn eval(&self, x: &[f64], i: Option<usize>, j: Option<usize>) -> Result<(Dual, Vec<Dual>)> {
        let one = |k: usize, d: Option<usize>| if d == Some(k) { 1.0 } else { 0.0 };
        self.eval_dirs(x, |k| one(k, i), |k| one(k, j))
    }

    /// f and c with ε₁ along the direction `a` and ε₂ along `b` (given entry by entry).
    fn eval_dirs(
        &self,
        x: &[f64],
        a: impl Fn(usize) -> f64,
        b: impl Fn(usize) -> f64,
    ) -> Result<(Dual, Vec<Dual>)> {
        if x.len() != self.x0.len() {
            return Err(Error::Shape(format!(
                "{}: x has {} entries, the problem {}",
                self.name,
                x.len(),
                self.x0.len()
            )));
        }
        let xs: Vec<Dual> = x
            .iter()
            .enumerate()
            .map(|(k, &v)| Dual {
                v,
                a: a(k),
                b: b(k),
                ab: 0.0,
            })
            .collect();
        let (f, c) = (self.formula)(&xs);
        debug_assert_eq!(c.len(), self.m, "{}", self.name);
        Ok((f, c))
    }

    /// eᵢᵀ ∇²ₓL v for every i: n evaluations with ε₁ on xᵢ and ε₂ along v.
    fn hvp(&self, x: &[f64], lambda: &[f64], v: &[f64]) -> Result<Vec<f64>> {
        (0..x.len())
            .map(|i| {
                let (f, c) = self.eval_dirs(x, |k| if k == i { 1.0 } else { 0.0 }, |k| v[k])?;
                Ok(f.ab + c.iter().zip(lambda).map(|(c, l)| c.ab * l).sum::<f64>())
            })
            .collect()
    }
}

impl Nlp for TestProblem {
    fn name(&self) -> &str {
        self.name
    }
    fn n(&self) -> usize {
        self.x0.len()
    }
    fn m(&self) -> usize {
        self.m
    }
    fn x0(&self) -> Vec<f64> {
        self.x0.clone()
    }
    fn objective(&self, x: &[f64]) -> Result<f64> {
        Ok(self.eval(x, None, None)?.0.v)
    }
    fn gradient(&self, x: &[f64]) -> Result<Vec<f64>> {
        (0..x.len())
            .map(|i| Ok(self.eval(x, Some(i), None)?.0.a))
            .collect()
    }
    fn constraints(&self, x: &[f64]) -> Result<Vec<f64>> {
        Ok(self.eval(x, None, None)?.1.iter().map(|c| c.v).collect())
    }
    fn jacobian(&self, x: &[f64]) -> Result<Mat<f64>> {
        let cols = (0..x.len())
            .map(|j| Ok(self.eval(x, Some(j), None)?.1))
            .collect::<Result<Vec<_>>>()?;
        Ok(Mat::from_fn(self.m, x.len(), |i, j| cols[j][i].a))
    }
    fn lagrangian_hessian(&self, x: &[f64], lambda: &[f64]) -> Result<Mat<f64>> {
        check_multipliers(self.name, lambda, self.m)?;
        let n = x.len();
        let mut h = Mat::zeros(n, n);
        for i in 0..n {
            for j in i..n {
                let (f, c) = self.eval(x, Some(i), Some(j))?;
                let v = f.ab + c.iter().zip(lambda).map(|(c, l)| c.ab * l).sum::<f64>();
                h[(i, j)] = v;
                h[(j, i)] = v;
            }
        }
        Ok(h)
    }
    /// n hyper-dual evaluations (the dense Hessian takes n(n + 1)/2).
    fn lagrangian_hvp(&self, x: &[f64], lambda: &[f64], v: &[f64]) -> Result<Vec<f64>> {
        check_multipliers(self.name, lambda, self.m)?;
        if v.len() != x.len() {
            return Err(Error::Shape(format!(
                "{}: v has {} entries for {} variables",
                self.name,
                v.len(),
                x.len()
            )));
        }
        self.hvp(x, lambda, v)
    }
}

fn sq(x: Dual) -> Dual {
    x * x
}

const SQRT2: f64 = std::f64::consts::SQRT_2;

fn hs6(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (sq(1.0 - x[0]), vec![10.0 * (x[1] - sq(x[0]))])
}
fn hs7(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        (1.0 + sq(x[0])).ln() - x[1],
        vec![sq(1.0 + sq(x[0])) + sq(x[1]) - 4.0],
    )
}
fn hs28(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        sq(x[0] + x[1]) + sq(x[1] + x[2]),
        vec![x[0] + 2.0 * x[1] + 3.0 * x[2] - 1.0],
    )
}
fn hs40(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        -(x[0] * x[1] * x[2] * x[3]),
        vec![
            x[0].powi(3) + sq(x[1]) - 1.0,
            sq(x[0]) * x[3] - x[2],
            sq(x[3]) - x[1],
        ],
    )
}
fn hs42(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        sq(x[0] - 1.0) + sq(x[1] - 2.0) + sq(x[2] - 3.0) + sq(x[3] - 4.0),
        vec![x[0] - 2.0, sq(x[2]) + sq(x[3]) - 2.0],
    )
}
fn hs47(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        sq(x[0] - x[1]) + (x[1] - x[2]).powi(3) + (x[2] - x[3]).powi(4) + (x[3] - x[4]).powi(4),
        vec![
            x[0] + sq(x[1]) + x[2].powi(3) - 3.0,
            x[1] - sq(x[2]) + x[3] - 1.0,
            x[0] * x[4] - 1.0,
        ],
    )
}
fn hs48(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        sq(x[0] - 1.0) + sq(x[1] - x[2]) + sq(x[3] - x[4]),
        vec![
            x[0] + x[1] + x[2] + x[3] + x[4] - 5.0,
            x[2] - 2.0 * (x[3] + x[4]) + 3.0,
        ],
    )
}
fn hs50(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        sq(x[0] - x[1]) + sq(x[1] - x[2]) + (x[2] - x[3]).powi(4) + sq(x[3] - x[4]),
        vec![
            x[0] + 2.0 * x[1] + 3.0 * x[2] - 6.0,
            x[1] + 2.0 * x[2] + 3.0 * x[3] - 6.0,
            x[2] + 2.0 * x[3] + 3.0 * x[4] - 6.0,
        ],
    )
}
fn hs51(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        sq(x[0] - x[1]) + sq(x[1] + x[2] - 2.0) + sq(x[3] - 1.0) + sq(x[4] - 1.0),
        vec![
            x[0] + 3.0 * x[1] - 4.0,
            x[2] + x[3] - 2.0 * x[4],
            x[1] - x[4],
        ],
    )
}
fn hs52(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        sq(4.0 * x[0] - x[1]) + sq(x[1] + x[2] - 2.0) + sq(x[3] - 1.0) + sq(x[4] - 1.0),
        vec![x[0] + 3.0 * x[1], x[2] + x[3] - 2.0 * x[4], x[1] - x[4]],
    )
}
fn hs56(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        -(x[0] * x[1] * x[2]),
        vec![
            x[0] - 4.2 * sq(x[3].sin()),
            x[1] - 4.2 * sq(x[4].sin()),
            x[2] - 4.2 * sq(x[5].sin()),
            x[0] + 2.0 * x[1] + 2.0 * x[2] - 7.2 * sq(x[6].sin()),
        ],
    )
}
fn hs77(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        sq(x[0] - 1.0)
            + sq(x[0] - x[1])
            + sq(x[2] - 1.0)
            + (x[3] - 1.0).powi(4)
            + (x[4] - 1.0).powi(6),
        vec![
            sq(x[0]) * x[3] + (x[3] - x[4]).sin() - 2.0 * SQRT2,
            x[1] + x[2].powi(4) * sq(x[3]) - 8.0 - SQRT2,
        ],
    )
}
fn hs78(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        x[0] * x[1] * x[2] * x[3] * x[4],
        vec![
            sq(x[0]) + sq(x[1]) + sq(x[2]) + sq(x[3]) + sq(x[4]) - 10.0,
            x[1] * x[2] - 5.0 * x[3] * x[4],
            x[0].powi(3) + x[1].powi(3) + 1.0,
        ],
    )
}
fn hs79(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        sq(x[0] - 1.0)
            + sq(x[0] - x[1])
            + sq(x[1] - x[2])
            + (x[2] - x[3]).powi(4)
            + (x[3] - x[4]).powi(4),
        vec![
            x[0] + sq(x[1]) + x[2].powi(3) - 2.0 - 3.0 * SQRT2,
            x[1] - sq(x[2]) + x[3] + 2.0 - 2.0 * SQRT2,
            x[0] * x[4] - 2.0,
        ],
    )
}
fn hs100lnp(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        sq(x[0] - 10.0)
            + 5.0 * sq(x[1] - 12.0)
            + x[2].powi(4)
            + 3.0 * sq(x[3] - 11.0)
            + 10.0 * x[4].powi(6)
            + 7.0 * sq(x[5])
            + x[6].powi(4)
            - 4.0 * x[5] * x[6]
            - 10.0 * x[5]
            - 8.0 * x[6],
        vec![
            2.0 * sq(x[0]) + 3.0 * x[1].powi(4) + x[2] + 4.0 * sq(x[3]) + 5.0 * x[4] - 127.0,
            -4.0 * sq(x[0]) - sq(x[1]) + 3.0 * x[0] * x[1] - 2.0 * sq(x[2]) - 5.0 * x[5]
                + 11.0 * x[6],
        ],
    )
}
fn bt2(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        sq(x[0] - 1.0) + sq(x[0] - x[1]) + (x[1] - x[2]).powi(4),
        vec![x[0] * (1.0 + sq(x[1])) + x[2].powi(4) - 4.0 - 3.0 * SQRT2],
    )
}
fn bt5(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        1000.0 - sq(x[0]) - 2.0 * sq(x[1]) - sq(x[2]) - x[0] * x[1] - x[0] * x[2],
        vec![
            sq(x[0]) + sq(x[1]) + sq(x[2]) - 25.0,
            8.0 * x[0] + 14.0 * x[1] + 7.0 * x[2] - 56.0,
        ],
    )
}
fn bt9(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        -x[0],
        vec![x[1] - x[0].powi(3) - sq(x[2]), sq(x[0]) - x[1] - sq(x[3])],
    )
}
fn bt10(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (-x[0], vec![x[1] - x[0].powi(3), sq(x[0]) - x[1]])
}
fn bt12(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        0.01 * sq(x[0]) + sq(x[1]),
        vec![
            x[0] + x[1] - sq(x[2]) - 25.0,
            sq(x[0]) + sq(x[1]) - sq(x[3]) - 25.0,
            x[0] - sq(x[4]) - 2.0,
        ],
    )
}
fn booth(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        Dual::c(0.0),
        vec![x[0] + 2.0 * x[1] - 7.0, 2.0 * x[0] + x[1] - 5.0],
    )
}
fn himmelbc(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        Dual::c(0.0),
        vec![sq(x[0]) + x[1] - 11.0, x[0] + sq(x[1]) - 7.0],
    )
}
fn rsnbrne(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (Dual::c(0.0), vec![10.0 * (x[1] - sq(x[0])), 1.0 - x[0]])
}
fn cubene(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (Dual::c(0.0), vec![x[0] - 1.0, 10.0 * (x[1] - x[0].powi(3))])
}
fn zangwil3(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        Dual::c(0.0),
        vec![x[0] - x[1] + x[2], -x[0] + x[1] + x[2], x[0] + x[1] - x[2]],
    )
}
fn denschncne(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        Dual::c(0.0),
        vec![
            sq(x[0]) + sq(x[1]) - 2.0,
            (x[0] - 1.0).exp() + x[1].powi(3) - 2.0,
        ],
    )
}
fn denschnfne(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        Dual::c(0.0),
        vec![
            2.0 * sq(x[0] + x[1]) + sq(x[0] - x[1]) - 8.0,
            5.0 * sq(x[0]) + sq(x[1] - 3.0) - 9.0,
        ],
    )
}
fn gottfr(x: &[Dual]) -> (Dual, Vec<Dual>) {
    (
        Dual::c(0.0),
        vec![
            x[0] - 0.1136 * (x[0] + 3.0 * x[1]) * (1.0 - x[0]),
            x[1] + 7.5 * (2.0 * x[0] - x[1]) * (1.0 - x[1]),
        ],
    )
}
fn genhs28(x: &[Dual]) -> (Dual, Vec<Dual>) {
    let n = x.len();
    let f = (0..n - 1).fold(Dual::c(0.0), |s, i| s + sq(x[i] + x[i + 1]));
    let c = (0..n - 2)
        .map(|i| x[i] + 2.0 * x[i + 1] + 3.0 * x[i + 2] - 1.0)
        .collect();
    (f, c)
}
/// h = 1/(n+1), tᵢ = i h (i = 1..n).
fn grid(n: usize) -> (f64, Vec<f64>) {
    let h = 1.0 / (n as f64 + 1.0);
    (h, (1..=n).map(|i| i as f64 * h).collect())
}
fn morebvne(x: &[Dual]) -> (Dual, Vec<Dual>) {
    let n = x.len();
    let (h, t) = grid(n);
    let at = |i: isize| {
        if i < 0 || i as usize >= n {
            Dual::c(0.0)
        } else {
            x[i as usize]
        }
    };
    let c = (0..n)
        .map(|i| {
            let k = i as isize;
            2.0 * x[i] - at(k - 1) - at(k + 1) + 0.5 * h * h * (x[i] + t[i] + 1.0).powi(3)
        })
        .collect();
    (Dual::c(0.0), c)
}
fn inteqne(x: &[Dual]) -> (Dual, Vec<Dual>) {
    let n = x.len();
    let (h, t) = grid(n);
    let cube: Vec<Dual> = (0..n).map(|j| (x[j] + t[j] + 1.0).powi(3)).collect();
    let c = (0..n)
        .map(|i| {
            let left = (0..=i).fold(Dual::c(0.0), |s, j| s + t[j] * cube[j]);
            let right = (i + 1..n).fold(Dual::c(0.0), |s, j| s + (1.0 - t[j]) * cube[j]);
            x[i] + 0.5 * h * ((1.0 - t[i]) * left + t[i] * right)
        })
        .collect();
    (Dual::c(0.0), c)
}

fn p(
    name: &'static str,
    x0: Vec<f64>,
    m: usize,
    formula: Formula,
    fstar: f64,
    xstar: Option<Vec<f64>>,
) -> TestProblem {
    TestProblem {
        name,
        x0,
        m,
        formula,
        fstar,
        xstar,
    }
}

/// Every problem of the set, in the order of the official code's problem list where it has them.
pub fn all() -> Vec<TestProblem> {
    let s3 = 3f64.sqrt();
    let a = (1.0f64 / 4.2).sqrt().asin();
    let b = (5.0f64 / 7.2).sqrt().asin();
    let (_, t10) = grid(10);
    let bvp_start: Vec<f64> = t10.iter().map(|t| t * (t - 1.0)).collect();
    let mut genhs28_x0 = vec![1.0; 10];
    genhs28_x0[0] = -4.0;
    vec![
        p("HS6", vec![-1.2, 1.0], 1, hs6, 0.0, Some(vec![1.0, 1.0])),
        p("BT5", vec![2.0, 2.0, 2.0], 2, bt5, 961.715_172_1, None),
        p(
            "BT9",
            vec![2.0; 4],
            2,
            bt9,
            -1.0,
            Some(vec![1.0, 1.0, 0.0, 0.0]),
        ),
        p(
            "HS28",
            vec![-4.0, 1.0, 1.0],
            1,
            hs28,
            0.0,
            Some(vec![0.5, -0.5, 0.5]),
        ),
        p("BT10", vec![2.0, 2.0], 2, bt10, -1.0, Some(vec![1.0, 1.0])),
        p(
            "BT12",
            vec![15.0, -2.0, 0.0, 1.0, 0.0],
            3,
            bt12,
            6.188_118_81,
            None,
        ),
        p(
            "HS40",
            vec![0.8; 4],
            3,
            hs40,
            -0.25,
            Some(vec![
                2f64.powf(-1.0 / 3.0),
                2f64.powf(-0.5),
                2f64.powf(-11.0 / 12.0),
                2f64.powf(-0.25),
            ]),
        ),
        p(
            "HS42",
            vec![1.0; 4],
            2,
            hs42,
            28.0 - 10.0 * SQRT2,
            Some(vec![2.0, 2.0, 0.6 * SQRT2, 0.8 * SQRT2]),
        ),
        p("HS7", vec![2.0, 2.0], 1, hs7, -s3, Some(vec![0.0, s3])),
        p("GENHS28", genhs28_x0, 8, genhs28, 0.927_173_692, None),
        p(
            "HS51",
            vec![2.5, 0.5, 2.0, -1.0, 0.5],
            3,
            hs51,
            0.0,
            Some(vec![1.0; 5]),
        ),
        p("BOOTH", vec![0.0, 0.0], 2, booth, 0.0, Some(vec![1.0, 3.0])),
        p(
            "HS52",
            vec![2.0; 5],
            3,
            hs52,
            1859.0 / 349.0,
            Some(vec![
                -33.0 / 349.0,
                11.0 / 349.0,
                180.0 / 349.0,
                -158.0 / 349.0,
                11.0 / 349.0,
            ]),
        ),
        p(
            "HS47",
            vec![2.0, SQRT2, -1.0, 2.0 - SQRT2, 0.5],
            3,
            hs47,
            0.0,
            Some(vec![1.0; 5]),
        ),
        p(
            "HS48",
            vec![3.0, 5.0, -3.0, 2.0, -2.0],
            2,
            hs48,
            0.0,
            Some(vec![1.0; 5]),
        ),
        p(
            "HS50",
            vec![35.0, -31.0, 11.0, 5.0, -5.0],
            3,
            hs50,
            0.0,
            Some(vec![1.0; 5]),
        ),
        p(
            "RSNBRNE",
            vec![-1.2, 1.0],
            2,
            rsnbrne,
            0.0,
            Some(vec![1.0, 1.0]),
        ),
        p(
            "CUBENE",
            vec![-1.2, 1.0],
            2,
            cubene,
            0.0,
            Some(vec![1.0, 1.0]),
        ),
        p("HS77", vec![2.0; 5], 2, hs77, 0.241_505_13, None),
        p(
            "ZANGWIL3",
            vec![100.0, -1.0, 2.5],
            3,
            zangwil3,
            0.0,
            Some(vec![0.0; 3]),
        ),
        p(
            "HS78",
            vec![-2.0, 1.5, 2.0, -1.0, -1.0],
            3,
            hs78,
            -2.919_700_41,
            None,
        ),
        p(
            "HS56",
            vec![1.0, 1.0, 1.0, a, a, a, b],
            4,
            hs56,
            -3.456,
            Some(vec![
                2.4,
                1.2,
                1.2,
                (4.0f64 / 7.0).sqrt().asin(),
                (2.0f64 / 7.0).sqrt().asin(),
                (2.0f64 / 7.0).sqrt().asin(),
                std::f64::consts::FRAC_PI_2,
            ]),
        ),
        p("HS79", vec![2.0; 5], 3, hs79, 0.078_776_821, None),
        p(
            "HS100LNP",
            vec![1.0, 2.0, 0.0, 4.0, 0.0, 1.0, 1.0],
            2,
            hs100lnp,
            680.630_057_4,
            None,
        ),
        p("GOTTFR", vec![0.5, 0.5], 2, gottfr, 0.0, None),
        p(
            "DENSCHNCNE",
            vec![2.0, 3.0],
            2,
            denschncne,
            0.0,
            Some(vec![1.0, 1.0]),
        ),
        p(
            "DENSCHNFNE",
            vec![2.0, 0.0],
            2,
            denschnfne,
            0.0,
            Some(vec![1.0, 1.0]),
        ),
        p(
            "HIMMELBC",
            vec![1.0, 1.0],
            2,
            himmelbc,
            0.0,
            Some(vec![3.0, 2.0]),
        ),
        p("MOREBVNE", bvp_start.clone(), 10, morebvne, 0.0, None),
        p("INTEQNE", bvp_start, 10, inteqne, 0.0, None),
        p("BT2", vec![10.0; 3], 1, bt2, 0.032_568_200, None),
    ]
}

/// The problem `name` (case-insensitive).
pub fn by_name(name: &str) -> Result<TestProblem> {
    let all = all();
    let names: Vec<&str> = all.iter().map(|p| p.name).collect();
    all.iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .cloned()
        .ok_or_else(|| {
            Error::invalid(format!(
                "unknown problem '{name}'; the set has {}",
                names.join(", ")
            ))
        })
}
