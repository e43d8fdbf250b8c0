//! The two ways a GANG run trains: Parallel Nash Memory (mixtures grown by best responses,
//! the empirical game's equilibrium by LP) and the standard GAN baseline; each writes its
//! trace (`metrics.csv`, per-iteration scatter plots, PNM's payoffs and mixtures).

use std::path::PathBuf;

use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::constrained::save_files_checkpoint;
use crate::io::{csv, write_atomic};
use crate::plot::{Panel, Series, line_chart};
use crate::resume::{Interrupt, Interrupted, Position, RUN_FILE, RunState};
use crate::tasks::gang::{
    GameState, GanCheckpoint, GanGame, GanHooks, GangError, Player, load_players, players_bytes,
    sample_quality,
};
use crate::tasks::nash_memory::{
    PnmConfig, PnmError, PnmRecord, PnmState, parallel_nash_memory_from,
};
use crate::tasks::outputs::write_json;

use super::GangRunConfig;
use super::outputs::{progress_bar, scatter};

/// Scatter plots written along a GAN run.
const GAN_SNAPSHOTS: usize = 20;

/// Where a run checkpoints, how often, what stops it, and the checkpoint it resumes.
pub(super) struct Checkpointing {
    pub dir: PathBuf,
    /// Every this many PNM iterations or GAN snapshots (0: only when interrupted).
    pub every: usize,
    pub interrupt: Interrupt,
    /// The settings a resumed run must share (stored in each checkpoint).
    pub key: serde_json::Value,
    /// The checkpoint to continue from: its folder and `run.json`.
    pub resume: Option<(PathBuf, RunState)>,
}

/// A gang checkpoint's state (`run.json`'s task); the networks are byte files beside it.
#[derive(Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
enum GangState {
    /// PNM between iterations: the strategies' ids (networks: `rows.bin`, `cols.bin`),
    /// the payoff matrix, the iterations' records, the game's own state.
    Pnm {
        row_ids: Vec<usize>,
        col_ids: Vec<usize>,
        payoff: Vec<Vec<f64>>,
        history: Vec<PnmRecord>,
        game: GameState,
    },
    /// The GAN baseline between steps (networks and optimizers: `nets*.bin`, `opts*.bin`).
    Gan(GanCheckpoint),
}

const FILES: [&str; 4] = ["net0.bin", "net1.bin", "opt0.bin", "opt1.bin"];

/// The byte files of a checkpoint folder.
struct Files(PathBuf);

impl Files {
    fn read(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        let path = self.0.join(name);
        std::fs::read(&path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))
    }
}

impl Checkpointing {
    /// Writes a checkpoint of `state` at `position` with the byte `files`.
    fn save(
        &self,
        state: &GangState,
        step: usize,
        files: &[(&str, &[u8])],
    ) -> Result<(), GangError> {
        let json = RunState::file_bytes("gang", self.key.clone(), Position::at_step(step), state)
            .map_err(|e| GangError::Checkpoint(e.to_string()))?;
        let mut all: Vec<(&str, &[u8])> = vec![(RUN_FILE, &json)];
        all.extend_from_slice(files);
        save_files_checkpoint(&self.dir, &all).map_err(|e| GangError::Checkpoint(e.to_string()))
    }

    /// The resumed checkpoint's state and a reader of its byte files.
    fn resumed(&self) -> anyhow::Result<Option<(GangState, Files)>> {
        let Some((dir, run)) = &self.resume else {
            return Ok(None);
        };
        let state: GangState = serde_json::from_value(run.task.clone())
            .map_err(|e| anyhow::anyhow!("corrupt checkpoint {}: {e}", dir.display()))?;
        Ok(Some((state, Files(dir.clone()))))
    }

    fn interrupted(&self, step: usize) -> GangError {
        GangError::Interrupted(Interrupted::after_step(&self.dir, step))
    }
}

/// The final mixtures of a run and how it ended.
pub(super) struct Mixtures<B: AutodiffBackend> {
    pub generators: Vec<Player<B>>,
    pub generator_weights: Vec<f64>,
    pub classifiers: Vec<Player<B>>,
    pub classifier_weights: Vec<f64>,
    /// PNM iterations run, or the GAN's steps.
    pub iterations: usize,
    /// PNM reached a resource-bounded Nash equilibrium.
    pub converged: bool,
}

/// Parallel Nash Memory from one untrained generator and classifier, to an RB-NE or
/// `config.iterations()`.
pub(super) fn run_pnm<B: AutodiffBackend>(
    a: &GangRunConfig,
    game: &mut GanGame<B>,
    progress: bool,
    ck: &Checkpointing,
) -> anyhow::Result<Mixtures<B>> {
    let bar = progress_bar(progress, a.iterations() as u64, "PNM");
    let mut rows: Vec<Vec<f64>> = Vec::new();
    let mut plot_error = None;
    let config = PnmConfig {
        epsilon: a.epsilon,
        max_iterations: a.iterations(),
    };
    // From the checkpoint, or from one untrained generator and classifier.
    let start = match ck.resumed()? {
        Some((
            GangState::Pnm {
                row_ids,
                col_ids,
                payoff,
                history,
                game: state,
            },
            files,
        )) => {
            game.restore(state);
            bar.set_position(history.len() as u64);
            PnmState {
                rows: load_players(game, &row_ids, true, &files.read("rows.bin")?)?,
                cols: load_players(game, &col_ids, false, &files.read("cols.bin")?)?,
                payoff,
                history,
            }
        }
        Some(_) => anyhow::bail!("--resume: the checkpoint is of a GAN run, not of PNM"),
        None => {
            let (g0, c0) = (game.new_generator(), game.new_classifier());
            let first = game.payoff_of(&g0, &c0);
            PnmState {
                rows: vec![g0],
                cols: vec![c0],
                payoff: vec![vec![first]],
                history: Vec::new(),
            }
        }
    };
    // The callback cannot borrow the game (the loop holds it): collect the records and
    // plot each iteration's mixture after the loop, from the stored strategies.
    let mut records: Vec<PnmRecord> = start.history.clone();
    let mut since = 0;
    let save = |state: &PnmState<Player<B>, Player<B>>, game: GameState| {
        let (r, c) = (players_bytes(&state.rows)?, players_bytes(&state.cols)?);
        let pnm = GangState::Pnm {
            row_ids: state.rows.iter().map(|p| p.id).collect(),
            col_ids: state.cols.iter().map(|p| p.id).collect(),
            payoff: state.payoff.clone(),
            history: state.history.clone(),
            game,
        };
        ck.save(
            &pnm,
            state.history.len(),
            &[("rows.bin", &r), ("cols.bin", &c)],
        )
    };
    // The oracle is the game: its state is read through a second handle after each
    // iteration (the loop holds the game only inside an iteration).
    let game_state = std::cell::Cell::new(game.state());
    let out = parallel_nash_memory_from(
        &mut StatefulOracle {
            game: &mut *game,
            state: &game_state,
        },
        start,
        config,
        |r, _, _| {
            bar.set_message(format!(
                "value {:.3}  gains G {:+.3} C {:+.3}",
                r.equilibrium.value,
                r.row_gain(),
                r.col_gain()
            ));
            bar.inc(1);
            records.push(r.clone());
        },
        |state| {
            // Counted per iteration: a step limit counts iterations here.
            ck.interrupt.count_step();
            since += 1;
            let interrupted = ck.interrupt.is_raised();
            if interrupted || (ck.every > 0 && since >= ck.every) {
                since = 0;
                save(state, game_state.get())?;
            }
            if interrupted {
                return Err(ck.interrupted(state.history.len()));
            }
            Ok(())
        },
    )
    .map_err(|e| match e {
        PnmError::Oracle(GangError::Interrupted(i)) => anyhow::Error::from(i),
        e => anyhow::anyhow!("{e}"),
    })?;
    bar.finish();
    for r in &records {
        let gens = &out.rows[..r.rows];
        let (samples, owner) = game.sample_mixture(gens, &r.equilibrium.row, a.metric_samples);
        let q = sample_quality(game.data(), &samples);
        let title = format!(
            "PNM iteration {}: {} generators, {}/{} modes",
            r.iteration,
            r.equilibrium.row.iter().filter(|w| **w > 1e-6).count(),
            q.modes_covered,
            q.modes
        );
        let path = a.out.join(format!("samples/iter_{:03}.png", r.iteration));
        if let Err(e) = scatter(a, game, &samples, &owner, &title, &path) {
            plot_error.get_or_insert(e);
        }
        let (gain_g, gain_c) = (r.row_gain(), r.col_gain());
        rows.push(vec![
            r.iteration as f64,
            r.rows as f64,
            r.equilibrium.value,
            r.row_response,
            r.col_response,
            gain_g,
            gain_c,
            q.modes_covered as f64,
            q.high_quality,
        ]);
    }
    if let Some(e) = plot_error {
        return Err(e);
    }
    let header: Vec<String> = [
        "iteration",
        "strategies",
        "value",
        "generator_response",
        "classifier_response",
        "generator_gain",
        "classifier_gain",
        "modes_covered",
        "high_quality",
    ]
    .map(String::from)
    .to_vec();
    write_atomic(&a.out.join("metrics.csv"), csv(&header, &rows).as_bytes())?;
    let n = out.payoff.len();
    let header: Vec<String> = std::iter::once("generator".to_string())
        .chain((0..n).map(|j| format!("c{j}")))
        .collect();
    let payoff_rows: Vec<Vec<f64>> = out
        .payoff
        .iter()
        .enumerate()
        .map(|(i, r)| std::iter::once(i as f64).chain(r.iter().copied()).collect())
        .collect();
    write_atomic(
        &a.out.join("payoff.csv"),
        csv(&header, &payoff_rows).as_bytes(),
    )?;
    let weights = serde_json::json!({
        "generators": out.equilibrium.row,
        "classifiers": out.equilibrium.col,
        "value": out.equilibrium.value,
    });
    write_json(&a.out.join("mixtures.json"), &weights)?;
    plot_value(a, &rows)?;
    let iterations = out.history.len();
    Ok(Mixtures {
        generators: out.rows,
        generator_weights: out.equilibrium.row,
        classifiers: out.cols,
        classifier_weights: out.equilibrium.col,
        iterations,
        converged: out.converged,
    })
}

/// `value.png`: the empirical game's value and what each iteration's new responses earn,
/// and the modes the generator mixture covers.
fn plot_value(a: &GangRunConfig, rows: &[Vec<f64>]) -> anyhow::Result<()> {
    let series = |label: &str, col: usize| Series {
        label: label.into(),
        points: rows.iter().map(|r| (r[0], r[col])).collect(),
    };
    line_chart(
        &a.out.join("value.png"),
        &[
            Panel {
                title: "Empirical game value and what the new best responses earn".into(),
                x_label: "PNM iteration".into(),
                y_label: "payoff to the generator (nats)".into(),
                series: vec![
                    series("value of the empirical game", 2),
                    series("new generator vs classifier mixture", 3),
                    series("generator mixture vs new classifier", 4),
                ],
            },
            Panel {
                title: "Modes covered by the generator mixture".into(),
                x_label: "PNM iteration".into(),
                y_label: "modes".into(),
                series: vec![series("modes covered", 7)],
            },
        ],
    )
}

/// The GAN baseline: `gan_steps` (default: PNM's budget per player) simultaneous steps,
/// with [`GAN_SNAPSHOTS`] scatter plots along the way.
pub(super) fn run_gan<B: AutodiffBackend>(
    a: &GangRunConfig,
    game: &mut GanGame<B>,
    progress: bool,
    ck: &Checkpointing,
) -> anyhow::Result<Mixtures<B>> {
    let steps = a.gan_steps.unwrap_or(a.iterations() * a.response_steps);
    let bar = progress_bar(progress, 1, "GAN");
    bar.set_message(format!("{steps} simultaneous steps"));
    let every = steps.div_ceil(GAN_SNAPSHOTS);
    let resume = match ck.resumed()? {
        Some((GangState::Gan(mut checkpoint), files)) => {
            for (k, name) in FILES.iter().enumerate() {
                let bytes = files.read(name)?;
                match k {
                    0 | 1 => checkpoint.nets[k] = bytes,
                    _ => checkpoint.optimizers[k - 2] = bytes,
                }
            }
            Some(checkpoint)
        }
        Some(_) => anyhow::bail!("--resume: the checkpoint is of a PNM run, not of the GAN"),
        None => None,
    };
    let mut snapshots = 0;
    let mut save = |c: &GanCheckpoint| -> Result<(), GangError> {
        snapshots += 1;
        if ck.interrupt.is_raised() || (ck.every > 0 && snapshots % ck.every == 0) {
            let files: Vec<(&str, &[u8])> = FILES
                .iter()
                .copied()
                .zip([&c.nets[0], &c.nets[1], &c.optimizers[0], &c.optimizers[1]])
                .map(|(n, b)| (n, b.as_slice()))
                .collect();
            ck.save(&GangState::Gan(c.clone()), c.step, &files)?;
        }
        Ok(())
    };
    let hooks = GanHooks {
        interrupt: &ck.interrupt,
        dir: &ck.dir,
        save: &mut save,
    };
    let run = game
        .train_gan_resumable(steps, every, a.metric_samples, resume, Some(hooks))
        .map_err(|e| match e {
            GangError::Interrupted(i) => anyhow::Error::from(i),
            e => e.into(),
        })?;
    let (g, c, trace) = (run.generator, run.classifier, run.trace);
    bar.inc(1);
    bar.finish();
    let mut rows = Vec::new();
    for snap in &trace {
        let q = sample_quality(game.data(), &snap.samples);
        let title = format!(
            "GAN step {}: {}/{} modes",
            snap.step, q.modes_covered, q.modes
        );
        let owner = vec![0; snap.samples.len() / 2];
        let path = a.out.join(format!("samples/step_{:07}.png", snap.step));
        scatter(a, game, &snap.samples, &owner, &title, &path)?;
        rows.push(vec![
            snap.step as f64,
            snap.classifier_loss,
            snap.generator_loss,
            q.modes_covered as f64,
            q.high_quality,
        ]);
    }
    let header: Vec<String> = [
        "step",
        "classifier_loss",
        "generator_loss",
        "modes_covered",
        "high_quality",
    ]
    .map(String::from)
    .to_vec();
    write_atomic(&a.out.join("metrics.csv"), csv(&header, &rows).as_bytes())?;
    Ok(Mixtures {
        generators: vec![g],
        generator_weights: vec![1.0],
        classifiers: vec![c],
        classifier_weights: vec![1.0],
        iterations: steps,
        converged: false,
    })
}

/// The game as PNM's oracle, leaving its own state in `state` after every call: what a
/// checkpoint between iterations records while the loop holds the game.
struct StatefulOracle<'a, B: AutodiffBackend> {
    game: &'a mut GanGame<B>,
    state: &'a std::cell::Cell<GameState>,
}

impl<B: AutodiffBackend> crate::tasks::nash_memory::BestResponseOracle for StatefulOracle<'_, B> {
    type Row = Player<B>;
    type Col = Player<B>;
    type Error = GangError;

    fn payoff(&mut self, row: &Player<B>, col: &Player<B>) -> Result<f64, GangError> {
        let v = self.game.payoff(row, col);
        self.state.set(self.game.state());
        v
    }

    fn row_best_response(
        &mut self,
        cols: &[Player<B>],
        weights: &[f64],
    ) -> Result<Player<B>, GangError> {
        let r = self.game.row_best_response(cols, weights);
        self.state.set(self.game.state());
        r
    }

    fn col_best_response(
        &mut self,
        rows: &[Player<B>],
        weights: &[f64],
    ) -> Result<Player<B>, GangError> {
        let r = self.game.col_best_response(rows, weights);
        self.state.set(self.game.state());
        r
    }
}
