//! Money as whole cents, so checkout arithmetic is exact (29.99 × 2 + 49.99 is 109.97, not
//! 109.97000000000001).

use serde::{Deserialize, Serialize};

/// An amount in cents.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Cents(pub i64);

impl Cents {
    /// The nearest cent to a decimal amount (`124.76` → 12476); `None` for NaN or infinity.
    pub fn from_amount(amount: f64) -> Option<Self> {
        amount
            .is_finite()
            .then(|| Self((amount * 100.0).round() as i64))
    }

    /// The amount as a decimal number, for JSON results.
    pub fn as_amount(self) -> f64 {
        self.0 as f64 / 100.0
    }

    /// `rate_percent` of this amount, rounded half away from zero to the cent.
    pub fn percent(self, rate_percent: i64) -> Self {
        let scaled = self.0 * rate_percent;
        Self((scaled + scaled.signum() * 50) / 100)
    }
}

impl std::ops::Add for Cents {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        Self(self.0 + rhs.0)
    }
}

impl std::ops::Mul<i64> for Cents {
    type Output = Self;
    fn mul(self, rhs: i64) -> Self {
        Self(self.0 * rhs)
    }
}

impl std::iter::Sum for Cents {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        Self(iter.map(|c| c.0).sum())
    }
}

impl std::fmt::Display for Cents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.2}", self.as_amount())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_blog_checkout_adds_up() {
        let subtotal = Cents::from_amount(29.99).unwrap() * 2 + Cents::from_amount(49.99).unwrap();
        assert_eq!(subtotal, Cents(10997));
        assert_eq!(subtotal.percent(8), Cents(880));
        assert_eq!(
            (subtotal + subtotal.percent(8) + Cents(599)).to_string(),
            "124.76"
        );
        assert_eq!(Cents(12476).as_amount(), 124.76);
        assert_eq!(Cents::from_amount(f64::NAN), None);
    }
}
