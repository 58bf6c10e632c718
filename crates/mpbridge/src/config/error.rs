//! Config errors, and where they are: the line and column of a byte
//! offset, the dotted field path of a span, serde's messages in house style.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::EX_CONFIG;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Where a config problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A place in the config file; line and column start at 1, the column counts characters.
    File {
        path: PathBuf,
        line: usize,
        col: usize,
    },
    /// A whole file: a key file, or a default config file that does not exist.
    Path(PathBuf),
    /// A command-line flag.
    CommandLine,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File { path, line, col } => write!(f, "{}:{line}:{col}", path.display()),
            Location::Path(path) => write!(f, "{}", path.display()),
            Location::CommandLine => f.write_str("command line"),
        }
    }
}

/// Why the configuration cannot be used. Displayed as one sentence for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The config file cannot be read: missing although named explicitly,
    /// unreadable, or not UTF-8.
    #[error("{}: cannot read config file: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    /// The file is not valid TOML (unclosed bracket or string, duplicate key, …).
    #[error("{at}: invalid TOML: {message}")]
    Syntax { at: Location, message: String },
    /// A field is unknown, missing, of the wrong type or out of range; a key
    /// file cannot be read or holds no usable key; or a command-line value is
    /// invalid. `field` is the dotted path (`remote.allow[1]`) or the flag.
    #[error("{at}: {field}: {problem}")]
    Invalid {
        at: Location,
        field: String,
        problem: String,
    },
}

impl ConfigError {
    /// The process exit code for a config error: 78 (`EX_CONFIG`).
    pub fn exit_code(&self) -> i32 {
        EX_CONFIG
    }

    pub(super) fn command_line(flag: &str, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            at: Location::CommandLine,
            field: flag.to_owned(),
            problem: problem.into(),
        }
    }
}

pub(super) fn file_location(path: &Path, text: &str, offset: usize) -> Location {
    let (line, col) = line_col(text, offset);
    Location::File {
        path: path.to_owned(),
        line,
        col,
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (
        before.matches('\n').count() + 1,
        before[line_start..].chars().count() + 1,
    )
}

/// The dotted path (`auth.accept[1].id`) of the smallest key or value whose
/// span holds `target`; toml's errors carry a span but not the path.
pub(super) fn find_path(doc: &DeTable<'_>, target: &Range<usize>) -> Option<String> {
    let mut best = None;
    walk_table(doc, "", target, &mut best);
    best.map(|(_, path)| path)
}

pub(super) fn consider(
    span: Range<usize>,
    path: &str,
    target: &Range<usize>,
    best: &mut Option<(usize, String)>,
) {
    if span.start <= target.start && target.end <= span.end {
        let len = span.end - span.start;
        let better = match best {
            Some((best_len, best_path)) => {
                len < *best_len || (len == *best_len && path.len() > best_path.len())
            }
            None => true,
        };
        if better {
            *best = Some((len, path.to_owned()));
        }
    }
}

pub(super) fn walk_table(
    table: &DeTable<'_>,
    prefix: &str,
    target: &Range<usize>,
    best: &mut Option<(usize, String)>,
) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        consider(key.span(), &path, target, best);
        walk_value(value, &path, target, best);
    }
}

pub(super) fn walk_value(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    target: &Range<usize>,
    best: &mut Option<(usize, String)>,
) {
    consider(value.span(), path, target, best);
    match value.get_ref() {
        DeValue::Table(table) => walk_table(table, path, target, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_value(item, &format!("{path}[{i}]"), target, best);
            }
        }
        _ => {}
    }
}

/// Turns a serde message into (field, problem) in the house style.
pub(super) fn explain(path: Option<String>, message: &str) -> (String, String) {
    let backticked =
        |s: &str| -> Vec<String> { s.split('`').skip(1).step_by(2).map(str::to_owned).collect() };
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (name, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let expected = backticked(tail);
        let problem = if expected.is_empty() {
            "unknown field".to_owned()
        } else {
            format!("unknown field (expected one of {})", expected.join(", "))
        };
        return (path.unwrap_or_else(|| name.to_owned()), problem);
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.trim_end_matches('`');
        let field = match path {
            Some(p) => format!("{p}.{name}"),
            None => name.to_owned(),
        };
        let example = if name == "interface" { "\"wan0\"" } else { "2" };
        return (
            field,
            format!("required (expected e.g. {name} = {example})"),
        );
    }
    let field = path.unwrap_or_else(|| "(document)".to_owned());
    if let Some((found, expected)) = message
        .strip_prefix("invalid type: ")
        .and_then(|m| m.split_once(", expected "))
    {
        let found = match found {
            "map" => "a table",
            "sequence" => "an array",
            other => other,
        };
        let expected = match expected {
            "i64" | "u64" | "i32" | "u32" | "u8" | "usize" => "an integer".to_owned(),
            "a sequence"
                if found == "a table" && (field.ends_with("accept") || field == "link") =>
            {
                format!("an array of tables: write [[{field}]]")
            }
            "a sequence" => "an array".to_owned(),
            e if e.starts_with("struct ") => "a table".to_owned(),
            e => e.to_owned(),
        };
        return (field, format!("found {found} (expected {expected})"));
    }
    (field, message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        assert_eq!(line_col("", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é = 1", 3), (1, 3));
        assert_eq!(line_col("ab", 99), (1, 3));
    }
}
