//! How a controlled quantity approaches its set point: the two figures the nuPI paper
//! (Sohrabi et al. 2024, Sec. 5) compares multiplier updates by, overshoot past the target
//! and the time to settle inside a band around it.

/// Overshoot and settling of a signal that starts above its target and is driven down to it
/// (e.g. a network's density driven to a target density).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Transient {
    /// First index at which the signal is at or below the target; `None` if it never gets
    /// there.
    pub first_reach: Option<usize>,
    /// How far below the target the signal goes, from its first reach on (0 when it never
    /// goes below). `None` when it never reaches the target.
    pub overshoot: Option<f64>,
    /// First index after which the signal stays within `target +- band` for good;
    /// `None` when it is outside the band at the last sample.
    pub settle: Option<usize>,
}

/// Measures `signal` against `target` with a settling band of half-width `band`.
pub fn transient(signal: &[f64], target: f64, band: f64) -> Transient {
    let first_reach = signal.iter().position(|&v| v <= target);
    let overshoot = first_reach.map(|f| {
        signal[f..]
            .iter()
            .map(|&v| target - v)
            .fold(0.0f64, f64::max)
    });
    // NaN counts as outside the band.
    let outside = |v: &f64| {
        let d = (v - target).abs();
        d.is_nan() || d > band
    };
    let settle = match signal.iter().rposition(outside) {
        None => Some(0),
        Some(p) if p + 1 < signal.len() => Some(p + 1),
        Some(_) => None,
    };
    Transient {
        first_reach,
        overshoot,
        settle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damped_descent() {
        // 1.0 down to 0.05 (overshoot 0.05 below 0.1), then back into the +-0.01 band at 6.
        let s = [1.0, 0.5, 0.2, 0.1, 0.05, 0.08, 0.095, 0.1, 0.105];
        let t = transient(&s, 0.1, 0.01);
        assert_eq!(t.first_reach, Some(3));
        assert!((t.overshoot.unwrap() - 0.05).abs() < 1e-12);
        assert_eq!(t.settle, Some(6));
    }

    #[test]
    fn never_reaching_and_never_settling() {
        let t = transient(&[1.0, 0.9, 0.8], 0.1, 0.01);
        assert_eq!((t.first_reach, t.overshoot, t.settle), (None, None, None));
        // Reaches without going below: zero overshoot; outside the band at the end.
        let t = transient(&[0.3, 0.1, 0.2], 0.1, 0.01);
        assert_eq!(t.overshoot, Some(0.0));
        assert_eq!(t.settle, None);
        // A NaN counts as outside the band.
        assert_eq!(transient(&[0.1, f64::NAN, 0.1], 0.1, 0.01).settle, Some(2));
        assert_eq!(transient(&[0.1, 0.1], 0.1, 0.01).settle, Some(0));
    }
}
