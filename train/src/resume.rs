//! Runs that survive interruption: a command checkpoints every N epochs and when it is
//! interrupted (SIGINT, SIGTERM, SIGHUP), and `--resume DIR` continues it so that the
//! result equals the uninterrupted run's bit for bit on CPU.
//!
//! What makes that possible:
//! - the constrained core's checkpoint ([`crate::constrained::save_checkpoint`]): model,
//!   primal optimizer state, multipliers and their dual states, exact bytes;
//! - a task's own state beside it (metrics so far, masks, the epoch and step reached),
//!   as JSON in the same atomically renamed directory;
//! - random streams indexed by the step ([`step_seed`]): the backend generator is reseeded
//!   before every step from the run's seed and the global step index, so the gate noise of
//!   step `t` does not depend on how many draws came before in this process. The batch
//!   order is a function of (seed, epoch) already.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

/// A stop request shared between whoever asks (a signal handler, a scheduler's step
/// limit, a test) and the training loop, which finishes the step under way, checkpoints
/// and returns [`Interrupted`].
#[derive(Clone, Debug, Default)]
pub struct Interrupt {
    raised: Arc<AtomicBool>,
    /// Steps left before the interrupt raises itself (`usize::MAX`: no limit).
    steps_left: Arc<AtomicUsize>,
}

static SIGNALS: OnceLock<Result<Interrupt, String>> = OnceLock::new();

impl Interrupt {
    /// Never raised unless [`Interrupt::raise`] is called.
    pub fn new() -> Self {
        Self {
            raised: Arc::new(AtomicBool::new(false)),
            steps_left: Arc::new(AtomicUsize::new(usize::MAX)),
        }
    }

    /// Raised by SIGINT (Ctrl-C), SIGTERM (a scheduler or a cloud pre-emption) and SIGHUP
    /// (a lost SSH session). The handler is installed once per process; every call
    /// returns the same interrupt. A second signal ends the process at once, without a
    /// checkpoint (for a phase that does not stop for one, or a person who will not wait);
    /// SIGKILL cannot be caught, which is what the periodic checkpoints are for.
    ///
    /// # Errors
    /// When the process already has a handler installed by someone else.
    pub fn on_signals() -> anyhow::Result<Self> {
        SIGNALS
            .get_or_init(|| {
                let interrupt = Interrupt::new();
                let raised = interrupt.clone();
                ctrlc::set_handler(move || {
                    if raised.is_raised() {
                        // A second signal: the person does not want to wait.
                        eprintln!("\ninterrupted again: stopping without a checkpoint");
                        std::process::exit(130);
                    }
                    eprintln!(
                        "\ninterrupted: finishing the step under way and writing a checkpoint \
                         (again to stop at once, without one)"
                    );
                    raised.raise();
                })
                .map(|()| interrupt)
                .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| anyhow::anyhow!("cannot install the interrupt handler: {e}"))
    }

    /// Raises itself after `steps` more training steps (the loop counts them): a run cut
    /// into slots of a scheduler's length, or a test that stops a run at a known step.
    pub fn after_steps(steps: usize) -> Self {
        let i = Self::new();
        i.steps_left.store(steps, Ordering::SeqCst);
        i
    }

    /// Asks the loop to stop.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// Called by the loop after every step: counts down a step limit.
    ///
    /// One atomic read-modify-write: data-parallel replicas on threads share the
    /// interrupt and count at the same moment, and a load followed by a store loses one
    /// of two simultaneous counts (the limit then fires a step late on some runs).
    pub fn count_step(&self) {
        let counted = self
            .steps_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                (left != usize::MAX).then(|| left.saturating_sub(1))
            });
        if counted.is_ok_and(|before| before <= 1) {
            self.raise();
        }
    }
}

/// How a library caller drives a run: progress output and the interrupt that stops it.
#[derive(Clone, Debug, Default)]
pub struct RunControl {
    /// Progress bars and a line per epoch or phase, as the CLI shows; without it the run
    /// is silent.
    pub progress: bool,
    /// Raised, it stops the run after the step under way: a checkpoint is written and the
    /// run returns [`Interrupted`] (the CLI raises it on SIGINT/SIGTERM/SIGHUP).
    pub interrupt: Interrupt,
}

impl RunControl {
    /// Progress shown or not, never interrupted.
    pub fn new(progress: bool) -> Self {
        Self {
            progress,
            interrupt: Interrupt::new(),
        }
    }

    /// The CLI's: stopped by SIGINT, SIGTERM or SIGHUP, progress shown or not.
    ///
    /// # Errors
    /// As [`Interrupt::on_signals`].
    pub fn cli(progress: bool) -> anyhow::Result<Self> {
        Ok(Self {
            progress,
            interrupt: Interrupt::on_signals()?,
        })
    }
}

/// The seed of step `step`'s random stream: SplitMix64 of the run's seed and the step
/// (Steele et al. 2014), so nearby steps and seeds get unrelated streams.
pub fn step_seed(seed: u64, step: usize) -> u64 {
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(step as u64)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Where a run stands: the epoch under way and the steps of it already taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// 0-based epoch under way (the number of epochs finished when `step_in_epoch` is 0).
    pub epoch: usize,
    /// Steps of that epoch already taken.
    pub step_in_epoch: usize,
    /// Steps taken since the start of the run.
    pub global_step: usize,
}

impl Position {
    /// Step `step` of a run counted in steps alone (no epochs).
    pub fn at_step(step: usize) -> Self {
        Self {
            epoch: 0,
            step_in_epoch: step,
            global_step: step,
        }
    }
}

/// A run stopped on request, its checkpoint written: not a failure, and the CLIs exit
/// with status 130 (what shells report for SIGINT).
#[derive(Debug)]
pub struct Interrupted {
    /// The checkpoint to pass to `--resume`.
    pub checkpoint: PathBuf,
    /// Where the run stopped.
    pub position: Position,
    /// Epochs of the whole run.
    pub epochs: usize,
}

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.epochs > 1 {
            write!(
                f,
                "interrupted in epoch {} of {}, after step {} of it ({} in all)",
                self.position.epoch + 1,
                self.epochs,
                self.position.step_in_epoch,
                self.position.global_step,
            )?;
        } else {
            write!(f, "interrupted after step {}", self.position.global_step)?;
        }
        write!(
            f,
            "; checkpoint written to {}: run the same command with --resume {} to continue",
            self.checkpoint.display(),
            self.checkpoint.display()
        )
    }
}

impl std::error::Error for Interrupted {}

impl Interrupted {
    /// A run counted in steps alone (no epochs) stopped after `step` steps, its
    /// checkpoint in `checkpoint`.
    pub fn after_step(checkpoint: &Path, step: usize) -> Self {
        Self {
            checkpoint: checkpoint.to_path_buf(),
            position: Position::at_step(step),
            epochs: 1,
        }
    }
}

/// How often a command checkpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CheckpointEvery(pub usize);

impl CheckpointEvery {
    /// Whether a checkpoint is due after `epochs_done` epochs.
    pub fn due(self, epochs_done: usize) -> bool {
        self.0 > 0 && epochs_done.is_multiple_of(self.0)
    }
}

impl std::str::FromStr for CheckpointEvery {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let n = t.strip_suffix("epochs").unwrap_or(t).trim();
        match n {
            "never" => Ok(Self(0)),
            _ => n.parse().map(Self).map_err(|_| {
                format!(
                    "`{s}` is not a number of epochs (e.g. 1, 5, 2epochs; 0 or never: only \
                     when interrupted)"
                )
            }),
        }
    }
}

impl std::fmt::Display for CheckpointEvery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl TryFrom<String> for CheckpointEvery {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<CheckpointEvery> for String {
    fn from(c: CheckpointEvery) -> String {
        c.to_string()
    }
}

/// The folder a run in `out` keeps its checkpoint in.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// `--resume PATH`: the checkpoint folder itself, or the output folder of the run that
/// wrote it.
///
/// # Errors
/// When neither holds a checkpoint.
pub fn resolve_resume(path: &Path) -> anyhow::Result<PathBuf> {
    for dir in [path.to_path_buf(), checkpoint_dir(path)] {
        if dir.join(RUN_FILE).is_file() {
            return Ok(dir);
        }
    }
    anyhow::bail!(
        "--resume {}: no checkpoint there (a checkpoint folder holds {RUN_FILE}; give the \
         folder a run wrote, OUT/checkpoint, or its OUT)",
        path.display()
    )
}

/// The task's side of a checkpoint, beside the constrained core's files.
pub const RUN_FILE: &str = "run.json";

/// What a task writes to [`RUN_FILE`]: the settings (a resumed run must use the same),
/// where it stopped, and its own state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunState {
    /// Format version.
    pub format: u32,
    /// The command, e.g. `prune`.
    pub command: String,
    /// The run's settings as JSON, without the ones free to change on resume.
    pub config: serde_json::Value,
    /// Where it stopped.
    pub position: Position,
    /// The task's own state (metrics so far, masks, ...).
    pub task: serde_json::Value,
}

impl RunState {
    /// The bytes of [`RUN_FILE`] for `command` at `position`: its settings `config`
    /// ([`settings_key`]) and its own state `task`.
    ///
    /// # Errors
    /// `task` does not serialize.
    pub fn file_bytes(
        command: &str,
        config: serde_json::Value,
        position: Position,
        task: &impl Serialize,
    ) -> anyhow::Result<Vec<u8>> {
        let state = RunState {
            format: 1,
            command: command.into(),
            config,
            position,
            task: serde_json::to_value(task)?,
        };
        Ok(serde_json::to_vec(&state)?)
    }

    /// Reads a checkpoint's [`RUN_FILE`].
    ///
    /// # Errors
    /// A missing or corrupt file, or a checkpoint of another command.
    pub fn read(dir: &Path, command: &str) -> anyhow::Result<Self> {
        let path = dir.join(RUN_FILE);
        let bytes = std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let state: RunState = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("corrupt checkpoint {}: {e}", path.display()))?;
        anyhow::ensure!(
            state.format == 1,
            "{}: checkpoint format {} is not supported (1 is)",
            path.display(),
            state.format
        );
        anyhow::ensure!(
            state.command == command,
            "{} is a checkpoint of `{}`, not of `{command}`",
            dir.display(),
            state.command
        );
        Ok(state)
    }

    /// Refuses to continue with settings other than the checkpoint's, naming each that
    /// differs (a resumed run must be the run that was interrupted).
    ///
    /// # Errors
    /// Any difference.
    pub fn check_config(&self, now: &serde_json::Value, dir: &Path) -> anyhow::Result<()> {
        let (Some(saved), Some(now)) = (self.config.as_object(), now.as_object()) else {
            anyhow::ensure!(
                &self.config == now,
                "the settings differ from {}'s",
                dir.display()
            );
            return Ok(());
        };
        let mut keys: Vec<&String> = saved.keys().chain(now.keys()).collect();
        keys.sort();
        keys.dedup();
        let differ: Vec<String> = keys
            .into_iter()
            .filter(|k| saved.get(*k) != now.get(*k))
            .map(|k| {
                let show = |v: Option<&serde_json::Value>| {
                    v.map_or("(unset)".to_string(), |v| v.to_string())
                };
                format!("{k}: {} then, {} now", show(saved.get(k)), show(now.get(k)))
            })
            .collect();
        anyhow::ensure!(
            differ.is_empty(),
            "--resume {}: the run was started with other settings ({}); resume it with the \
             same flags",
            dir.display(),
            differ.join("; ")
        );
        Ok(())
    }
}

/// The settings a resumed run must share with the interrupted one: `config` as JSON,
/// without where it writes (`out`), how often it checkpoints, what it resumes from and
/// whether an image folder is streamed (`loading`: both ways give the same batches).
///
/// # Errors
/// `config` does not serialize.
pub fn settings_key<T: Serialize>(config: &T) -> anyhow::Result<serde_json::Value> {
    let mut v = serde_json::to_value(config)?;
    if let Some(o) = v.as_object_mut() {
        for k in ["out", "resume", "checkpoint_every", "loading"] {
            o.remove(k);
        }
    }
    Ok(v)
}

/// `--resume PATH` of `command`: the checkpoint folder ([`resolve_resume`]) and its
/// [`RunState`], checked against the settings `key` of this run.
///
/// # Errors
/// No checkpoint there, a corrupt one, one of another command, or other settings (each
/// named).
pub fn open_checkpoint(
    path: &Path,
    command: &str,
    key: &serde_json::Value,
) -> anyhow::Result<(PathBuf, RunState)> {
    let dir = resolve_resume(path)?;
    let state = RunState::read(&dir, command)?;
    state.check_config(key, &dir)?;
    Ok((dir, state))
}

/// Removes a finished run's checkpoint (nothing is left to resume).
///
/// # Errors
/// A checkpoint that exists and cannot be removed.
pub fn remove_checkpoint(out: &Path) -> anyhow::Result<()> {
    let dir = checkpoint_dir(out);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot remove {}: {e}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_seeds_differ_between_steps_and_seeds_and_repeat() {
        let a: Vec<u64> = (0..1000).map(|t| step_seed(0, t)).collect();
        let mut sorted = a.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 1000);
        assert_ne!(step_seed(1, 0), step_seed(0, 1));
        assert_eq!(step_seed(7, 42), step_seed(7, 42));
    }

    #[test]
    fn a_step_limit_raises_after_that_many_steps() {
        let i = Interrupt::after_steps(3);
        for _ in 0..2 {
            i.count_step();
            assert!(!i.is_raised());
        }
        i.count_step();
        assert!(i.is_raised());
        let never = Interrupt::new();
        for _ in 0..10 {
            never.count_step();
        }
        assert!(!never.is_raised());
    }

    /// Replicas on threads count into one interrupt: no count may be lost.
    #[test]
    fn counts_from_several_threads_are_all_counted() {
        let (threads, each) = (8, 20_000);
        for (limit, raised) in [(threads * each, true), (threads * each + 1, false)] {
            let i = Interrupt::after_steps(limit);
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| (0..each).for_each(|_| i.count_step()));
                }
            });
            assert_eq!(i.is_raised(), raised, "limit {limit}");
        }
    }

    #[test]
    fn checkpoint_intervals_parse() {
        assert_eq!("2".parse::<CheckpointEvery>().unwrap(), CheckpointEvery(2));
        assert_eq!(
            "3epochs".parse::<CheckpointEvery>().unwrap(),
            CheckpointEvery(3)
        );
        assert_eq!(
            "never".parse::<CheckpointEvery>().unwrap(),
            CheckpointEvery(0)
        );
        assert!("two".parse::<CheckpointEvery>().is_err());
        assert!(CheckpointEvery(2).due(4) && !CheckpointEvery(2).due(3));
        assert!(!CheckpointEvery(0).due(1));
    }

    #[test]
    fn other_settings_are_named() {
        let state = RunState {
            format: 1,
            command: "prune".into(),
            config: serde_json::json!({"epochs": 3, "lr": 0.001}),
            position: Position::default(),
            task: serde_json::Value::Null,
        };
        let dir = Path::new("ck");
        state
            .check_config(&serde_json::json!({"epochs": 3, "lr": 0.001}), dir)
            .unwrap();
        let err = state
            .check_config(&serde_json::json!({"epochs": 4, "lr": 0.001}), dir)
            .unwrap_err()
            .to_string();
        assert!(err.contains("epochs: 3 then, 4 now"), "{err}");
    }

    #[test]
    fn resume_paths_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve_resume(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no checkpoint there"), "{err}");
        let ck = checkpoint_dir(dir.path());
        std::fs::create_dir_all(&ck).unwrap();
        std::fs::write(ck.join(RUN_FILE), b"{}").unwrap();
        assert_eq!(resolve_resume(dir.path()).unwrap(), ck);
        assert_eq!(resolve_resume(&ck).unwrap(), ck);
        let err = RunState::read(&ck, "prune").unwrap_err().to_string();
        assert!(err.contains("corrupt checkpoint"), "{err}");
    }
}
