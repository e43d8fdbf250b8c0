//! An interrupted run resumed from a checkpoint continues bit for bit.

use burn::optim::AdamConfig;

use super::*;

struct Problem {
    ineq: ConstraintId,
    eq: ConstraintId,
}

impl ConstrainedProblem<B, Point<B>> for Problem {
    type Input = ();
    fn compute_cmp_state(&self, m: &Point<B>, _: &()) -> CmpState<B> {
        let x = m.x.val();
        let loss = (x.clone() - x.ones_like().mul_scalar(2.0))
            .powi_scalar(2)
            .sum();
        let g = x.clone().sum().sub_scalar(1.0).reshape([1]);
        let h = x.clone().narrow(0, 0, 1) - x.narrow(0, 1, 1).mul_scalar(2.0);
        CmpState::new(loss)
            .with(self.ineq, ConstraintState::new(g))
            .with(self.eq, ConstraintState::new(h))
    }
}

fn fresh(
    scheme: UpdateScheme,
) -> (
    Point<B>,
    ConstrainedOptimizer<impl burn::optim::Optimizer<Point<B>, B>>,
    ConstraintSet<B>,
    Problem,
) {
    let device = Default::default();
    let mut set = ConstraintSet::<B>::new(&device);
    let pi = nupi(
        NuPiConfig::new(0.1)
            .with_kp(1.5)
            .with_nu(0.3)
            .with_init(NuPiInit::Sgd),
    );
    let ineq = set
        .add(
            "ineq",
            ConstraintKind::Inequality,
            1,
            FormulationConfig::AugmentedLagrangian {
                multiplier: pi.clone().with_restart_on_feasible(true),
                penalty: PenaltyConfig::fixed(0.5).with_growth(1.01, 1e-3, 10.0),
            },
        )
        .unwrap();
    let eq = set
        .add(
            "eq",
            ConstraintKind::Equality,
            1,
            FormulationConfig::Lagrangian(pi),
        )
        .unwrap();
    let model = Point::<B>::new(&[0.3, -0.2, 0.9], &device);
    let opt = ConstrainedOptimizer::new(AdamConfig::new().init(), 0.05, scheme);
    (model, opt, set, Problem { ineq, eq })
}

fn fingerprint(model: &Point<B>, set: &ConstraintSet<B>) -> (Vec<u32>, String) {
    (bits(&model.x.val()), format!("{:?}", set.to_record()))
}

#[test]
fn resume_is_bit_identical() {
    let dir = std::env::temp_dir().join(format!("tether-ckpt-{}", std::process::id()));
    for scheme in [UpdateScheme::Simultaneous, UpdateScheme::Extragradient] {
        let (mut model, mut opt, mut set, problem) = fresh(scheme);
        for _ in 0..40 {
            model = opt.roll(model, &mut set, &problem, &()).unwrap().model;
        }
        let straight = fingerprint(&model, &set);

        let (mut model, mut opt, mut set, problem) = fresh(scheme);
        for _ in 0..20 {
            model = opt.roll(model, &mut set, &problem, &()).unwrap().model;
        }
        save_checkpoint(&dir, 20, &model, &opt, &set).unwrap();
        drop((model, opt, set));

        let (model, mut opt, mut set, problem) = fresh(scheme);
        let (mut model, step) = load_checkpoint(&dir, model, &mut opt, &mut set).unwrap();
        assert_eq!(step, 20);
        for _ in 20..40 {
            model = opt.roll(model, &mut set, &problem, &()).unwrap().model;
        }
        assert_eq!(fingerprint(&model, &set), straight, "{scheme:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_or_mismatched_checkpoints_are_errors() {
    let dir = std::env::temp_dir().join(format!("tether-ckpt-bad-{}", std::process::id()));
    let (model, opt, set, _) = fresh(UpdateScheme::Simultaneous);
    save_checkpoint(&dir, 0, &model, &opt, &set).unwrap();
    std::fs::write(dir.join("dual.json"), b"{\"format\": 1, \"step\": ").unwrap();
    let (model, mut opt, mut set, _) = fresh(UpdateScheme::Simultaneous);
    let err = load_checkpoint(&dir, model, &mut opt, &mut set).unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");

    // A checkpoint of a different constraint set.
    let (model, opt, _, _) = fresh(UpdateScheme::Simultaneous);
    let mut other = ConstraintSet::<B>::new(&Default::default());
    other
        .add(
            "other",
            ConstraintKind::Inequality,
            1,
            FormulationConfig::Lagrangian(ga(1.0)),
        )
        .unwrap();
    other
        .add(
            "eq",
            ConstraintKind::Equality,
            1,
            FormulationConfig::Lagrangian(ga(1.0)),
        )
        .unwrap();
    save_checkpoint(&dir, 0, &model, &opt, &other).unwrap();
    let (model, mut opt, mut set, _) = fresh(UpdateScheme::Simultaneous);
    let err = load_checkpoint(&dir, model, &mut opt, &mut set).unwrap_err();
    assert!(err.to_string().contains("`other`"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
