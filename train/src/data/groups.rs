//! Protected groups: which group each sample belongs to, chosen by name.
//!
//! Group ids are data: a grouping is a named rule over a dataset's attributes (Adult's
//! race and sex, an image's class, ...) evaluated on the rows, not code per experiment.
//! Intersectional groupings can have combinations with a handful of people; those with
//! fewer than a minimum number of training samples are left out (their samples stay in
//! the training data but carry no constraint), so every constrained group has enough
//! samples for its accuracy to mean something.

use std::collections::BTreeMap;

use super::adult::AdultRow;

/// The id of a sample that belongs to no constrained group.
pub const NO_GROUP: u32 = u32::MAX;

/// A grouping could not be built.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GroupError {
    /// The name is not a grouping of this dataset.
    #[error("unknown grouping {name:?} for {dataset}; known: {known}")]
    Unknown {
        /// The requested name.
        name: String,
        /// The dataset.
        dataset: String,
        /// The groupings it has.
        known: String,
    },
    /// A group has no sample in a split.
    #[error(
        "group {group:?} has no {split} samples; choose a coarser grouping or a larger --min-group-size"
    )]
    Empty {
        /// The group's name.
        group: String,
        /// `train` or `test`.
        split: &'static str,
    },
    /// A sample's group id is not one of the groups.
    #[error("{split} sample {sample} has group id {id}, but there are only {groups} groups")]
    OutOfRange {
        /// `train` or `test`.
        split: &'static str,
        /// The sample's index.
        sample: usize,
        /// Its id.
        id: u32,
        /// The number of groups.
        groups: usize,
    },
    /// No group is left.
    #[error("the grouping leaves no group with at least {min_size} training samples")]
    None {
        /// The minimum group size asked for.
        min_size: usize,
    },
}

/// Each sample's group, for the training and test splits.
#[derive(Clone, Debug, PartialEq)]
pub struct Groups {
    /// Group names; group `g` is `names[g]`.
    pub names: Vec<String>,
    /// Group id of each training sample ([`NO_GROUP`] when in none).
    pub train: Vec<u32>,
    /// Group id of each test sample.
    pub test: Vec<u32>,
}

impl Groups {
    /// Validates ids (each below `names.len()` or [`NO_GROUP`]) and that every group has
    /// samples in both splits.
    pub fn new(names: Vec<String>, train: Vec<u32>, test: Vec<u32>) -> Result<Self, GroupError> {
        let groups = names.len();
        for (split, ids) in [("train", &train), ("test", &test)] {
            let mut count = vec![0usize; groups];
            for (sample, &id) in ids.iter().enumerate() {
                if id == NO_GROUP {
                    continue;
                }
                match count.get_mut(id as usize) {
                    Some(c) => *c += 1,
                    None => {
                        return Err(GroupError::OutOfRange {
                            split,
                            sample,
                            id,
                            groups,
                        });
                    }
                }
            }
            if let Some(g) = count.iter().position(|&c| c == 0) {
                return Err(GroupError::Empty {
                    group: names[g].clone(),
                    split,
                });
            }
        }
        Ok(Self { names, train, test })
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no groups.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Samples per group in `ids` (one of the splits).
    pub fn counts(&self, ids: &[u32]) -> Vec<usize> {
        let mut count = vec![0usize; self.len()];
        for &id in ids.iter().filter(|&&id| id != NO_GROUP) {
            count[id as usize] += 1;
        }
        count
    }

    /// Groups keyed by a string per sample: the keys with at least `min_size` training
    /// samples become groups (sorted by key); other samples get [`NO_GROUP`].
    pub fn from_keys(
        train: &[String],
        test: &[String],
        min_size: usize,
    ) -> Result<Self, GroupError> {
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for k in train {
            *count.entry(k).or_default() += 1;
        }
        let names: Vec<String> = count
            .iter()
            .filter(|&(_, &c)| c >= min_size.max(1))
            .map(|(k, _)| k.to_string())
            .collect();
        if names.is_empty() {
            return Err(GroupError::None { min_size });
        }
        let id = |k: &String| {
            names.binary_search(k).map_or(NO_GROUP, |i| {
                u32::try_from(i).expect("fewer than 2^32 groups")
            })
        };
        Self::new(
            names.clone(),
            train.iter().map(id).collect(),
            test.iter().map(id).collect(),
        )
    }

    /// `groups` synthetic groups assigned by a seeded hash of the sample index (for
    /// measuring how the method scales with the number of groups over the same data).
    pub fn random(groups: usize, train: usize, test: usize, seed: u64) -> Result<Self, GroupError> {
        let assign = |n: usize, salt: u64| -> Vec<u32> {
            (0..n)
                .map(|i| (mix(seed ^ salt ^ i as u64) % groups.max(1) as u64) as u32)
                .collect()
        };
        Self::new(
            (0..groups).map(|g| format!("random{g}")).collect(),
            assign(train, 0),
            assign(test, 0x5eed),
        )
    }
}

/// The Adult groupings: `race`, `sex`, `race-sex` (10 groups), `sex-age-occupation`
/// (sex x six age bands x 14 occupations: 100 groups with at least 50 training samples),
/// `sex-age5-occupation` (five-year age bands: 107 groups with at least 100 training
/// samples, so that one sample weighs at most 0.01 of its group's accuracy), and
/// `random-N`.
pub fn adult(
    name: &str,
    train: &[AdultRow],
    test: &[AdultRow],
    min_size: usize,
    seed: u64,
) -> Result<Groups, GroupError> {
    if let Some(n) = random_count(name) {
        return Groups::random(n, train.len(), test.len(), seed);
    }
    let key: fn(&AdultRow) -> String = match name {
        "race" => |r| cat(r, "race"),
        "sex" => |r| cat(r, "sex"),
        "race-sex" => |r| format!("{}/{}", cat(r, "race"), cat(r, "sex")),
        "sex-age-occupation" => |r| {
            format!(
                "{}/{}/{}",
                cat(r, "sex"),
                age_band(r.age),
                cat(r, "occupation")
            )
        },
        "sex-age5-occupation" => |r| {
            format!(
                "{}/{}/{}",
                cat(r, "sex"),
                five_year_band(r.age),
                cat(r, "occupation")
            )
        },
        _ => {
            return Err(GroupError::Unknown {
                name: name.into(),
                dataset: "adult".into(),
                known: "race, sex, race-sex, sex-age-occupation, sex-age5-occupation, random-N"
                    .into(),
            });
        }
    };
    let keys = |rows: &[AdultRow]| rows.iter().map(key).collect::<Vec<_>>();
    Groups::from_keys(&keys(train), &keys(test), min_size)
}

/// The image-classification groupings: `class` (one group per label) and `random-N`.
pub fn by_class(
    name: &str,
    dataset: &str,
    train_labels: &[u8],
    test_labels: &[u8],
    seed: u64,
) -> Result<Groups, GroupError> {
    if let Some(n) = random_count(name) {
        return Groups::random(n, train_labels.len(), test_labels.len(), seed);
    }
    if name != "class" {
        return Err(GroupError::Unknown {
            name: name.into(),
            dataset: dataset.into(),
            known: "class, random-N".into(),
        });
    }
    let classes = 1 + train_labels.iter().copied().max().unwrap_or(0) as usize;
    Groups::new(
        (0..classes).map(|c| format!("class{c}")).collect(),
        train_labels.iter().map(|&l| l as u32).collect(),
        test_labels.iter().map(|&l| l as u32).collect(),
    )
}

/// `N` of `random-N`.
fn random_count(name: &str) -> Option<usize> {
    name.strip_prefix("random-")?
        .parse()
        .ok()
        .filter(|&n| n > 0)
}

fn cat(r: &AdultRow, column: &str) -> String {
    r.category(column).unwrap_or("?").to_string()
}

/// Age bands of the intersectional grouping.
fn age_band(age: f32) -> &'static str {
    match age as u32 {
        0..=24 => "<25",
        25..=34 => "25-34",
        35..=44 => "35-44",
        45..=54 => "45-54",
        55..=64 => "55-64",
        _ => "65+",
    }
}

/// Five-year age bands, `17-19` (Adult's youngest are 17) to `70+`.
fn five_year_band(age: f32) -> String {
    match age as u32 {
        0..=19 => "17-19".into(),
        a @ 20..=69 => {
            let lo = a / 5 * 5;
            format!("{lo}-{}", lo + 4)
        }
        _ => "70+".into(),
    }
}

/// SplitMix64's finaliser: a well-mixed hash of `x`.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn five_year_bands_cover_every_age() {
        assert_eq!(five_year_band(17.0), "17-19");
        assert_eq!(five_year_band(20.0), "20-24");
        assert_eq!(five_year_band(44.0), "40-44");
        assert_eq!(five_year_band(69.0), "65-69");
        assert_eq!(five_year_band(90.0), "70+");
    }

    #[test]
    fn keys_below_the_minimum_size_are_left_out() {
        let g = Groups::from_keys(
            &keys(&["a", "b", "a", "c", "b"]),
            &keys(&["b", "a", "c"]),
            2,
        )
        .unwrap();
        assert_eq!(g.names, ["a", "b"]);
        assert_eq!(g.train, [0, 1, 0, NO_GROUP, 1]);
        assert_eq!(g.test, [1, 0, NO_GROUP]);
        assert_eq!(g.counts(&g.train), [2, 2]);
    }

    #[test]
    fn an_empty_group_is_an_error() {
        let e = Groups::from_keys(&keys(&["a", "b"]), &keys(&["a"]), 1).unwrap_err();
        assert_eq!(
            e,
            GroupError::Empty {
                group: "b".into(),
                split: "test"
            }
        );
        assert!(e.to_string().contains("no test samples"));
        let e = by_class("class", "mnist", &[0, 2], &[0, 1, 2], 0).unwrap_err();
        assert!(matches!(e, GroupError::Empty { split: "train", .. }), "{e}");
        assert_eq!(
            Groups::from_keys(&keys(&["a"]), &keys(&["a"]), 5).unwrap_err(),
            GroupError::None { min_size: 5 }
        );
    }

    #[test]
    fn an_id_out_of_range_is_an_error() {
        let e = Groups::new(vec!["a".into()], vec![0, 1], vec![0]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "train sample 1 has group id 1, but there are only 1 groups"
        );
    }

    #[test]
    fn unknown_names_list_the_known_ones() {
        let e = by_class("race", "mnist", &[0], &[0], 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown grouping \"race\" for mnist; known: class, random-N"
        );
        assert!(adult("colour", &[], &[], 1, 0).is_err());
        assert!(by_class("random-0", "mnist", &[0], &[0], 0).is_err());
    }

    #[test]
    fn random_groups_cover_every_group_and_are_seeded() {
        let a = Groups::random(100, 10_000, 5_000, 7).unwrap();
        let b = Groups::random(100, 10_000, 5_000, 7).unwrap();
        assert_eq!(a, b);
        let counts = a.counts(&a.train);
        assert!(counts.iter().all(|&c| (50..150).contains(&c)), "{counts:?}");
        assert!(Groups::random(100, 50, 50, 0).is_err());
    }
}
