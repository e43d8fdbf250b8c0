//! Parallel Nash Memory (PNM): solving a zero-sum game too large to write down by growing
//! both players' strategy sets with best responses (Oliehoek, de Jong & Vlassis 2006,
//! "The Parallel Nash Memory for asymmetric games"; used for GANs in Oliehoek et al.
//! 2018, "Beyond Local Nash Equilibria for Adversarial Networks", Algorithm 1).
//!
//! The loop keeps a finite *empirical game*: the strategies found so far and their payoff
//! matrix. Each iteration solves it exactly ([`matrix_game::solve`]), asks an oracle for a
//! (resource-bounded) best response of each player against the other's current mixture,
//! and stops when neither best response beats the current value by more than `epsilon`:
//! a resource-bounded Nash equilibrium (RB-NE). Otherwise the responses join the
//! supports, the matrix grows by one row and one column, and the loop repeats.
//!
//! With exact best responses over a finite game this is the double-oracle method
//! (McMahan, Gordon & Blum 2003): it stops at an exact equilibrium of the full game, and
//! the bracket it keeps on the full game's value only narrows: the best guarantee a mixture
//! of the row strategies found so far has against *every* column never decreases, and the
//! column player's never increases (the monotone improvement of the Nash memory: each
//! mixture is secure against a growing set of opponents). The empirical value itself is
//! not monotone (new rows raise it, new columns lower it); the tests check the bracket.

use super::matrix_game::{self, Equilibrium, GameError};

/// A game the loop can grow: payoffs between strategies, and best responses.
///
/// The row player maximises the payoff, the column player minimises it.
pub trait BestResponseOracle {
    /// A row (maximiser's) pure strategy, e.g. a generator network.
    type Row;
    /// A column (minimiser's) pure strategy, e.g. a classifier network.
    type Col;
    /// An oracle failure (a NaN loss while training a response, ...).
    type Error;

    /// The payoff of `row` against `col`.
    fn payoff(&mut self, row: &Self::Row, col: &Self::Col) -> Result<f64, Self::Error>;

    /// A row strategy that does well against the mixture `weights` over `cols`.
    fn row_best_response(
        &mut self,
        cols: &[Self::Col],
        weights: &[f64],
    ) -> Result<Self::Row, Self::Error>;

    /// A column strategy that does well against the mixture `weights` over `rows`.
    fn col_best_response(
        &mut self,
        rows: &[Self::Row],
        weights: &[f64],
    ) -> Result<Self::Col, Self::Error>;
}

/// Why the loop stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum PnmError<E: std::fmt::Display> {
    /// The empirical game could not be solved (a non-finite payoff, a solver failure).
    #[error("empirical game: {0}")]
    Game(#[from] GameError),
    /// The oracle failed.
    #[error("best response: {0}")]
    Oracle(E),
    /// A setting out of range.
    #[error("{0}")]
    Config(String),
}

/// Settings of the loop.
#[derive(Clone, Copy, Debug)]
pub struct PnmConfig {
    /// The RB-NE tolerance: stop when neither best response gains more than this.
    pub epsilon: f64,
    /// Stop after this many iterations even without an RB-NE.
    pub max_iterations: usize,
}

/// What one iteration saw. `value` is the empirical game's value before the responses
/// were added; `row_response` and `col_response` are what the new responses earn against
/// the current mixtures. With exact best responses over a finite game,
/// `col_response <= value* <= row_response` brackets the full game's value `value*`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PnmRecord {
    /// 0-based iteration.
    pub iteration: usize,
    /// Strategies per player before this iteration's responses were added.
    pub rows: usize,
    /// Column strategies before this iteration's responses were added.
    pub cols: usize,
    /// The empirical game's equilibrium.
    pub equilibrium: Equilibrium,
    /// Payoff of the new row response against the column mixture.
    pub row_response: f64,
    /// Payoff of the row mixture against the new column response.
    pub col_response: f64,
}

impl PnmRecord {
    /// What the row player gains by deviating to its response (`row_response - value`).
    pub fn row_gain(&self) -> f64 {
        self.row_response - self.equilibrium.value
    }

    /// What the column player gains by deviating (`value - col_response`).
    pub fn col_gain(&self) -> f64 {
        self.equilibrium.value - self.col_response
    }

    /// True when neither response beats the value by more than `epsilon` (an RB-NE).
    pub fn is_rb_nash(&self, epsilon: f64) -> bool {
        self.row_gain() <= epsilon && self.col_gain() <= epsilon
    }
}

/// The loop's result: the strategies, the payoff matrix, the final equilibrium.
#[derive(Debug)]
pub struct PnmOutcome<R, C> {
    /// Row strategies, in the order they were found.
    pub rows: Vec<R>,
    /// Column strategies, in the order they were found.
    pub cols: Vec<C>,
    /// `payoff[i][j]` = payoff of `rows[i]` against `cols[j]`.
    pub payoff: Vec<Vec<f64>>,
    /// The equilibrium of the final empirical game.
    pub equilibrium: Equilibrium,
    /// One record per iteration.
    pub history: Vec<PnmRecord>,
    /// True when the last iteration found an RB-NE (false: stopped by `max_iterations`).
    pub converged: bool,
}

/// What [`parallel_nash_memory`] returns for oracle `O`.
pub type PnmResult<O> = Result<
    PnmOutcome<<O as BestResponseOracle>::Row, <O as BestResponseOracle>::Col>,
    PnmError<<O as BestResponseOracle>::Error>,
>;

/// Runs Parallel Nash Memory from the initial strategies `row0` and `col0`;
/// `on_iteration` sees every record (progress, plots) with the strategies so far.
///
/// # Errors
/// A non-finite payoff, a failed LP, a failed best response, or `epsilon < 0` /
/// `max_iterations == 0`.
pub fn parallel_nash_memory<O: BestResponseOracle>(
    oracle: &mut O,
    row0: O::Row,
    col0: O::Col,
    config: PnmConfig,
    on_iteration: impl FnMut(&PnmRecord, &[O::Row], &[O::Col]),
) -> PnmResult<O>
where
    O::Error: std::fmt::Display,
{
    check_config(&config)?;
    let first = oracle.payoff(&row0, &col0).map_err(PnmError::Oracle)?;
    let start = PnmState {
        rows: vec![row0],
        cols: vec![col0],
        payoff: vec![vec![first]],
        history: Vec::new(),
    };
    parallel_nash_memory_from(oracle, start, config, on_iteration, |_| Ok(()))
}

/// Where a PNM run stands between iterations: the strategies found, their payoff matrix
/// and the iterations' records. What a checkpoint holds, and where a resumed run starts.
#[derive(Clone, Debug)]
pub struct PnmState<R, C> {
    /// Row strategies so far.
    pub rows: Vec<R>,
    /// Column strategies so far.
    pub cols: Vec<C>,
    /// `payoff[i][j]`: row `i` against column `j`.
    pub payoff: Vec<Vec<f64>>,
    /// The iterations run (the next is `history.len()`).
    pub history: Vec<PnmRecord>,
}

fn check_config<E: std::fmt::Display>(config: &PnmConfig) -> Result<(), PnmError<E>> {
    if config.epsilon.is_nan() || config.epsilon < 0.0 {
        return Err(PnmError::Config(format!(
            "epsilon must be >= 0, got {}",
            config.epsilon
        )));
    }
    if config.max_iterations == 0 {
        return Err(PnmError::Config("max_iterations must be >= 1".into()));
    }
    Ok(())
}

/// [`parallel_nash_memory`] from `start` (a checkpoint's state, or the first pair), up to
/// `config.max_iterations` iterations in all. After each iteration that did not converge,
/// `after_iteration(state)` sees the grown state (to checkpoint it); its error stops the
/// run (an interrupt, a checkpoint that cannot be written).
///
/// # Errors
/// As [`parallel_nash_memory`], and `after_iteration`'s.
pub fn parallel_nash_memory_from<O: BestResponseOracle>(
    oracle: &mut O,
    start: PnmState<O::Row, O::Col>,
    config: PnmConfig,
    mut on_iteration: impl FnMut(&PnmRecord, &[O::Row], &[O::Col]),
    mut after_iteration: impl FnMut(&PnmState<O::Row, O::Col>) -> Result<(), O::Error>,
) -> PnmResult<O>
where
    O::Error: std::fmt::Display,
{
    check_config(&config)?;
    let PnmState {
        mut rows,
        mut cols,
        mut payoff,
        mut history,
    } = start;
    let mut converged = false;
    for iteration in history.len()..config.max_iterations {
        let equilibrium = matrix_game::solve(&payoff)?;
        let row = oracle
            .row_best_response(&cols, &equilibrium.col)
            .map_err(PnmError::Oracle)?;
        let col = oracle
            .col_best_response(&rows, &equilibrium.row)
            .map_err(PnmError::Oracle)?;
        // The new row against every column so far, the new column against every row.
        let new_row = cols
            .iter()
            .map(|c| oracle.payoff(&row, c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(PnmError::Oracle)?;
        let new_col = rows
            .iter()
            .map(|r| oracle.payoff(r, &col))
            .collect::<Result<Vec<_>, _>>()
            .map_err(PnmError::Oracle)?;
        let corner = oracle.payoff(&row, &col).map_err(PnmError::Oracle)?;
        let record = PnmRecord {
            iteration,
            rows: rows.len(),
            cols: cols.len(),
            row_response: dot(&new_row, &equilibrium.col),
            col_response: dot(&new_col, &equilibrium.row),
            equilibrium,
        };
        on_iteration(&record, &rows, &cols);
        let done = record.is_rb_nash(config.epsilon);
        history.push(record);
        if done {
            converged = true;
            break;
        }
        for (r, extra) in payoff.iter_mut().zip(&new_col) {
            r.push(*extra);
        }
        let mut grown = new_row;
        grown.push(corner);
        payoff.push(grown);
        rows.push(row);
        cols.push(col);
        if iteration + 1 < config.max_iterations {
            let state = PnmState {
                rows,
                cols,
                payoff,
                history,
            };
            after_iteration(&state).map_err(PnmError::Oracle)?;
            (rows, cols, payoff, history) = (state.rows, state.cols, state.payoff, state.history);
        }
    }
    let equilibrium = matrix_game::solve(&payoff)?;
    Ok(PnmOutcome {
        rows,
        cols,
        payoff,
        equilibrium,
        history,
        converged,
    })
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A finite game written down in full: strategies are indices, best responses exact.
    struct Explicit {
        a: Vec<Vec<f64>>,
    }

    impl BestResponseOracle for Explicit {
        type Row = usize;
        type Col = usize;
        type Error = String;

        fn payoff(&mut self, row: &usize, col: &usize) -> Result<f64, String> {
            Ok(self.a[*row][*col])
        }

        fn row_best_response(&mut self, cols: &[usize], w: &[f64]) -> Result<usize, String> {
            let score = |i: usize| cols.iter().zip(w).map(|(&j, q)| self.a[i][j] * q).sum();
            Ok(argbest(self.a.len(), score, f64::total_cmp))
        }

        fn col_best_response(&mut self, rows: &[usize], w: &[f64]) -> Result<usize, String> {
            let score = |j: usize| rows.iter().zip(w).map(|(&i, p)| self.a[i][j] * p).sum();
            Ok(argbest(self.a[0].len(), score, |x: &f64, y| y.total_cmp(x)))
        }
    }

    fn argbest(
        n: usize,
        score: impl Fn(usize) -> f64,
        cmp: fn(&f64, &f64) -> std::cmp::Ordering,
    ) -> usize {
        (0..n)
            .map(|i| (i, score(i)))
            .max_by(|a, b| cmp(&a.1, &b.1))
            .expect("non-empty")
            .0
    }

    /// The value of the game restricted to `rows` x `cols` of `a`.
    fn security(a: &[Vec<f64>], rows: &[usize], cols: &[usize]) -> f64 {
        let sub: Vec<Vec<f64>> = rows
            .iter()
            .map(|&i| cols.iter().map(|&j| a[i][j]).collect())
            .collect();
        matrix_game::solve(&sub).unwrap().value
    }

    fn random_game(rows: usize, cols: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = crate::data::batches::SplitMix64(seed);
        (0..rows)
            .map(|_| (0..cols).map(|_| rng.next_unit() * 2.0 - 1.0).collect())
            .collect()
    }

    /// With exact best responses the loop stops at an equilibrium of the full game (its
    /// value matches the LP over the whole matrix) while holding only part of it, and
    /// the bracket `col_response <= v* <= row_response` holds at every iteration, so the
    /// best bounds seen so far narrow monotonically onto `v*`.
    #[test]
    fn exact_responses_reach_the_full_games_equilibrium() {
        for seed in 0..5 {
            let a = random_game(60, 50, seed);
            let full = matrix_game::solve(&a).unwrap();
            let mut oracle = Explicit { a: a.clone() };
            let config = PnmConfig {
                epsilon: 1e-9,
                max_iterations: 200,
            };
            let out = parallel_nash_memory(&mut oracle, 0, 0, config, |_, _, _| {}).unwrap();
            assert!(out.converged, "seed {seed}");
            assert!(
                (out.equilibrium.value - full.value).abs() < 1e-6,
                "seed {seed}: {} vs {}",
                out.equilibrium.value,
                full.value
            );
            assert!(out.rows.len() < 60 && out.cols.len() < 50, "seed {seed}");
            // The double-oracle bracket: the best the row player can guarantee against
            // *every* column with a mixture of the rows found so far never decreases, the
            // column player's counterpart never increases, and both bracket the empirical
            // value and the full game's value.
            let all_cols: Vec<usize> = (0..50).collect();
            let (mut last_lo, mut last_hi) = (f64::NEG_INFINITY, f64::INFINITY);
            for r in &out.history {
                assert!(r.col_response <= full.value + 1e-7, "{r:?}");
                assert!(r.row_response >= full.value - 1e-7, "{r:?}");
                let lo = security(&a, &out.rows[..r.rows], &all_cols);
                let all_rows: Vec<usize> = (0..60).collect();
                let hi = security(&a, &all_rows, &out.cols[..r.cols]);
                assert!(lo >= last_lo - 1e-7 && hi <= last_hi + 1e-7, "{lo} {hi}");
                assert!(lo <= r.equilibrium.value + 1e-7 && r.equilibrium.value <= hi + 1e-7);
                assert!(lo <= full.value + 1e-7 && full.value <= hi + 1e-7);
                (last_lo, last_hi) = (lo, hi);
            }
            assert!((last_hi - last_lo).abs() < 1e-5, "{last_lo} {last_hi}");
            // The mixtures are an equilibrium of the full game: no pure deviation gains.
            let mut row_mix = vec![0.0; 60];
            for (&i, p) in out.rows.iter().zip(&out.equilibrium.row) {
                row_mix[i] += p;
            }
            let mut col_mix = vec![0.0; 50];
            for (&j, q) in out.cols.iter().zip(&out.equilibrium.col) {
                col_mix[j] += q;
            }
            let full_eq = Equilibrium {
                row: row_mix,
                col: col_mix,
                value: out.equilibrium.value,
            };
            let (gain_row, gain_col) = full_eq.exploitability(&a);
            assert!(gain_row < 1e-6 && gain_col < 1e-6, "{gain_row} {gain_col}");
        }
    }

    /// Matching pennies from one pure strategy each: the first responses exploit the pure
    /// strategies (gain 2 for one side), then the 2x2 game's value is the exact 0.
    #[test]
    fn matching_pennies_converges_in_two_iterations() {
        let mut oracle = Explicit {
            a: vec![vec![1.0, -1.0], vec![-1.0, 1.0]],
        };
        let config = PnmConfig {
            epsilon: 1e-9,
            max_iterations: 10,
        };
        let out = parallel_nash_memory(&mut oracle, 0, 0, config, |_, _, _| {}).unwrap();
        assert!(out.converged);
        assert!(out.equilibrium.value.abs() < 1e-7);
        assert!(out.history[0].row_gain() > 1.0 || out.history[0].col_gain() > 1.0);
    }

    #[test]
    fn bad_settings_and_payoffs_are_errors() {
        let mut oracle = Explicit {
            a: vec![vec![f64::NAN]],
        };
        let ok = PnmConfig {
            epsilon: 0.0,
            max_iterations: 3,
        };
        let err = parallel_nash_memory(&mut oracle, 0, 0, ok, |_, _, _| {}).unwrap_err();
        assert!(err.to_string().contains("not finite"), "{err}");
        let bad = PnmConfig {
            epsilon: f64::NAN,
            ..ok
        };
        let err = parallel_nash_memory(&mut oracle, 0, 0, bad, |_, _, _| {}).unwrap_err();
        assert!(err.to_string().contains("epsilon"), "{err}");
    }
}
