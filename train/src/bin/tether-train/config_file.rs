//! `--config FILE`: a command's settings from a TOML file, under the flags given on the
//! command line. A flag given wins over the file, the file over the flag's default, so a
//! run can be kept in a file and varied from the shell.

use std::path::Path;

use anyhow::Context;
use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The settings `flags` (every field, defaults included) with the keys of the TOML file at
/// `path` laid over every one not given on the command line (`matches`). A key is a
/// flag's name with underscores, at the top level of the file.
///
/// # Errors
/// The file cannot be read or parsed, holds a key that is no setting, or a value of the
/// wrong type (each error names the file).
pub fn load<T: Serialize + DeserializeOwned>(
    path: &Path,
    flags: &T,
    matches: &ArgMatches,
) -> anyhow::Result<T> {
    let name = path.display();
    let text = std::fs::read_to_string(path).with_context(|| format!("--config {name}"))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("{name}"))?;
    let Value::Object(mut merged) = serde_json::to_value(flags)? else {
        anyhow::bail!("internal error: the settings are not a map");
    };
    // Serde ignores keys it does not know (the optimizer's settings are flattened in),
    // so a misspelt setting is caught here rather than silently dropped.
    let unknown: Vec<&str> = table
        .keys()
        .map(String::as_str)
        .filter(|k| !merged.contains_key(*k))
        .collect();
    anyhow::ensure!(
        unknown.is_empty(),
        "{name}: unknown setting(s) {} (a setting is a flag's name with underscores, e.g. \
         target_density)",
        unknown.join(", ")
    );
    // Typed once on its own, so a bad value is reported against the file.
    let file: T = toml::from_str(&text).with_context(|| format!("{name}"))?;
    let Value::Object(file) = serde_json::to_value(&file)? else {
        anyhow::bail!("internal error: the settings are not a map");
    };
    for (key, value) in file {
        let given = matches.ids().any(|id| id.as_str() == key)
            && matches.value_source(&key) == Some(ValueSource::CommandLine);
        if table.contains_key(&key) && !given {
            merged.insert(key, value);
        }
    }
    Ok(serde_json::from_value(Value::Object(merged))?)
}
