//! The bilevel problems and methods by name, as `optlab bilevel --problem P --method M` takes them: methods are
//! spec strings (`implicit:solver=cg,tol=1e-8`), parsed once into typed settings.

use super::borep::{Algorithm, BoRepConfig, StocBioConfig};
use super::lvhba::LvHbaConfig;
use crate::implicit::linear::{SolveOptions, Solver};
use crate::spec::{unknown_name, Spec};
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A bilevel problem on the embedded digits (or the paper's toy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// Per-pixel ridge strengths (P10).
    RidgeHparam,
    /// Per-pixel L2 strengths of a logistic regression (P10).
    LogregHparam,
    /// One synthetic image per class (P10).
    Distill,
    /// A tanh RNN's representation for a linear head (P05).
    HyperRep,
    /// The official toy problem of LV-HBA (P13).
    ToyConstrained,
    /// Per-class costs of a soft-margin SVM on digits 3 against 8 (P13, P10).
    SvmHparam,
}

impl Problem {
    /// Every problem's name.
    pub const NAMES: &'static [&'static str] = &[
        "ridge-hparam",
        "logreg-hparam",
        "distill",
        "hyper-rep",
        "toy-constrained",
        "svm-hparam",
    ];

    /// The method used when none is given.
    pub fn default_method(self) -> Method {
        match self {
            Problem::HyperRep => Method::BoRep(BoRepConfig::default()),
            Problem::ToyConstrained | Problem::SvmHparam => Method::LvHba(LvHbaSpec::default()),
            _ => Method::Implicit(ImplicitSpec::default()),
        }
    }

    /// LV-HBA's defaults for this problem: the official toy script's (with z₀ = −1) for toy-constrained, the
    /// official SVM script's (α = η = 0.01, β = 0.1, γ = 10, c_k = (k+1)^0.5, λ₀ = z₀ = 1) otherwise.
    pub fn lvhba_defaults(self) -> LvHbaConfig {
        match self {
            Problem::ToyConstrained => LvHbaConfig {
                z0: -1.0,
                ..LvHbaConfig::default()
            },
            _ => LvHbaConfig {
                alpha: 0.01,
                beta: 0.1,
                eta: 0.01,
                gamma1: 10.0,
                gamma2: 10.0,
                u: 1000.0,
                c_bar: 1.0,
                c_power: 0.5,
                lambda0: 1.0,
                z0: 1.0,
            },
        }
    }

    /// Whether `method` can solve it (the error names the ones that can).
    pub fn check(self, method: &Method) -> Result<()> {
        let fits = matches!(
            (self, method),
            (
                Problem::RidgeHparam | Problem::LogregHparam | Problem::Distill,
                Method::Implicit(_)
            ) | (Problem::HyperRep, Method::BoRep(_) | Method::StocBio(_))
                | (Problem::ToyConstrained, Method::LvHba(_))
                | (
                    Problem::SvmHparam,
                    Method::LvHba(_) | Method::Implicit(_) | Method::Grid { .. }
                )
        );
        if fits {
            return Ok(());
        }
        let by = match self {
            Problem::HyperRep => "bo-rep, stocbio",
            Problem::ToyConstrained => "lv-hba",
            Problem::SvmHparam => "lv-hba, implicit, grid",
            _ => "implicit",
        };
        Err(Error::invalid(format!(
            "--problem {self} is solved by: {by} (not {})",
            method.name()
        )))
    }
}

impl FromStr for Problem {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.trim() {
            "ridge-hparam" => Problem::RidgeHparam,
            "logreg-hparam" => Problem::LogregHparam,
            "distill" => Problem::Distill,
            "hyper-rep" => Problem::HyperRep,
            "toy-constrained" => Problem::ToyConstrained,
            "svm-hparam" => Problem::SvmHparam,
            other => return Err(unknown_name("bilevel problem", other, Self::NAMES)),
        })
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Problem::RidgeHparam => "ridge-hparam",
            Problem::LogregHparam => "logreg-hparam",
            Problem::Distill => "distill",
            Problem::HyperRep => "hyper-rep",
            Problem::ToyConstrained => "toy-constrained",
            Problem::SvmHparam => "svm-hparam",
        })
    }
}

/// The implicit route's settings: the linear solver and the upper optimizer's learning rate.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ImplicitSpec {
    /// The solver (`None`: the problem's; CG for the strongly convex lower levels here).
    pub solver: Option<Solver>,
    /// Tolerance, iteration limit and ridge (`solve.solver` is not used).
    pub solve: SolveOptions,
    /// Adam's learning rate on the upper variables (`None`: the problem's default).
    pub lr: Option<f64>,
}

impl ImplicitSpec {
    /// Sets `cfg`'s solver, learning rate (keeping its optimizer) and step count.
    pub fn apply(
        &self,
        cfg: &mut crate::bilevel::hypergrad::ImplicitConfig,
        steps: Option<usize>,
    ) -> Result<()> {
        cfg.solve = SolveOptions {
            solver: self.solver.unwrap_or(cfg.solve.solver),
            ..self.solve
        };
        if let Some(lr) = self.lr {
            cfg.outer = cfg.outer.with("lr", lr)?;
        }
        if let Some(s) = steps {
            cfg.steps = s;
        }
        Ok(())
    }
}

/// LV-HBA settings given in a spec; the rest come from the problem ([`Problem::lvhba_defaults`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LvHbaSpec {
    pub alpha: Option<f64>,
    pub beta: Option<f64>,
    pub eta: Option<f64>,
    pub gamma1: Option<f64>,
    pub gamma2: Option<f64>,
    pub u: Option<f64>,
    pub c_bar: Option<f64>,
    pub c_power: Option<f64>,
    pub lambda0: Option<f64>,
    pub z0: Option<f64>,
}

impl LvHbaSpec {
    /// `base` with the given keys replaced.
    pub fn apply(&self, base: LvHbaConfig) -> LvHbaConfig {
        LvHbaConfig {
            alpha: self.alpha.unwrap_or(base.alpha),
            beta: self.beta.unwrap_or(base.beta),
            eta: self.eta.unwrap_or(base.eta),
            gamma1: self.gamma1.unwrap_or(base.gamma1),
            gamma2: self.gamma2.unwrap_or(base.gamma2),
            u: self.u.unwrap_or(base.u),
            c_bar: self.c_bar.unwrap_or(base.c_bar),
            c_power: self.c_power.unwrap_or(base.c_power),
            lambda0: self.lambda0.unwrap_or(base.lambda0),
            z0: self.z0.unwrap_or(base.z0),
        }
    }
}

/// A bilevel method.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// Hypergradient descent by implicit differentiation (P10).
    Implicit(ImplicitSpec),
    /// BO-REP (P05), or its unnormalized variant with `normalized=false`.
    BoRep(BoRepConfig),
    /// StocBiO, the Neumann-series baseline.
    StocBio(StocBioConfig),
    /// LV-HBA (P13): the keys given; the others are the problem's defaults.
    LvHba(LvHbaSpec),
    /// A grid search over two log-costs in [lo, hi]², `points` per axis (svm-hparam's baseline).
    Grid { lo: f64, hi: f64, points: usize },
}

impl Method {
    /// Every method's name.
    pub const NAMES: &'static [&'static str] = &["implicit", "bo-rep", "stocbio", "lv-hba", "grid"];

    /// The method's name.
    pub fn name(&self) -> &'static str {
        match self {
            Method::Implicit(_) => "implicit",
            Method::BoRep(_) => "bo-rep",
            Method::StocBio(_) => "stocbio",
            Method::LvHba(_) => "lv-hba",
            Method::Grid { .. } => "grid",
        }
    }
}

fn positive(name: &str, key: &str, v: f64) -> Result<f64> {
    if v > 0.0 {
        Ok(v)
    } else {
        Err(Error::invalid(format!(
            "{name}: {key}={v} must be positive"
        )))
    }
}

fn at_least_one(name: &str, key: &str, v: usize) -> Result<usize> {
    if v >= 1 {
        Ok(v)
    } else {
        Err(Error::invalid(format!(
            "{name}: {key}=0 must be at least 1"
        )))
    }
}

impl FromStr for Method {
    type Err = Error;
    /// `implicit[:solver=normal-cg|cg|gmres|bicgstab|lu|cholesky,tol=1e-10,max_iter=1000,ridge=0,restart=30,verify=true,lr=..]`.
    fn from_str(s: &str) -> Result<Self> {
        let mut spec = Spec::parse(s)?;
        let m = match spec.name.as_str() {
            "implicit" => {
                let d = SolveOptions::default();
                let solver = if spec.has("solver") {
                    Some(spec.string("solver", "").parse::<Solver>()?)
                } else {
                    None
                };
                let restart = at_least_one("implicit", "restart", spec.usize("restart", 30)?)?;
                let solver = solver.map(|s| match s {
                    Solver::Gmres { .. } => Solver::Gmres { restart },
                    other => other,
                });
                let solve = SolveOptions {
                    solver: d.solver,
                    tol: positive("implicit", "tol", spec.f64("tol", d.tol)?)?,
                    max_iter: at_least_one(
                        "implicit",
                        "max_iter",
                        spec.usize("max_iter", d.max_iter)?,
                    )?,
                    ridge: spec.f64("ridge", d.ridge)?,
                    verify: spec.bool("verify", d.verify)?,
                };
                let lr = if spec.has("lr") {
                    Some(positive("implicit", "lr", spec.f64("lr", 0.0)?)?)
                } else {
                    None
                };
                Method::Implicit(ImplicitSpec { solver, solve, lr })
            }
            "bo-rep" => {
                let d = BoRepConfig::default();
                let c = BoRepConfig {
                    lr: spec.f64("lr", d.lr)?,
                    beta: spec.f64("beta", d.beta)?,
                    normalized: spec.bool("normalized", d.normalized)?,
                    inner_lr: spec.f64("inner_lr", d.inner_lr)?,
                    nu: spec.f64("nu", d.nu)?,
                    interval: spec.usize("interval", d.interval)?,
                    warm: spec.usize("warm", d.warm)?,
                    refine: spec.usize("refine", d.refine)?,
                };
                Algorithm::BoRep(c.clone()).check()?;
                Method::BoRep(c)
            }
            "stocbio" => {
                let d = StocBioConfig::default();
                let c = StocBioConfig {
                    lr: spec.f64("lr", d.lr)?,
                    inner_lr: spec.f64("inner_lr", d.inner_lr)?,
                    inner_steps: spec.usize("inner_steps", d.inner_steps)?,
                    neumann_terms: spec.usize("q", d.neumann_terms)?,
                    neumann_lr: spec.f64("neumann_lr", d.neumann_lr)?,
                };
                Algorithm::StocBio(c.clone()).check()?;
                Method::StocBio(c)
            }
            "lv-hba" => {
                let mut o = LvHbaSpec::default();
                for (key, slot) in [
                    ("alpha", &mut o.alpha),
                    ("beta", &mut o.beta),
                    ("eta", &mut o.eta),
                    ("gamma1", &mut o.gamma1),
                    ("gamma2", &mut o.gamma2),
                    ("u", &mut o.u),
                    ("c", &mut o.c_bar),
                    ("p", &mut o.c_power),
                    ("lambda0", &mut o.lambda0),
                    ("z0", &mut o.z0),
                ] {
                    if spec.has(key) {
                        *slot = Some(spec.f64(key, 0.0)?);
                    }
                }
                o.apply(LvHbaConfig::default()).check()?;
                Method::LvHba(o)
            }
            "grid" => {
                let (lo, hi) = (spec.f64("lo", -4.0)?, spec.f64("hi", 4.0)?);
                let points = spec.usize("points", 9)?;
                if points < 2 || lo >= hi {
                    return Err(Error::invalid(format!(
                        "grid: points={points} must be at least 2 and lo={lo} below hi={hi}"
                    )));
                }
                Method::Grid { lo, hi, points }
            }
            other => return Err(unknown_name("bilevel method", other, Self::NAMES)),
        };
        spec.finish()?;
        Ok(m)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Implicit(s) => {
                f.write_str("implicit")?;
                let mut sep = ':';
                if let Some(solver) = s.solver {
                    write!(f, "{sep}solver={solver}")?;
                    sep = ',';
                }
                write!(f, "{sep}tol={:e}", s.solve.tol)?;
                if let Some(lr) = s.lr {
                    write!(f, ",lr={lr}")?;
                }
                Ok(())
            }
            Method::BoRep(c) => write!(
                f,
                "bo-rep:lr={},beta={},normalized={},inner_lr={},nu={},interval={},warm={},refine={}",
                c.lr, c.beta, c.normalized, c.inner_lr, c.nu, c.interval, c.warm, c.refine
            ),
            Method::StocBio(c) => write!(
                f,
                "stocbio:lr={},inner_lr={},inner_steps={},q={},neumann_lr={}",
                c.lr, c.inner_lr, c.inner_steps, c.neumann_terms, c.neumann_lr
            ),
            Method::LvHba(o) => {
                f.write_str("lv-hba")?;
                let mut sep = ':';
                for (k, v) in [
                    ("alpha", o.alpha),
                    ("beta", o.beta),
                    ("eta", o.eta),
                    ("gamma1", o.gamma1),
                    ("gamma2", o.gamma2),
                    ("u", o.u),
                    ("c", o.c_bar),
                    ("p", o.c_power),
                    ("lambda0", o.lambda0),
                    ("z0", o.z0),
                ] {
                    if let Some(v) = v {
                        write!(f, "{sep}{k}={v}")?;
                        sep = ',';
                    }
                }
                Ok(())
            }
            Method::Grid { lo, hi, points } => write!(f, "grid:lo={lo},hi={hi},points={points}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_problems_and_methods() {
        for name in Problem::NAMES {
            assert_eq!(name.parse::<Problem>().unwrap().to_string(), *name);
        }
        assert!("maml".parse::<Problem>().is_err());
        let Ok(Method::Implicit(s)) = "implicit:solver=gmres,restart=5,tol=1e-8,lr=0.1".parse()
        else {
            panic!("an implicit spec")
        };
        assert_eq!(s.solver, Some(Solver::Gmres { restart: 5 }));
        assert_eq!((s.solve.tol, s.lr), (1e-8, Some(0.1)));
        let m: Method = "bo-rep:normalized=false,lr=0.5".parse().unwrap();
        assert_eq!(m.to_string().parse::<Method>().unwrap(), m);
        let m: Method = "stocbio:q=3".parse().unwrap();
        assert_eq!(m.to_string().parse::<Method>().unwrap(), m);
        assert!(Problem::HyperRep
            .check(&"implicit".parse().unwrap())
            .is_err());
        for bad in [
            "bo-rep:beta=1",
            "bo-rep:interval=0",
            "bo-rep:lr=0",
            "stocbio:q=0",
            "stocbio:neumann_lr=-1",
            "implicit:max_iter=0",
            "implicit:restart=0",
            "implicit:solver=qr",
            "implicit:tol=0",
            "implicit:lr=-1",
            "implicit:step=3",
            "newton",
        ] {
            assert!(bad.parse::<Method>().is_err(), "{bad}");
        }
    }
}
