//! nuPI's special cases and the dense/indexed equivalence, step for step.

use burn::tensor::backend::AutodiffBackend;

use super::*;

/// Deterministic pseudo-random errors in [-1, 1] (a fixed LCG: no RNG state to seed).
fn errors(steps: usize, len: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut s = seed;
    (0..steps)
        .map(|_| {
            (0..len)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
                })
                .collect()
        })
        .collect()
}

/// Feeds the same error sequence to one constraint per config; returns each multiplier's
/// trajectory.
fn trajectories<B: AutodiffBackend>(
    kind: ConstraintKind,
    configs: Vec<MultiplierConfig>,
    errs: &[Vec<f64>],
) -> Vec<Vec<Vec<f64>>> {
    let device = Default::default();
    let mut set = ConstraintSet::<B>::new(&device);
    let len = errs[0].len();
    let ids: Vec<_> = configs
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            set.add(format!("c{i}"), kind, len, FormulationConfig::Lagrangian(c))
                .unwrap()
        })
        .collect();
    let mut out = vec![vec![]; ids.len()];
    for e in errs {
        let obs = ids
            .iter()
            .map(|&id| (id, ConstraintState::new(vec_tensor(e, &device))))
            .collect();
        let state = state_of(&device, obs);
        set.validate(&state).unwrap();
        set.dual_step(&state).unwrap();
        for (k, &id) in ids.iter().enumerate() {
            let m = set.get(id).unwrap().formulation().multiplier().unwrap();
            out[k].push(m.to_vec());
        }
    }
    out
}

fn nupi_with_zero_kp_is_gradient_ascent_bit_for_bit<B: AutodiffBackend>() {
    let errs = errors(200, 5, 1);
    for kind in [ConstraintKind::Inequality, ConstraintKind::Equality] {
        for init in [NuPiInit::Zeros, NuPiInit::Sgd] {
            let t = trajectories::<B>(
                kind,
                vec![ga(0.3), nupi(NuPiConfig::new(0.3).with_init(init))],
                &errs,
            );
            assert_eq!(t[0], t[1], "{kind:?} {init:?}");
        }
    }
}

fn nupi_matches_polyak_heavy_ball_step_for_step<B: AutodiffBackend>() {
    // Heavy ball (ascent): v_t = beta v_{t-1} + e_t, lambda_{t+1} = lambda_t + alpha v_t.
    let (alpha, beta) = (0.05, 0.8);
    let cfg = NuPiConfig::new(1.0)
        .with_nu(beta)
        .with_ki(alpha / (1.0 - beta))
        .with_kp(-alpha * beta / (1.0 - beta).powi(2));
    let errs = errors(300, 4, 7);
    let got = &trajectories::<B>(ConstraintKind::Equality, vec![nupi(cfg)], &errs)[0];
    let mut lambda = [0.0; 4];
    let mut v = [0.0; 4];
    for (t, e) in errs.iter().enumerate() {
        for k in 0..4 {
            v[k] = beta * v[k] + e[k];
            lambda[k] += alpha * v[k];
            let diff = (got[t][k] - lambda[k]).abs();
            assert!(
                diff < 1e-5 * (1.0 + lambda[k].abs()),
                "step {t}: {} vs {}",
                got[t][k],
                lambda[k]
            );
        }
    }
}

fn nupi_heavy_ball_closed_loop_on_a_concave_quadratic<B: AutodiffBackend>() {
    // Maximise q(lambda) = -1/2 a lambda^2 + c lambda; error e = c - a lambda (closed loop).
    let (a, c, alpha, beta) = (2.0, 1.0, 0.1, 0.5);
    let cfg = NuPiConfig::new(1.0)
        .with_nu(beta)
        .with_ki(alpha / (1.0 - beta))
        .with_kp(-alpha * beta / (1.0 - beta).powi(2));
    let device = Default::default();
    let mut set = ConstraintSet::<B>::new(&device);
    let id = set
        .add(
            "q",
            ConstraintKind::Equality,
            1,
            FormulationConfig::Lagrangian(nupi(cfg)),
        )
        .unwrap();
    let (mut hb, mut v) = (0.0f64, 0.0f64);
    for t in 0..100 {
        let lam = set
            .get(id)
            .unwrap()
            .formulation()
            .multiplier()
            .unwrap()
            .to_vec()[0];
        assert!(
            (lam - hb).abs() < 1e-5,
            "step {t}: nuPI {lam} vs heavy ball {hb}"
        );
        let state = state_of(
            &device,
            vec![(
                id,
                ConstraintState::new(vec_tensor(&[c - a * lam], &device)),
            )],
        );
        set.dual_step(&state).unwrap();
        v = beta * v + (c - a * hb);
        hb += alpha * v;
    }
    assert!((hb - c / a).abs() < 1e-6, "heavy ball converged to {hb}");
}

fn nupi_pi_is_optimistic_gradient<B: AutodiffBackend>() {
    // kp = ki = 1, nu = 0, zeros init: lambda += eta (2 e_t - e_{t-1}), e_{-1} = 0.
    let eta = 0.2;
    let errs = errors(100, 3, 3);
    let got = &trajectories::<B>(
        ConstraintKind::Equality,
        vec![nupi(NuPiConfig::new(eta).with_kp(1.0))],
        &errs,
    )[0];
    let mut lambda = [0.0; 3];
    let mut prev = [0.0; 3];
    for (t, e) in errs.iter().enumerate() {
        for k in 0..3 {
            lambda[k] += eta * (2.0 * e[k] - prev[k]);
            prev[k] = e[k];
            assert!((got[t][k] - lambda[k]).abs() < 1e-5, "step {t}");
        }
    }
}

fn nupi_init_schemes_set_the_first_step<B: AutodiffBackend>() {
    let (eta, kp, ki, nu) = (0.5, 2.0, 1.0, 0.3);
    let errs = vec![vec![1.0], vec![0.5]];
    let base = NuPiConfig::new(eta).with_kp(kp).with_ki(ki).with_nu(nu);
    let t = trajectories::<B>(
        ConstraintKind::Equality,
        vec![
            nupi(base.clone().with_init(NuPiInit::Zeros)),
            nupi(base.with_init(NuPiInit::Sgd)),
        ],
        &errs,
    );
    let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    // Zeros: xi_{-1} = 0, xi_0 = (1-nu) e_0.
    let z1 = eta * (ki + kp * (1.0 - nu)) * 1.0;
    close(t[0][0][0], z1);
    let xi0 = (1.0 - nu) * 1.0;
    let xi1 = nu * xi0 + (1.0 - nu) * 0.5;
    close(t[0][1][0], z1 + eta * (ki * 0.5 + kp * (xi1 - xi0)));
    // Sgd: xi_{-1} = e_0, so the first step is plain ascent and xi_0 = e_0.
    close(t[1][0][0], eta * ki * 1.0);
    let xi1 = nu * 1.0 + (1.0 - nu) * 0.5;
    close(t[1][1][0], eta * ki + eta * (ki * 0.5 + kp * (xi1 - 1.0)));
}

/// Dense and indexed multipliers fed the same data move identically, bit for bit, with
/// indices in any order, with partial observation, restarts and both nuPI inits.
fn dense_and_indexed_multipliers_agree_bit_for_bit<B: AutodiffBackend>() {
    let device = Default::default();
    for init in [NuPiInit::Zeros, NuPiInit::Sgd] {
        let cfg = nupi(
            NuPiConfig::new(0.1)
                .with_kp(3.0)
                .with_nu(0.6)
                .with_init(init),
        )
        .with_restart_on_feasible(true)
        .with_upper_bound(5.0);
        let mut set = ConstraintSet::<B>::new(&device);
        let ineq = ConstraintKind::Inequality;
        let dense = set
            .add("dense", ineq, 4, FormulationConfig::Lagrangian(cfg.clone()))
            .unwrap();
        let idx = set
            .add(
                "indexed",
                ineq,
                4,
                FormulationConfig::Lagrangian(cfg.clone().indexed()),
            )
            .unwrap();
        // A dense pair observing the entries {1, 3} of a partially observed indexed one.
        let pair = set
            .add("pair", ineq, 2, FormulationConfig::Lagrangian(cfg.clone()))
            .unwrap();
        let part = set
            .add(
                "partial",
                ineq,
                4,
                FormulationConfig::Lagrangian(cfg.indexed()),
            )
            .unwrap();
        let errs = errors(150, 4, 11);
        for (t, e) in errs.iter().enumerate() {
            let order: Vec<usize> = if t % 2 == 0 {
                vec![2, 0, 3, 1]
            } else {
                vec![1, 3, 0, 2]
            };
            let permuted: Vec<f64> = order.iter().map(|&i| e[i]).collect();
            let sub = [e[1], e[3]];
            let state = state_of(
                &device,
                vec![
                    (dense, ConstraintState::new(vec_tensor(e, &device))),
                    (
                        idx,
                        ConstraintState::indexed(vec_tensor(&permuted, &device), order),
                    ),
                    (pair, ConstraintState::new(vec_tensor(&sub, &device))),
                    (
                        part,
                        ConstraintState::indexed(
                            vec_tensor(&[sub[1], sub[0]], &device),
                            vec![3, 1],
                        ),
                    ),
                ],
            );
            set.validate(&state).unwrap();
            set.dual_step(&state).unwrap();
            let m = |id| {
                set.get(id)
                    .unwrap()
                    .formulation()
                    .multiplier()
                    .unwrap()
                    .value()
            };
            assert_eq!(bits(&m(dense)), bits(&m(idx)), "step {t}");
            let p = bits(&m(part));
            let q = bits(&m(pair));
            assert_eq!([p[1], p[3]], [q[0], q[1]], "step {t}");
            assert_eq!([p[0], p[2]], [0, 0], "unobserved entries must not move");
        }
    }
}

fn projection_bounds_and_restarts<B: AutodiffBackend>() {
    let device = Default::default();
    let mut set = ConstraintSet::<B>::new(&device);
    let ineq = ConstraintKind::Inequality;
    let bounded = set
        .add(
            "bounded",
            ineq,
            2,
            FormulationConfig::Lagrangian(ga(1.0).with_upper_bound(1.5)),
        )
        .unwrap();
    let restart = set
        .add(
            "restart",
            ineq,
            2,
            FormulationConfig::Lagrangian(ga(1.0).with_restart_on_feasible(true)),
        )
        .unwrap();
    let eq = set
        .add(
            "eq",
            ConstraintKind::Equality,
            2,
            FormulationConfig::Lagrangian(ga(1.0).with_upper_bound(0.7)),
        )
        .unwrap();
    let step = |set: &mut ConstraintSet<B>, e: [f64; 2]| {
        let s = state_of(
            &device,
            vec![
                (bounded, ConstraintState::new(vec_tensor(&e, &device))),
                (restart, ConstraintState::new(vec_tensor(&e, &device))),
                (eq, ConstraintState::new(vec_tensor(&e, &device))),
            ],
        );
        set.dual_step(&s).unwrap();
    };
    let val = |set: &ConstraintSet<B>, id| {
        set.get(id)
            .unwrap()
            .formulation()
            .multiplier()
            .unwrap()
            .to_vec()
    };
    step(&mut set, [1.0, -0.5]);
    assert_eq!(val(&set, bounded), vec![1.0, 0.0]); // projected onto lambda >= 0
    assert_eq!(val(&set, restart), vec![1.0, 0.0]);
    assert_eq!(val(&set, eq), vec![f64::from(0.7f32), -0.5]); // clamped to [-0.7, 0.7]
    step(&mut set, [1.0, 2.0]);
    assert_eq!(val(&set, bounded), vec![1.5, 1.5]); // upper bound
    step(&mut set, [-0.25, 0.5]);
    assert_eq!(val(&set, bounded), vec![1.25, 1.5]);
    // Strictly feasible entry 0 restarts to 0 instead of decreasing by 0.25.
    assert_eq!(val(&set, restart), vec![0.0, 2.5]);
}

backend_tests!(
    nupi_with_zero_kp_is_gradient_ascent_bit_for_bit,
    nupi_matches_polyak_heavy_ball_step_for_step,
    nupi_heavy_ball_closed_loop_on_a_concave_quadratic,
    nupi_pi_is_optimistic_gradient,
    nupi_init_schemes_set_the_first_step,
    dense_and_indexed_multipliers_agree_bit_for_bit,
    projection_bounds_and_restarts
);

/// A batch that observes none of an indexed constraint's entries changes nothing.
#[test]
fn an_empty_indexed_observation_is_a_no_op() {
    type F = burn::backend::Autodiff<burn::backend::Flex>;
    let device = Default::default();
    let mut set = ConstraintSet::<F>::new(&device);
    let cfg = nupi(NuPiConfig::new(0.1).with_kp(1.0)).indexed();
    let id = set
        .add(
            "groups",
            ConstraintKind::Inequality,
            3,
            FormulationConfig::Lagrangian(cfg),
        )
        .unwrap();
    let empty = || ConstraintState::indexed(Tensor::<F, 1>::zeros([0], &device), vec![]);
    let state = state_of(&device, vec![(id, empty())]);
    let values = set.validate(&state).unwrap();
    assert_eq!(values.constraints[0].1, Vec::<f64>::new());
    let _ = set.lagrangian(&state);
    set.dual_step(&state).unwrap();
    let m = set
        .get(id)
        .unwrap()
        .formulation()
        .multiplier()
        .unwrap()
        .to_vec();
    assert_eq!(m, vec![0.0; 3]);
}
