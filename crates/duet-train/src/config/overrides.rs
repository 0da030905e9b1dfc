//! `--set section.key=value`: edits of the TOML table before it is read, so overrides are
//! checked like the file.

use crate::TrainError;

/// The TOML table of `text` with `overrides` applied.
pub(super) fn table(
    text: &str,
    origin: &str,
    overrides: &[String],
) -> Result<toml::Table, TrainError> {
    let mut table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| TrainError::ConfigSyntax {
                origin: origin.to_owned(),
                message: one_line(&e.to_string()),
            })?;
    for arg in overrides {
        apply_override(&mut table, arg)?;
    }
    Ok(table)
}

/// The first line of a possibly multi-line message, trimmed.
pub(super) fn one_line(message: &str) -> String {
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default().to_owned();
    // toml's parse errors put the reason on the last line, after a source excerpt.
    match lines.next_back() {
        Some(last) if first.starts_with("TOML parse error") => format!("{first}: {last}"),
        _ => first,
    }
}

/// Sets `section.key=value` in `table`; `value` is read as TOML (`100`, `true`, `"x"`, `[1, 2]`)
/// and, if that fails, taken as a plain string.
fn apply_override(table: &mut toml::Table, arg: &str) -> Result<(), TrainError> {
    let bad = |reason: &str| TrainError::Override {
        arg: arg.to_owned(),
        reason: reason.to_owned(),
    };
    let (path, raw) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected section.key=value"))?;
    let keys: Vec<&str> = path.trim().split('.').collect();
    if keys.iter().any(|k| k.is_empty()) {
        return Err(bad("empty key"));
    }
    let raw = raw.trim();
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let (last, parents) = keys.split_last().ok_or_else(|| bad("empty key"))?;
    let mut current = table;
    for key in parents {
        let entry = current
            .entry((*key).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| bad(&format!("`{key}` is not a section")))?;
    }
    current.insert((*last).to_owned(), value);
    Ok(())
}
