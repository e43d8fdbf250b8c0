//! Mixed equilibria of finite two-player zero-sum games: the linear program at the heart
//! of Parallel Nash Memory (Oliehoek et al., "Generative Adversarial Network Games",
//! 2018), which re-solves the empirical payoff matrix between the generators and
//! classifiers found so far at every iteration.
//!
//! The row player maximises, the column player minimises the payoff `A[i][j]`. The row
//! player's maximin strategy solves
//!
//! ```text
//! max_{p, v}  v   s.t.   sum_i p_i A[i][j] >= v  (every column j),   sum_i p_i = 1,  p >= 0
//! ```
//!
//! and, by LP duality, the multipliers of the column constraints are the column player's
//! minimax strategy `q`, with the same value `v` (von Neumann). The LP is solved by the
//! interior-point method of [`crate::reference::Qp`] (`clarabel`).

use crate::reference::Qp;

/// A game could not be solved.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GameError {
    /// No row or no column.
    #[error("the payoff matrix is empty ({rows} x {cols})")]
    Empty {
        /// Rows.
        rows: usize,
        /// Columns of the first row.
        cols: usize,
    },
    /// Rows of different lengths.
    #[error("payoff row {row} has {len} entries, row 0 has {expected}")]
    Ragged {
        /// The offending row.
        row: usize,
        /// Its length.
        len: usize,
        /// The first row's length.
        expected: usize,
    },
    /// A NaN or infinite payoff.
    #[error("payoff [{row}][{col}] is not finite ({value})")]
    NonFinite {
        /// Row.
        row: usize,
        /// Column.
        col: usize,
        /// The value.
        value: f64,
    },
    /// The solver did not reach an optimum.
    #[error("the matrix-game LP was not solved: {0}")]
    Solver(String),
}

/// A mixed equilibrium: both strategies and the game's value.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Equilibrium {
    /// The row (maximising) player's mixture.
    pub row: Vec<f64>,
    /// The column (minimising) player's mixture.
    pub col: Vec<f64>,
    /// The value of the game to the row player.
    pub value: f64,
}

impl Equilibrium {
    /// How much each player could gain by deviating to a pure best response (both >= 0,
    /// zero at an exact equilibrium): `(max_i (A q)_i - v, v - min_j (p' A)_j)`.
    pub fn exploitability(&self, payoff: &[Vec<f64>]) -> (f64, f64) {
        let row_best = payoff
            .iter()
            .map(|r| r.iter().zip(&self.col).map(|(a, q)| a * q).sum::<f64>())
            .fold(f64::NEG_INFINITY, f64::max);
        let cols = payoff.first().map_or(0, Vec::len);
        let col_best = (0..cols)
            .map(|j| {
                payoff
                    .iter()
                    .zip(&self.row)
                    .map(|(r, p)| r[j] * p)
                    .sum::<f64>()
            })
            .fold(f64::INFINITY, f64::min);
        (row_best - self.value, self.value - col_best)
    }
}

/// Solves the zero-sum game with payoff matrix `payoff` (rows: maximiser's pure
/// strategies; columns: minimiser's).
pub fn solve(payoff: &[Vec<f64>]) -> Result<Equilibrium, GameError> {
    let rows = payoff.len();
    let cols = payoff.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 {
        return Err(GameError::Empty { rows, cols });
    }
    for (i, r) in payoff.iter().enumerate() {
        if r.len() != cols {
            return Err(GameError::Ragged {
                row: i,
                len: r.len(),
                expected: cols,
            });
        }
        if let Some((j, &value)) = r.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(GameError::NonFinite {
                row: i,
                col: j,
                value,
            });
        }
    }
    // Variables x = (p_1..p_rows, v); minimise -v.
    let n = rows + 1;
    let mut q = vec![0.0; n];
    q[rows] = -1.0;
    let mut a_in = Vec::with_capacity(cols + rows);
    let mut b_in = Vec::with_capacity(cols + rows);
    // v - sum_i p_i A[i][j] <= 0, one per column: their multipliers are q.
    for j in 0..cols {
        let mut row: Vec<f64> = payoff.iter().map(|r| -r[j]).collect();
        row.push(1.0);
        a_in.push(row);
        b_in.push(0.0);
    }
    // -p_i <= 0.
    for i in 0..rows {
        let mut row = vec![0.0; n];
        row[i] = -1.0;
        a_in.push(row);
        b_in.push(0.0);
    }
    let mut simplex = vec![1.0; n];
    simplex[rows] = 0.0;
    let lp = Qp {
        p: vec![vec![0.0; n]; n],
        q,
        a_eq: vec![simplex],
        b_eq: vec![1.0],
        a_in,
        b_in,
    };
    let s = lp.solve().map_err(GameError::Solver)?;
    // Interior-point solutions are feasible to ~1e-12: clip and renormalise so the
    // mixtures are exact distributions.
    let normalise = |v: &[f64]| -> Vec<f64> {
        let v: Vec<f64> = v.iter().map(|x| x.max(0.0)).collect();
        let total: f64 = v.iter().sum();
        v.iter().map(|x| x / total).collect()
    };
    Ok(Equilibrium {
        row: normalise(&s.x[..rows]),
        col: normalise(&s.lambda[..cols]),
        value: s.x[rows],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-7)
    }

    fn check(payoff: &[Vec<f64>], row: &[f64], col: &[f64], value: f64) {
        let e = solve(payoff).unwrap();
        assert!(close(&e.row, row), "{e:?}");
        assert!(close(&e.col, col), "{e:?}");
        assert!((e.value - value).abs() < 1e-7, "{e:?}");
        let (r, c) = e.exploitability(payoff);
        assert!(r.abs() < 1e-7 && c.abs() < 1e-7, "{r} {c}");
    }

    #[test]
    fn matching_pennies_is_a_fair_coin() {
        check(
            &[vec![1.0, -1.0], vec![-1.0, 1.0]],
            &[0.5, 0.5],
            &[0.5, 0.5],
            0.0,
        );
    }

    #[test]
    fn rock_paper_scissors_is_uniform() {
        let third = 1.0 / 3.0;
        check(
            &[
                vec![0.0, -1.0, 1.0],
                vec![1.0, 0.0, -1.0],
                vec![-1.0, 1.0, 0.0],
            ],
            &[third; 3],
            &[third; 3],
            0.0,
        );
    }

    /// Row 0 dominates row 1; against it column 1 is the minimiser's best: a pure saddle
    /// point at (0, 1) with value 1.
    #[test]
    fn a_dominated_strategy_gets_no_weight() {
        check(
            &[vec![3.0, 1.0], vec![2.0, 0.0]],
            &[1.0, 0.0],
            &[0.0, 1.0],
            1.0,
        );
    }

    /// A 2x2 game without a saddle point: p_0 = (d - c) / (a - b - c + d), q_0 = (d - b) /
    /// (a - b - c + d), v = (ad - bc) / (a - b - c + d).
    #[test]
    fn a_mixed_2x2_matches_the_closed_form() {
        let (a, b, c, d) = (2.0, -1.0, -1.0, 1.0);
        let den = a - b - c + d;
        check(
            &[vec![a, b], vec![c, d]],
            &[(d - c) / den, 1.0 - (d - c) / den],
            &[(d - b) / den, 1.0 - (d - b) / den],
            (a * d - b * c) / den,
        );
    }

    /// Non-square: the row player mixes 2 of 3 strategies against 2 columns.
    #[test]
    fn a_rectangular_game_has_zero_exploitability() {
        let payoff = vec![vec![4.0, 0.0], vec![0.0, 4.0], vec![1.0, 1.0]];
        let e = solve(&payoff).unwrap();
        assert!((e.value - 2.0).abs() < 1e-7, "{e:?}");
        assert!(e.row[2] < 1e-7);
        let (r, c) = e.exploitability(&payoff);
        assert!(r.abs() < 1e-7 && c.abs() < 1e-7);
    }

    #[test]
    fn bad_matrices_are_clear_errors() {
        assert_eq!(
            solve(&[]).unwrap_err(),
            GameError::Empty { rows: 0, cols: 0 }
        );
        assert_eq!(
            solve(&[vec![]]).unwrap_err(),
            GameError::Empty { rows: 1, cols: 0 }
        );
        assert_eq!(
            solve(&[vec![1.0, 2.0], vec![3.0]]).unwrap_err().to_string(),
            "payoff row 1 has 1 entries, row 0 has 2"
        );
        let e = solve(&[vec![1.0, f64::NAN]]).unwrap_err();
        assert_eq!(e.to_string(), "payoff [0][1] is not finite (NaN)");
        assert!(solve(&[vec![f64::INFINITY]]).is_err());
    }
}
