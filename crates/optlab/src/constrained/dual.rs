//! Hyper-dual numbers v + a ε₁ + b ε₂ + ab ε₁ε₂ (ε₁² = ε₂² = 0): one evaluation of a formula gives its value, the
//! directional derivatives along two directions and the mixed second derivative, exactly. The test problems of
//! [`super::problems`] are written once over [`Dual`] and differentiate themselves: ∂f/∂xᵢ with ε₁ on xᵢ,
//! ∂²f/∂xᵢ∂xⱼ with ε₁ on xᵢ and ε₂ on xⱼ.

use std::ops::{Add, Div, Mul, Neg, Sub};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dual {
    pub v: f64,
    pub a: f64,
    pub b: f64,
    pub ab: f64,
}

impl Dual {
    /// A constant.
    pub const fn c(v: f64) -> Self {
        Dual {
            v,
            a: 0.0,
            b: 0.0,
            ab: 0.0,
        }
    }

    /// g(self) for g with g(v), g'(v) and g''(v) given (the chain rule to second order).
    fn chain(self, g: f64, g1: f64, g2: f64) -> Self {
        Dual {
            v: g,
            a: g1 * self.a,
            b: g1 * self.b,
            ab: g1 * self.ab + g2 * self.a * self.b,
        }
    }

    pub fn powi(self, k: i32) -> Self {
        let v = self.v;
        let kf = k as f64;
        self.chain(
            v.powi(k),
            kf * v.powi(k - 1),
            kf * (kf - 1.0) * v.powi(k - 2),
        )
    }
    pub fn sin(self) -> Self {
        self.chain(self.v.sin(), self.v.cos(), -self.v.sin())
    }
    pub fn cos(self) -> Self {
        self.chain(self.v.cos(), -self.v.sin(), -self.v.cos())
    }
    pub fn exp(self) -> Self {
        let e = self.v.exp();
        self.chain(e, e, e)
    }
    pub fn ln(self) -> Self {
        self.chain(self.v.ln(), 1.0 / self.v, -1.0 / (self.v * self.v))
    }
    pub fn sqrt(self) -> Self {
        let s = self.v.sqrt();
        self.chain(s, 0.5 / s, -0.25 / (s * self.v))
    }
    pub fn recip(self) -> Self {
        let v = self.v;
        self.chain(1.0 / v, -1.0 / (v * v), 2.0 / (v * v * v))
    }
}

impl Add for Dual {
    type Output = Dual;
    fn add(self, o: Dual) -> Dual {
        Dual {
            v: self.v + o.v,
            a: self.a + o.a,
            b: self.b + o.b,
            ab: self.ab + o.ab,
        }
    }
}

impl Sub for Dual {
    type Output = Dual;
    fn sub(self, o: Dual) -> Dual {
        self + (-o)
    }
}

impl Neg for Dual {
    type Output = Dual;
    fn neg(self) -> Dual {
        Dual {
            v: -self.v,
            a: -self.a,
            b: -self.b,
            ab: -self.ab,
        }
    }
}

impl Mul for Dual {
    type Output = Dual;
    fn mul(self, o: Dual) -> Dual {
        Dual {
            v: self.v * o.v,
            a: self.a * o.v + self.v * o.a,
            b: self.b * o.v + self.v * o.b,
            ab: self.ab * o.v + self.a * o.b + self.b * o.a + self.v * o.ab,
        }
    }
}

impl Div for Dual {
    type Output = Dual;
    #[allow(clippy::suspicious_arithmetic_impl)]
    fn div(self, o: Dual) -> Dual {
        self * o.recip()
    }
}

macro_rules! with_f64 {
    ($($tr:ident $f:ident),*) => {$(
        impl $tr<f64> for Dual {
            type Output = Dual;
            fn $f(self, o: f64) -> Dual {
                $tr::$f(self, Dual::c(o))
            }
        }
        impl $tr<Dual> for f64 {
            type Output = Dual;
            fn $f(self, o: Dual) -> Dual {
                $tr::$f(Dual::c(self), o)
            }
        }
    )*};
}
with_f64!(Add add, Sub sub, Mul mul, Div div);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_derivatives_of_a_composite_formula() {
        // f(x, y) = sin(x) y³ / (1 + x²) + exp(x y) + ln(y) + sqrt(x): compare with central differences.
        let f = |x: Dual, y: Dual| {
            (x.sin() * y.powi(3)) / (1.0 + x * x) + (x * y).exp() + y.ln() + x.sqrt()
        };
        let (x0, y0) = (0.7, 1.3);
        let at = |dx: (f64, f64, f64), dy: (f64, f64, f64)| {
            f(
                Dual {
                    v: x0,
                    a: dx.0,
                    b: dx.1,
                    ab: dx.2,
                },
                Dual {
                    v: y0,
                    a: dy.0,
                    b: dy.1,
                    ab: dy.2,
                },
            )
        };
        let fxy = at((1.0, 0.0, 0.0), (0.0, 1.0, 0.0));
        let fxx = at((1.0, 1.0, 0.0), (0.0, 0.0, 0.0));
        let plain = |x: f64, y: f64| f(Dual::c(x), Dual::c(y)).v;
        let h = 1e-4;
        let dx = (plain(x0 + h, y0) - plain(x0 - h, y0)) / (2.0 * h);
        let dxx = (plain(x0 + h, y0) - 2.0 * plain(x0, y0) + plain(x0 - h, y0)) / (h * h);
        let dxy = (plain(x0 + h, y0 + h) - plain(x0 + h, y0 - h) - plain(x0 - h, y0 + h)
            + plain(x0 - h, y0 - h))
            / (4.0 * h * h);
        assert!((fxy.a - dx).abs() < 1e-7, "{} vs {dx}", fxy.a);
        assert!((fxx.ab - dxx).abs() < 1e-5, "{} vs {dxx}", fxx.ab);
        assert!((fxy.ab - dxy).abs() < 1e-5, "{} vs {dxy}", fxy.ab);
    }
}
