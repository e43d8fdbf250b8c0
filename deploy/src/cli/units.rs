//! Sizes and times as people write them on a command line or in a device description:
//! `64KiB`, `1.5MB`, `65536`; `2.5ms`, `800us`, `1s`.

use std::format;
use std::string::String;

use serde::{Deserialize, Serialize};

/// A number of bytes, written with an optional binary (`KiB`, `MiB`, `GiB`) or decimal
/// (`kB`/`KB`, `MB`, `GB`) unit, or `B`. `K`/`M`/`G` alone are binary, as on a
/// microcontroller's datasheet (256K of flash is 262144 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bytes(pub u64);

/// A time in seconds, written with a unit: `s`, `ms`, `us` (or `µs`), `ns`.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Seconds(pub f64);

fn split_number(s: &str) -> Result<(f64, &str), String> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_' || c == 'e' || c == 'E'))
        .unwrap_or(s.len());
    // "1e3" is a number, but the "e" of a unit never follows digits directly here.
    let (num, unit) = s.split_at(end);
    let num: String = num.chars().filter(|&c| c != '_').collect();
    let value: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number followed by a unit"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{s:?}: must be a finite number >= 0"));
    }
    Ok((value, unit.trim()))
}

impl std::str::FromStr for Bytes {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (value, unit) = split_number(s)?;
        let scale: f64 = match unit {
            "" | "B" | "b" => 1.0,
            "K" | "k" | "KiB" | "kiB" => 1024.0,
            "M" | "MiB" => 1024.0 * 1024.0,
            "G" | "GiB" => 1024.0 * 1024.0 * 1024.0,
            "kB" | "KB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            _ => {
                return Err(format!(
                    "{s:?}: unknown size unit {unit:?} (use B, KiB, MiB, GiB, kB, MB, GB)"
                ));
            }
        };
        let bytes = value * scale;
        if bytes.fract() != 0.0 {
            return Err(format!("{s:?} is not a whole number of bytes"));
        }
        Ok(Bytes(bytes as u64))
    }
}

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The exact count too: a budget is met or missed by bytes.
        let b = self.0;
        if b >= 1 << 20 {
            write!(f, "{:.2} MiB ({b} B)", b as f64 / (1u64 << 20) as f64)
        } else if b >= 1 << 10 {
            write!(f, "{:.2} KiB ({b} B)", b as f64 / 1024.0)
        } else {
            write!(f, "{b} B")
        }
    }
}

impl std::str::FromStr for Seconds {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (value, unit) = split_number(s)?;
        let scale = match unit {
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            "" => return Err(format!("{s:?}: a time needs a unit (s, ms, us, ns)")),
            _ => {
                return Err(format!(
                    "{s:?}: unknown time unit {unit:?} (use s, ms, us, ns)"
                ));
            }
        };
        Ok(Seconds(value * scale))
    }
}

impl std::fmt::Display for Seconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.0;
        if s >= 1.0 {
            write!(f, "{s:.3} s")
        } else if s >= 1e-3 {
            write!(f, "{:.3} ms", s * 1e3)
        } else {
            write!(f, "{:.1} us", s * 1e6)
        }
    }
}

// Serialised as the strings they are written as, so a config file says `max_flash =
// "64KiB"` (a bare integer is read as bytes).
impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}B", self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Bytes(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for Seconds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}s", self.0))
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        let b = |s: &str| s.parse::<Bytes>().unwrap().0;
        assert_eq!(b("64KiB"), 65536);
        assert_eq!(b("64K"), 65536);
        assert_eq!(b("256 k"), 262144);
        assert_eq!(b("1.5MiB"), 1572864);
        assert_eq!(b("2MB"), 2_000_000);
        assert_eq!(b("32kB"), 32_000);
        assert_eq!(b("1000"), 1000);
        assert_eq!(b("1_000B"), 1000);
        for bad in ["", "KiB", "12 parsecs", "-1K", "0.3B", "nan"] {
            assert!(bad.parse::<Bytes>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn times_need_a_unit() {
        let t = |s: &str| s.parse::<Seconds>().unwrap().0;
        assert!((t("2.5ms") - 2.5e-3).abs() < 1e-15);
        assert!((t("800us") - 8e-4).abs() < 1e-15);
        assert!((t("800µs") - 8e-4).abs() < 1e-15);
        assert_eq!(t("1s"), 1.0);
        assert!("5".parse::<Seconds>().is_err());
        assert!("5 fortnights".parse::<Seconds>().is_err());
    }

    #[test]
    fn both_round_trip_through_serde() {
        let b: Bytes = serde_json::from_str("\"64KiB\"").unwrap();
        assert_eq!(b, Bytes(65536));
        let back: Bytes = serde_json::from_value(serde_json::to_value(b).unwrap()).unwrap();
        assert_eq!(back, b);
        let n: Bytes = serde_json::from_str("4096").unwrap();
        assert_eq!(n, Bytes(4096));
        let s: Seconds = serde_json::from_str("\"3ms\"").unwrap();
        let back: Seconds = serde_json::from_value(serde_json::to_value(s).unwrap()).unwrap();
        assert!((back.0 - 3e-3).abs() < 1e-15);
    }
}
