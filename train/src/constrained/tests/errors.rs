//! Bad input is a clear error and leaves the state untouched.

use super::*;

fn one_constraint(indexed: bool) -> (ConstraintSet<B>, ConstraintId) {
    let device = Default::default();
    let mut set = ConstraintSet::<B>::new(&device);
    let cfg = if indexed { ga(1.0).indexed() } else { ga(1.0) };
    let id = set
        .add(
            "budget",
            ConstraintKind::Inequality,
            3,
            FormulationConfig::Lagrangian(cfg),
        )
        .unwrap();
    (set, id)
}

fn check(set: &ConstraintSet<B>, obs: ConstraintState<B>, id: ConstraintId) -> ConstrainedError {
    let state = state_of(&Default::default(), vec![(id, obs)]);
    set.validate(&state).unwrap_err()
}

#[test]
fn nan_and_infinite_values_are_rejected_by_name() {
    let (set, id) = one_constraint(false);
    let d = Default::default();
    let err = check(
        &set,
        ConstraintState::new(vec_tensor(&[0.0, f64::NAN, 1.0], &d)),
        id,
    );
    assert!(
        matches!(&err, ConstrainedError::NonFiniteViolation { constraint, which: "violation", .. } if constraint == "budget"),
        "{err}"
    );
    assert!(err.to_string().contains("`budget`"), "{err}");
    let strict = ConstraintState::new(vec_tensor(&[0.0; 3], &d))
        .with_strict_violation(vec_tensor(&[0.0, 0.0, f64::INFINITY], &d));
    let err = check(&set, strict, id);
    assert!(
        matches!(
            err,
            ConstrainedError::NonFiniteViolation {
                which: "strict_violation",
                ..
            }
        ),
        "{err}"
    );
    let mut state = state_of(&d, vec![]);
    state.loss = vec_tensor(&[f64::NAN], &d);
    assert!(matches!(
        set.validate(&state),
        Err(ConstrainedError::NonFiniteLoss { .. })
    ));
}

#[test]
fn a_nan_violation_stops_roll_before_any_update() {
    struct NanProblem(ConstraintId);
    impl ConstrainedProblem<B, Point<B>> for NanProblem {
        type Input = ();
        fn compute_cmp_state(&self, m: &Point<B>, _: &()) -> CmpState<B> {
            let x = m.x.val();
            let v = x.clone().log(); // log(-1) = NaN
            CmpState::new(x.sum()).with(self.0, ConstraintState::new(v))
        }
    }
    let (mut set, id) = one_constraint(false);
    let d = Default::default();
    let model = Point::<B>::new(&[1.0, -1.0, 2.0], &d);
    let mut opt = ConstrainedOptimizer::new(
        burn::optim::SgdConfig::new().init(),
        0.1,
        UpdateScheme::Simultaneous,
    );
    let before = set.to_record();
    let err = opt.roll(model, &mut set, &NanProblem(id), &()).unwrap_err();
    assert!(
        matches!(err, ConstrainedError::NonFiniteViolation { .. }),
        "{err}"
    );
    assert_eq!(format!("{:?}", set.to_record()), format!("{before:?}"));
}

#[test]
fn unknown_and_duplicate_constraints_are_rejected() {
    let (set, id) = one_constraint(false);
    let (_, foreign) = one_constraint(false);
    let d = Default::default();
    let v = || ConstraintState::new(vec_tensor(&[0.0; 3], &d));
    let err = check(&set, v(), foreign);
    assert!(
        matches!(err, ConstrainedError::UnknownConstraint { len: 1, .. }),
        "{err}"
    );
    let twice = state_of(&d, vec![(id, v()), (id, v())]);
    assert!(matches!(
        set.validate(&twice),
        Err(ConstrainedError::DuplicateConstraint { .. })
    ));
}

#[test]
fn mismatched_shapes_and_indices_are_rejected() {
    let d = Default::default();
    let (set, id) = one_constraint(false);
    let err = check(&set, ConstraintState::new(vec_tensor(&[0.0; 2], &d)), id);
    assert_eq!(
        err,
        ConstrainedError::ShapeMismatch {
            constraint: "budget".into(),
            what: "violation",
            expected: 3,
            got: 2
        }
    );
    let strict = ConstraintState::new(vec_tensor(&[0.0; 3], &d))
        .with_strict_violation(vec_tensor(&[0.0; 1], &d));
    assert!(matches!(
        check(&set, strict, id),
        ConstrainedError::ShapeMismatch {
            what: "strict_violation",
            ..
        }
    ));
    let dense_with_idx = ConstraintState::indexed(vec_tensor(&[0.0; 3], &d), vec![0, 1, 2]);
    assert!(matches!(
        check(&set, dense_with_idx, id),
        ConstrainedError::IndexingMismatch { .. }
    ));

    let (set, id) = one_constraint(true);
    let cases: Vec<(ConstraintState<B>, &str)> = vec![
        (
            ConstraintState::new(vec_tensor(&[0.0; 3], &d)),
            "needs the indices",
        ),
        (
            ConstraintState::indexed(vec_tensor(&[0.0; 2], &d), vec![0]),
            "indices has 1 entries, expected 2",
        ),
        (
            ConstraintState::indexed(vec_tensor(&[0.0; 2], &d), vec![0, 3]),
            "index 3 is out of range for 3",
        ),
        (
            ConstraintState::indexed(vec_tensor(&[0.0; 2], &d), vec![1, 1]),
            "index 1 appears twice",
        ),
    ];
    for (obs, want) in cases {
        let err = check(&set, obs, id).to_string();
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn invalid_configurations_name_the_bad_value() {
    let d = Default::default();
    let mut set = ConstraintSet::<B>::new(&d);
    let ineq = ConstraintKind::Inequality;
    let cases: Vec<(FormulationConfig, &str)> = vec![
        (
            FormulationConfig::Lagrangian(nupi(NuPiConfig::new(0.1).with_nu(1.0))),
            "nu must lie in (-1, 1), got 1",
        ),
        (
            FormulationConfig::Lagrangian(ga(-1.0)),
            "lr must be finite and >= 0, got -1",
        ),
        (
            FormulationConfig::Lagrangian(ga(1.0).with_init(-2.0)),
            "must start >= 0, got -2",
        ),
        (
            FormulationConfig::Lagrangian(ga(1.0).with_upper_bound(-1.0)),
            "upper bound",
        ),
        (
            FormulationConfig::QuadraticPenalty(PenaltyConfig::fixed(0.0)),
            "penalty coefficient must be finite and > 0, got 0",
        ),
        (
            FormulationConfig::QuadraticPenalty(
                PenaltyConfig::fixed(1.0).with_growth(0.5, 0.0, 10.0),
            ),
            "factor > 1",
        ),
    ];
    for (cfg, want) in cases {
        let err = set.add("c", ineq, 1, cfg).unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
    let eq_restart = FormulationConfig::Lagrangian(ga(1.0).with_restart_on_feasible(true));
    assert!(
        set.add("e", ConstraintKind::Equality, 1, eq_restart)
            .is_err()
    );
    set.add("ok", ineq, 1, FormulationConfig::Lagrangian(ga(1.0)))
        .unwrap();
    let err = set
        .add("ok", ineq, 1, FormulationConfig::Lagrangian(ga(1.0)))
        .unwrap_err();
    assert!(err.to_string().contains("already registered"), "{err}");
    assert!(
        set.add("empty", ineq, 0, FormulationConfig::Lagrangian(ga(1.0)))
            .is_err()
    );
}

#[test]
fn extragradient_restores_the_duals_when_the_extrapolated_point_is_bad() {
    /// Finite at the first evaluation, NaN at the extrapolated point.
    struct SecondCallNan(ConstraintId, std::cell::Cell<usize>);
    impl ConstrainedProblem<B, Point<B>> for SecondCallNan {
        type Input = ();
        fn compute_cmp_state(&self, m: &Point<B>, _: &()) -> CmpState<B> {
            let calls = self.1.get();
            self.1.set(calls + 1);
            let x = m.x.val();
            let v = if calls == 0 {
                x.clone()
            } else {
                x.clone().mul_scalar(f32::NAN)
            };
            CmpState::new(x.sum().reshape([1])).with(self.0, ConstraintState::new(v))
        }
    }
    let (mut set, id) = one_constraint(false);
    let model = Point::<B>::new(&[1.0, 2.0, 3.0], &Default::default());
    let mut opt = ConstrainedOptimizer::new(
        burn::optim::SgdConfig::new().init(),
        0.1,
        UpdateScheme::Extragradient,
    );
    let before = format!("{:?}", set.to_record());
    let problem = SecondCallNan(id, std::cell::Cell::new(0));
    let err = opt.roll(model, &mut set, &problem, &()).unwrap_err();
    assert!(
        matches!(err, ConstrainedError::NonFiniteViolation { .. }),
        "{err}"
    );
    assert_eq!(problem.1.get(), 2, "the extrapolated point was evaluated");
    assert_eq!(format!("{:?}", set.to_record()), before);
}

/// Steps observed without a host read read nothing back; a NaN on one of them is reported
/// by the next read step (with how many steps it covers), in that step's single read; a
/// structural error is still reported on the unread step itself.
#[test]
fn unread_steps_defer_the_finiteness_check_to_the_next_read() {
    use tether_models::host::ReadCounter;
    let (mut set, id) = one_constraint(false);
    let d = Default::default();
    let good = || {
        state_of(
            &d,
            vec![(id, ConstraintState::new(vec_tensor(&[0.0; 3], &d)))],
        )
    };
    let bad = state_of(
        &d,
        vec![(
            id,
            ConstraintState::new(vec_tensor(&[0.0, f64::NAN, 1.0], &d)),
        )],
    );
    let counter = ReadCounter::start();
    assert!(set.observe(&good(), false).unwrap().is_unread());
    assert!(set.observe(&bad, false).unwrap().is_unread());
    assert!(set.observe(&good(), false).unwrap().is_unread());
    assert_eq!(counter.reads(), 0, "unread steps read nothing");
    let err = set.observe(&good(), true).unwrap_err();
    assert_eq!(
        counter.reads(),
        1,
        "one read for the values and the deferred check"
    );
    assert!(
        matches!(
            err,
            ConstrainedError::NonFiniteUnread {
                steps: 3,
                values: 1
            }
        ),
        "{err}"
    );
    // The count was consumed: the next read step sees only its own values.
    let values = set.observe(&good(), true).unwrap();
    assert_eq!(values.constraints[0].1, vec![0.0; 3]);
    assert!(set.observe(&good(), false).is_ok());
    assert_eq!(set.observe(&good(), true).unwrap().loss, values.loss);
    // Shapes are host metadata: checked on unread steps too.
    let short = state_of(
        &d,
        vec![(id, ConstraintState::new(vec_tensor(&[0.0; 2], &d)))],
    );
    assert!(matches!(
        set.observe(&short, false),
        Err(ConstrainedError::ShapeMismatch { .. })
    ));
}
