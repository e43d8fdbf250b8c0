//! A device description: the budgets a model must fit, written once per board and passed
//! to `tether-deploy inspect --board` (does this model fit?) and to `tether-train prune` /
//! `fair-prune --board` (prune until it does).
//!
//! ```toml
//! name = "nRF52840"
//! flash = "256KiB"   # room for the model file
//! ram = "64KiB"      # heap for the plan: activations and scratch (weights stay in flash)
//! latency = "5ms"    # one inference, measured on the host that prunes and inspects
//! clock = "64MHz"    # informational
//! ```
//!
//! Every key but `name` is optional; an unknown key is an error (a misspelt budget must
//! not be silently ignored).

use std::format;
use std::path::Path;
use std::string::{String, ToString};
use std::vec::Vec;

use serde::Deserialize;

use super::units::{Bytes, Seconds};

/// A board's budgets.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// What to call it in reports.
    pub name: String,
    /// Bytes of flash the model file may take.
    pub flash: Option<Bytes>,
    /// Bytes of RAM the plan a microcontroller builds may take at batch 1
    /// ([`PlanOptions::in_place`](crate::PlanOptions::in_place)).
    pub ram: Option<Bytes>,
    /// Time one inference may take, judged on the host that measures it.
    pub latency: Option<Seconds>,
    /// The clock, for the person reading the file (`64MHz`); not used.
    pub clock: Option<String>,
}

impl Board {
    /// Reads a board description.
    ///
    /// # Errors
    /// The file cannot be read, is not TOML, has an unknown key, or a size or time without
    /// a valid unit; the message names the file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--board {}: {e}", path.display()))?;
        let board: Board = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("--board {}: {e}", path.display()))?;
        anyhow::ensure!(
            !board.name.trim().is_empty(),
            "--board {}: `name` is empty",
            path.display()
        );
        Ok(board)
    }

    /// How a model's figures compare with the budgets: one line per budget the board sets,
    /// and whether all fit.
    pub fn verdict(&self, flash: u64, ram: u64, latency: f64) -> (Vec<String>, bool) {
        let mut lines = Vec::new();
        let mut fits = true;
        let mut judge = |what: &str, used: String, budget: String, ok: bool| {
            fits &= ok;
            lines.push(format!(
                "{what} {used} of {budget}: {}",
                if ok { "fits" } else { "DOES NOT FIT" }
            ));
        };
        if let Some(b) = self.flash {
            judge(
                "flash",
                Bytes(flash).to_string(),
                b.to_string(),
                flash <= b.0,
            );
        }
        if let Some(b) = self.ram {
            judge("RAM", Bytes(ram).to_string(), b.to_string(), ram <= b.0);
        }
        if let Some(b) = self.latency {
            judge(
                "latency (this host)",
                Seconds(latency).to_string(),
                b.to_string(),
                latency <= b.0,
            );
        }
        (lines, fits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("board.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn a_board_reads_with_units_and_judges_a_model() {
        let (_d, p) = write(
            "name = \"nRF52840\"\nflash = \"256KiB\"\nram = \"64K\"\nlatency = \"5ms\"\nclock = \"64MHz\"\n",
        );
        let b = Board::load(&p).unwrap();
        assert_eq!(b.flash, Some(Bytes(262_144)));
        assert_eq!(b.ram, Some(Bytes(65_536)));
        assert_eq!(b.latency, Some(Seconds(0.005)));
        let (lines, fits) = b.verdict(65_000, 70_000, 0.001);
        assert!(!fits);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].ends_with("fits"), "{lines:?}");
        assert!(lines[1].ends_with("DOES NOT FIT"), "{lines:?}");
        let (_, fits) = b.verdict(65_000, 6_000, 0.001);
        assert!(fits);
    }

    #[test]
    fn bad_boards_are_named_errors() {
        for (text, says) in [
            ("name = \"x\"\nflsh = \"1KiB\"\n", "unknown field `flsh`"),
            (
                "name = \"x\"\nflash = \"64 parsecs\"\n",
                "unknown size unit",
            ),
            ("name = \"x\"\nlatency = \"5\"\n", "a time needs a unit"),
            ("flash = \"1KiB\"\n", "missing field `name`"),
            ("name = \" \"\n", "`name` is empty"),
            ("not toml at all [", "board.toml"),
        ] {
            let (_d, p) = write(text);
            let err = Board::load(&p).unwrap_err().to_string();
            assert!(err.contains(says), "{text:?}: {err}");
            assert!(err.contains("--board"), "{err}");
        }
        let err = Board::load(Path::new("/nonexistent/board.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/board.toml"), "{err}");
    }
}
