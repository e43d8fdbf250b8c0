use super::metrics_csv::ToUnit;
use super::*;
use crate::tasks::budget::units::Bytes;
use crate::tasks::prune_ramp::Ramp;

#[test]
fn a_config_round_trips_through_json_with_the_optimizer_at_the_top_level() {
    let config = PruneConfig {
        model: Model::Lenet5.into(),
        structure: Structure::Block1x4,
        fixed_penalty: Some(0.5),
        ..PruneConfig::default()
    };
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["model"], "lenet5");
    assert_eq!(json["structure"], "block1x4");
    assert_eq!(json["optimizer"], "adam");
    assert_eq!(json["momentum"], 0.9);
    let back: PruneConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, config);
    // Missing keys take the defaults.
    let partial: PruneConfig =
        serde_json::from_str(r#"{"epochs": 7, "optimizer": "sgd"}"#).unwrap();
    assert_eq!(partial.epochs, 7);
    assert_eq!(
        partial.optimizer.optimizer,
        crate::optim::OptimizerKind::Sgd
    );
    assert_eq!(partial.batch, PruneConfig::default().batch);
}

#[test]
fn bad_settings_are_named() {
    let bad = |c: PruneConfig| c.validate().unwrap_err().to_string();
    let e = bad(PruneConfig {
        target_density: Some(0.0),
        ..PruneConfig::default()
    });
    assert!(e.contains("--target-density"), "{e}");
    let e = bad(PruneConfig {
        epochs: 2,
        finetune_epochs: 2,
        ..PruneConfig::default()
    });
    assert!(e.contains("--finetune-epochs (2)"), "{e}");
    let e = bad(PruneConfig {
        dual_lr: -1.0,
        ..PruneConfig::default()
    });
    assert!(!e.is_empty());
    assert!(PruneConfig::default().validate().is_ok());
    let e = bad(PruneConfig {
        epochs: 4,
        warmup_epochs: Some(3),
        finetune_epochs: 1,
        ..PruneConfig::default()
    });
    assert!(e.contains("--warmup-epochs (3)"), "{e}");
    let e = bad(PruneConfig {
        method: Method::Gmp,
        epochs: 10,
        warmup_epochs: Some(2),
        ..PruneConfig::default()
    });
    assert!(e.contains("L0 method"), "{e}");
    let e = bad(PruneConfig {
        method: Method::Gmp,
        ramp_epochs: 4,
        ..PruneConfig::default()
    });
    assert!(e.contains("--ramp-epochs belongs to the L0 method"), "{e}");
    let e = bad(PruneConfig {
        epochs: 10,
        ramp_epochs: 6,
        finetune_epochs: 2,
        ..PruneConfig::default()
    });
    assert!(
        e.contains("--ramp-epochs (6) with the warm-up (3) and --finetune-epochs (2)"),
        "{e}"
    );
    assert!(
        PruneConfig {
            epochs: 10,
            ramp_epochs: 7,
            ..PruneConfig::default()
        }
        .validate()
        .is_ok()
    );
}

#[test]
fn a_ramped_bound_maps_back_to_the_quantity_it_was_measured_against() {
    let ramp = Ramp::new(0, 100);
    ramp.at_step(50);
    let density = ToUnit::Linear {
        scale: 1.0,
        offset: 0.1,
        unpruned: 1.0,
    };
    let bound = 0.1 + 0.9 * 0.125;
    // A violation of 0 is the bound of the step, not the final target.
    assert!((density.at(0.0, &ramp) - bound).abs() < 1e-12);
    assert!((density.at(0.02, &ramp) - (bound + 0.02)).abs() < 1e-12);
    let flash = ToUnit::LogRatio {
        aim: 32_000.0,
        unpruned: 1_000_000.0,
    };
    let aim = 32_000.0 + 968_000.0 * 0.125;
    assert!((flash.at(0.0, &ramp) - aim).abs() < 1e-6);
    assert!((flash.at(2f64.ln(), &ramp) - 2.0 * aim).abs() < 1e-6);
    ramp.at_step(100);
    assert!((flash.at(0.0, &ramp) - 32_000.0).abs() < 1e-9);
}

#[test]
fn the_warm_up_defaults_to_three_tenths_of_the_epochs_for_l0_only() {
    let c = |epochs, finetune_epochs, method| PruneConfig {
        epochs,
        finetune_epochs,
        method,
        ..PruneConfig::default()
    };
    assert_eq!(c(10, 0, Method::L0).warmup(), 3);
    assert_eq!(c(3, 0, Method::L0).warmup(), 0);
    assert_eq!(c(4, 0, Method::L0).warmup(), 1);
    // It leaves an epoch for the gates after the fine-tuning.
    assert_eq!(c(4, 3, Method::L0).warmup(), 0);
    assert_eq!(c(10, 0, Method::Magnitude).warmup(), 0);
    let old = PruneConfig {
        warmup_epochs: Some(0),
        ..c(10, 0, Method::L0)
    };
    assert_eq!(old.warmup(), 0);
    let dense = PruneConfig {
        dense: true,
        ..c(10, 0, Method::L0)
    };
    assert_eq!(dense.warmup(), 0);
    let budget = PruneConfig {
        max_flash: Some(Bytes(32 * 1024)),
        ..c(10, 0, Method::L0)
    };
    assert_eq!(budget.warmup(), 3);
    let asked = PruneConfig {
        warmup_epochs: Some(3),
        ..budget
    };
    assert_eq!(asked.warmup(), 3);
}
