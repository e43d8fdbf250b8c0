//! The device budgets of a run (latency, RAM) measured on its exported network.

use super::job::{Job, PruneState};
use crate::tasks::budget::BudgetResult;
use crate::tasks::budget::latency::{LATENCY_TRIALS, LatencyModel, measure_latency};
use crate::tasks::budget::units::{Bytes, Seconds};
use crate::tasks::budget::widths::WidthModel;

impl Job<'_> {
    /// Times the deploy kernels on the exported network (`tthr`) to fit its latency model,
    /// and refuses a budget below the fastest the network can run.
    pub(super) fn latency_model(
        &self,
        tthr: &[u8],
        gated: &[usize],
    ) -> anyhow::Result<LatencyModel> {
        let c = self.config;
        let Some(Seconds(max)) = c.max_latency else {
            anyhow::bail!("internal error: no latency budget");
        };
        if self.progress {
            println!(
                "timing the deploy kernels for the latency model ({} gated layers, batch {})",
                gated.len(),
                c.latency_batch
            );
        }
        let saved = match &self.resume {
            Some(r) => serde_json::from_value::<PruneState>(r.state.task.clone())
                .ok()
                .and_then(|s| s.latency),
            None => None,
        };
        let model = match saved {
            Some(model) => model,
            None => LatencyModel::measure(tthr, gated, c.latency_batch, LATENCY_TRIALS)?,
        };
        *self.latency.borrow_mut() = Some(model.clone());
        let min = model.min_latency();
        anyhow::ensure!(
            max >= min,
            "--max-latency {}: this network takes at least {} per inference on this host \
             (batch {}) with every gated weight pruned (the rest of its ops); give at least \
             that",
            Seconds(max),
            Seconds(min),
            c.latency_batch
        );
        if self.progress {
            println!(
                "latency budget {} (the unpruned network: {}, the fastest it can be: {})",
                Seconds(max),
                Seconds(model.dense),
                Seconds(min)
            );
        }
        Ok(model)
    }

    /// The RAM budget's model where the budget needs one: `None` when the unpruned
    /// network already runs in `max` bytes (nothing to constrain). Refuses, before any
    /// training, a budget that the network cannot meet: below its RAM with one unit left
    /// per layer, or below its unpruned RAM when no layer is unit-gated (weights pruned
    /// one by one leave every activation as wide).
    pub(super) fn ram_model_needed(
        &self,
        ram: WidthModel,
        max: usize,
    ) -> anyhow::Result<Option<WidthModel>> {
        let c = self.config;
        if ram.full <= max {
            if self.progress {
                println!(
                    "RAM budget {}: the unpruned network already runs in {} (batch {})",
                    Bytes(max as u64),
                    Bytes(ram.full as u64),
                    c.ram_batch
                );
            }
            return Ok(None);
        }
        anyhow::ensure!(
            ram.has_units(),
            "--max-ram {}: this network needs {} of RAM at batch {} whatever its weights \
             (pruning single weights leaves every activation as wide); prune whole units \
             with --structure unit and --method l0",
            Bytes(max as u64),
            Bytes(ram.full as u64),
            c.ram_batch
        );
        let min = ram.min()?;
        anyhow::ensure!(
            max >= min,
            "--max-ram {}: this network needs at least {} of RAM at batch {} with one unit \
             left in every layer (its input, output and the layers' scratch); give at least \
             that",
            Bytes(max as u64),
            Bytes(min as u64),
            c.ram_batch
        );
        if self.progress {
            println!(
                "RAM budget {} (the unpruned network: {}, the least it can take: {})",
                Bytes(max as u64),
                Bytes(ram.full as u64),
                Bytes(min as u64)
            );
        }
        Ok(Some(ram))
    }

    /// The RAM budget judged on the written model: the device's RAM for --ram-batch
    /// samples, as `tether-deploy inspect` reports it.
    pub(super) fn ram_result(&self, tthr: &[u8]) -> anyhow::Result<Option<BudgetResult>> {
        let Some(Bytes(max)) = self.config.max_ram else {
            return Ok(None);
        };
        let aligned = tether_deploy::AlignedBytes::from_slice(tthr);
        let model = tether_deploy::Model::parse(&aligned)?;
        let ram = tether_deploy::cli::device_ram(&model, self.config.ram_batch)?;
        Ok(Some(BudgetResult::new("ram", max as f64, ram as f64)))
    }

    /// The latency budget judged on the written model, measured as `tether-deploy bench`
    /// measures it.
    pub(super) fn latency_result(&self, budget: f64, tthr: &[u8]) -> anyhow::Result<BudgetResult> {
        let measured = measure_latency(tthr, self.config.latency_batch, LATENCY_TRIALS)?;
        Ok(BudgetResult::new("latency", budget, measured))
    }
}
