//! The user cross-alert rule: crossed up when `prev < threshold <= current`,
//! down when `prev > threshold >= current`; no previous value, no cross.

/// Whether and how a value crossed a threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cross {
    /// From below to at-or-above.
    Up,
    /// From above to at-or-below.
    Down,
}

/// The cross between `previous` and `current` over `threshold`, if any.
pub fn crossed(previous: Option<f64>, current: f64, threshold: f64) -> Option<Cross> {
    let previous = previous?;
    if previous < threshold && threshold <= current {
        Some(Cross::Up)
    } else if previous > threshold && threshold >= current {
        Some(Cross::Down)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_rules_of_the_spec() {
        assert_eq!(
            crossed(None, 200.0, 100.0),
            None,
            "no previous value, no cross"
        );
        assert_eq!(
            crossed(Some(99.0), 100.0, 100.0),
            Some(Cross::Up),
            "reaching counts"
        );
        assert_eq!(
            crossed(Some(100.0), 120.0, 100.0),
            None,
            "starting on it is not crossing up"
        );
        assert_eq!(crossed(Some(101.0), 100.0, 100.0), Some(Cross::Down));
        assert_eq!(crossed(Some(120.0), 110.0, 100.0), None);
        assert_eq!(
            crossed(Some(0.0002), -0.0001, 0.0),
            Some(Cross::Down),
            "funding through zero"
        );
    }
}
