use super::*;

/// The defaults are the flags' and survive JSON with the optimizer's keys at the top level.
#[test]
fn a_config_round_trips_through_json_with_the_flags_defaults() {
    let d = FairConfig::default();
    assert_eq!(d.dataset, FairDataset::Adult);
    assert_eq!(d.hidden, vec![256, 128]);
    assert_eq!((d.sparsity, d.dual_lr, d.ft_lr), (0.9, 0.02, 5e-4));
    assert_eq!((d.dense_epochs(), d.fine_tune_epochs()), (10, 20));
    let config = FairConfig {
        dataset: FairDataset::FashionMnist,
        method: FairMethod::EqualLoss,
        dense_epochs: Some(3),
        ..FairConfig::default()
    };
    let json = serde_json::to_value(&config).unwrap();
    assert_eq!(json["dataset"], "fashion-mnist");
    assert_eq!(json["method"], "equal-loss");
    assert_eq!(json["optimizer"], "adam");
    assert_eq!(serde_json::from_value::<FairConfig>(json).unwrap(), config);
    assert_eq!(config.fine_tune_epochs(), 10, "the images' default");
    let partial: FairConfig = serde_json::from_str(r#"{"epsilon": 0.05}"#).unwrap();
    assert_eq!(partial.epsilon, 0.05);
    assert_eq!(partial.batch, d.batch);
}

#[test]
fn bad_settings_are_named() {
    let bad = |c: FairConfig| c.validate().unwrap_err().to_string();
    let e = bad(FairConfig {
        sparsity: 1.0,
        ..FairConfig::default()
    });
    assert!(e.contains("--sparsity must lie in [0, 1)"), "{e}");
    let e = bad(FairConfig {
        margin: 0.5,
        ..FairConfig::default()
    });
    assert!(e.contains("--margin must lie in [0, --epsilon]"), "{e}");
    let e = bad(FairConfig {
        hidden: vec![8, 0],
        ..FairConfig::default()
    });
    assert!(e.contains("--hidden"), "{e}");
    let e = bad(FairConfig {
        pruned_from: Some("elsewhere".into()),
        prune_epochs: 2,
        ..FairConfig::default()
    });
    assert!(
        e.contains("--prune-epochs") && e.contains("--pruned-from"),
        "{e}"
    );
    assert!(FairConfig::default().validate().is_ok());
}
