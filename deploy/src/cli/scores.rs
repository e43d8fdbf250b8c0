//! From scores to a predicted class.

/// The predicted class: the [`argmax`] of the scores, or `None` when a score is NaN. A NaN
/// score is no evidence for or against any class, and an argmax over it answers by the
/// order it happens to give NaN (`total_cmp` ranks a positive NaN above everything: an
/// all-NaN row predicted the last class, a negative NaN never wins). Infinite scores are
/// ordinary (`+inf` wins).
pub fn prediction(s: &[f32]) -> Option<usize> {
    if s.iter().any(|v| v.is_nan()) {
        return None;
    }
    Some(argmax(s))
}

/// The first index of the largest score, as numpy's and PyTorch's `argmax` break ties
/// (`max_by` keeps the last of equals; a pruned network often ties on all-zero scores).
pub fn argmax(s: &[f32]) -> usize {
    let mut best = 0;
    for (i, v) in s.iter().enumerate() {
        if v.total_cmp(&s[best]).is_gt() {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    #[test]
    fn argmax_takes_the_first_of_equal_scores() {
        assert_eq!(super::argmax(&[0.0, 0.0, 0.0]), 0);
        assert_eq!(super::argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(super::argmax(&[-1.0, -0.5]), 1);
    }

    #[test]
    fn a_nan_score_is_no_prediction() {
        assert_eq!(super::prediction(&[0.0, f32::NAN]), None);
        assert_eq!(super::prediction(&[0.0, f32::INFINITY]), Some(1));
    }
}
