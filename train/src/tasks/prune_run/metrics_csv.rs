//! `metrics.csv`: each logged step's values, violations mapped back to their units.

use burn::tensor::backend::AutodiffBackend;

use super::config::PruneConfig;
use crate::io::{csv, write_atomic};
use crate::plot::{Panel, Series, line_chart, vertical_marks};
use crate::tasks::budget::BudgetResult;
use crate::tasks::prune::{FlashConstraint, LatencyConstraint, RamConstraint};
use crate::tasks::prune_ramp::Ramp;
use crate::trainer::StepInfo;

/// How a constraint's violation maps back to its quantity. `unpruned` is the quantity
/// with every gate open, where a ramp ([`Ramp`]) starts its bound.
#[derive(Clone, Copy, Debug)]
pub(super) enum ToUnit {
    /// `violation * scale + bound` (densities, RAM, latency), the bound ramped from
    /// `unpruned` to `offset`.
    Linear {
        scale: f64,
        offset: f64,
        unpruned: f64,
    },
    /// `bound * exp(violation)` (the flash budget's log-ratio), the bound ramped from
    /// `unpruned` to `aim`.
    LogRatio { aim: f64, unpruned: f64 },
}

impl ToUnit {
    pub(super) fn at(self, violation: f64, ramp: &Ramp) -> f64 {
        match self {
            Self::Linear {
                scale,
                offset,
                unpruned,
            } => violation * scale + ramp.bound(offset, unpruned),
            Self::LogRatio { aim, unpruned } => ramp.bound(aim, unpruned) * violation.exp(),
        }
    }
}

/// One quantity `metrics.csv` follows per step (three columns: its expected value, its
/// value with deterministic gates, the multiplier) and `density.png` plots.
pub(super) struct Logged {
    /// Column prefix (`global`, `layer0`, `flash`).
    name: String,
    /// The constraint and entry it reads.
    id: crate::constrained::ConstraintId,
    entry: usize,
    /// Value of the quantity from a violation (the target or budget added back).
    to_unit: ToUnit,
    /// `density` or `bytes`.
    unit: &'static str,
    /// Its target or budget, in `unit`.
    bound: f64,
}

impl Logged {
    pub(super) fn density(
        id: crate::constrained::ConstraintId,
        entry: usize,
        name: String,
        t: f64,
    ) -> Self {
        Self {
            name,
            id,
            entry,
            to_unit: ToUnit::Linear {
                scale: 1.0,
                offset: t,
                unpruned: 1.0,
            },
            unit: "density",
            bound: t,
        }
    }

    pub(super) fn flash(f: &FlashConstraint) -> Self {
        Self {
            name: "flash".into(),
            id: f.id,
            entry: 0,
            to_unit: ToUnit::LogRatio {
                aim: f.bytes_of(0.0),
                unpruned: f.model.full_size() as f64,
            },
            unit: "bytes",
            bound: f.budget as f64,
        }
    }

    pub(super) fn ram(r: &RamConstraint) -> Self {
        Self {
            name: "ram".into(),
            id: r.id,
            entry: 0,
            to_unit: ToUnit::Linear {
                scale: r.bytes_of(1.0) - r.bytes_of(0.0),
                offset: r.bytes_of(0.0),
                unpruned: r.model.full as f64,
            },
            unit: "bytes",
            bound: r.budget as f64,
        }
    }

    pub(super) fn latency(l: &LatencyConstraint) -> Self {
        Self {
            name: "latency".into(),
            id: l.id,
            entry: 0,
            to_unit: ToUnit::Linear {
                scale: l.seconds_of(1.0) - l.seconds_of(0.0),
                offset: l.seconds_of(0.0),
                unpruned: l.model.dense,
            },
            unit: "seconds",
            bound: l.budget,
        }
    }

    /// Expected value, deterministic value and multiplier at this step (`ramp` as it was
    /// for the step).
    pub(super) fn observe<B: AutodiffBackend, M>(
        &self,
        info: &StepInfo<'_, B, M>,
        ramp: &Ramp,
    ) -> [f64; 3] {
        let Some((_, v, strict)) = info
            .values
            .constraints
            .iter()
            .find(|(id, _, _)| *id == self.id)
        else {
            return [f64::NAN; 3];
        };
        let at = |x: f64| self.to_unit.at(x, ramp);
        let strict = strict.as_ref().map_or(f64::NAN, |s| s[self.entry]);
        let lambda = info
            .set
            .get(self.id)
            .ok()
            .and_then(|c| c.formulation().multiplier())
            .map_or(f64::NAN, |m| m.to_vec()[self.entry]);
        [at(v[self.entry]), at(strict), lambda]
    }
}

/// `metrics.csv` (per step: loss, then per logged quantity its expected value, its value
/// with deterministic gates and its multiplier: `global_density`, `flash_bytes`, ...) and
/// its plot, `density.png`: one panel per kind of constraint with its target or budget
/// (its title says whether the written model met it), and the multipliers.
pub(super) fn write_metrics(
    c: &PruneConfig,
    logged: &[Logged],
    steps: &[Vec<f64>],
    budgets: &[BudgetResult],
) -> anyhow::Result<()> {
    let mut header: Vec<String> = vec!["step".into(), "loss".into()];
    for l in logged {
        let (n, u) = (&l.name, l.unit);
        header.extend([
            format!("{n}_expected_{u}"),
            format!("{n}_{u}"),
            format!("{n}_multiplier"),
        ]);
    }
    write_atomic(&c.out.join("metrics.csv"), csv(&header, steps).as_bytes())?;
    let series = |col: usize, label: String| Series {
        label,
        points: steps.iter().map(|r| (r[0], r[col])).collect(),
    };
    let end = steps.len() as f64;
    let mut panels = Vec::new();
    let mut mult = Vec::new();
    // One panel per kind of constraint: the densities together, each budget alone.
    for (unit, name, title, y_label) in [
        (
            "density",
            None,
            "Density".to_string(),
            "fraction of parameters kept",
        ),
        (
            "bytes",
            Some("flash"),
            "Flash (model.tthr)".to_string(),
            "bytes",
        ),
        (
            "bytes",
            Some("ram"),
            "RAM (the device's plan)".to_string(),
            "bytes",
        ),
        (
            "seconds",
            None,
            "Latency (tether-deploy, this host)".to_string(),
            "seconds",
        ),
    ] {
        let mut lines = Vec::new();
        let mut title = title;
        let shown = |l: &&Logged| l.unit == unit && name.is_none_or(|n| l.name == n);
        for (k, l) in logged.iter().enumerate().filter(|(_, l)| shown(l)) {
            let n = &l.name;
            lines.push(series(
                3 + 3 * k,
                format!("{n} {unit} (deterministic gates)"),
            ));
            lines.push(series(2 + 3 * k, format!("{n} expected {unit}")));
            mult.push(series(4 + 3 * k, format!("{n} multiplier")));
            let what = if unit == "density" {
                "target"
            } else {
                "budget"
            };
            lines.push(Series {
                label: format!("{what} {}", l.bound),
                points: vec![(0.0, l.bound), (end, l.bound)],
            });
            if let Some(b) = budgets.iter().find(|b| b.name == l.name) {
                title = format!(
                    "{title}: budget {}, written {} ({})",
                    b.budget,
                    b.achieved,
                    if b.met { "met" } else { "NOT met" }
                );
            }
        }
        if !lines.is_empty() {
            panels.push(Panel {
                title,
                x_label: "step".into(),
                y_label: y_label.into(),
                series: lines,
            });
        }
    }
    // Where a multiplier fell to 0 from above: the dual restart (Gallego-Posada et al.
    // 2022, Sec. 4.2) resets it once the constraint is met, so the gates stop being
    // pushed the moment the target is reached; marked, so the drop is not a mystery.
    let top = steps
        .iter()
        .flat_map(|r| (0..logged.len()).map(move |k| r[4 + 3 * k]))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let drops: Vec<f64> = steps
        .windows(2)
        .filter(|w| (0..logged.len()).any(|k| w[0][4 + 3 * k] > 0.0 && w[1][4 + 3 * k] == 0.0))
        .map(|w| w[1][0])
        .collect();
    let restarts = c.fixed_penalty.is_none() && !c.no_dual_restarts;
    let mut title = "Lagrange multipliers".to_string();
    if !drops.is_empty() {
        let what = if restarts {
            "reset to 0 by the dual restart (constraint met)"
        } else {
            "projected to 0 (lambda >= 0)"
        };
        let times = match drops.len() {
            1 => "once".to_string(),
            n => format!("{n} times"),
        };
        title = format!("{title}: marks where one is {what}, {times}");
        mult.push(vertical_marks(
            if restarts {
                "dual restart".into()
            } else {
                "projected to 0".into()
            },
            &drops,
            0.0,
            top.max(1e-9),
        ));
    }
    panels.push(Panel {
        title,
        x_label: "step".into(),
        y_label: "lambda".into(),
        series: mult,
    });
    line_chart(&c.out.join("density.png"), &panels)?;
    Ok(())
}
