//! Words of the file that pick one variant of an enum (`auth.mode`,
//! `local.intercept`, `log.level` ...): the enum's serde derive lists the
//! words, and a wrong word is refused with that list.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::DeserializeOwned;

/// An enum read from one word through its serde derive
/// (`#[serde(rename_all = "lowercase")]`).
pub trait Choice: DeserializeOwned {
    /// What the word names, for errors: "an auth mode".
    const WHAT: &'static str;
    /// Whether "TPROXY" is read as "tproxy".
    const IGNORE_CASE: bool = false;
}

/// Why a word is none of an enum's variants: one sentence, e.g. `"dnat" is
/// not an interception mode (expected "tproxy" or "redirect")`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ChoiceError(String);

/// Reads `word` as a `T`.
pub fn choose<T: Choice>(word: &str) -> Result<T, ChoiceError> {
    let input = fold_case(word, T::IGNORE_CASE);
    T::deserialize(StrDeserializer::<WordError>::new(&input))
        .map_err(|e| ChoiceError::new(word, T::WHAT, e))
}

/// `word` in lower case if case is ignored.
fn fold_case(word: &str, ignore_case: bool) -> Cow<'_, str> {
    if ignore_case {
        Cow::Owned(word.to_ascii_lowercase())
    } else {
        Cow::Borrowed(word)
    }
}

impl ChoiceError {
    fn new(word: &str, what: &str, e: WordError) -> Self {
        ChoiceError(match e {
            WordError::Unknown(names) => format!("\"{word}\" is not {what} ({})", expected(names)),
            WordError::Other => format!("\"{word}\" is not {what}"),
        })
    }

    /// The sentence, for a [`ConfigError`](super::ConfigError).
    pub(super) fn into_problem(self) -> String {
        self.0
    }
}

/// Two words as `"a" or "b"`, more as a list.
fn expected(names: &[&str]) -> String {
    match names {
        [a, b] => format!("expected \"{a}\" or \"{b}\""),
        _ => format!("expected one of {}", names.join(", ")),
    }
}

/// The error serde reports through while reading one word; it keeps the
/// list of variants instead of an English sentence.
#[derive(Debug)]
enum WordError {
    /// Not one of these words.
    Unknown(&'static [&'static str]),
    /// Any other refusal; a string holds nothing else serde could refuse,
    /// and keeping no message keeps serde's formatting out of the binary.
    Other,
}

impl fmt::Display for WordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WordError::Unknown(names) => write!(f, "{}", expected(names)),
            WordError::Other => f.write_str("not a valid word"),
        }
    }
}

impl std::error::Error for WordError {}

impl serde::de::Error for WordError {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        WordError::Other
    }

    fn unknown_variant(_variant: &str, expected: &'static [&'static str]) -> Self {
        WordError::Unknown(expected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Two {
        Left,
        Right,
    }

    impl Choice for Two {
        const WHAT: &'static str = "a side";
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Three {
        Low,
        Mid,
        High,
    }

    impl Choice for Three {
        const WHAT: &'static str = "a level";
        const IGNORE_CASE: bool = true;
    }

    #[test]
    fn a_word_is_read_through_serde_and_a_wrong_one_lists_the_variants() {
        assert_eq!(choose::<Two>("right"), Ok(Two::Right));
        assert_eq!(
            choose::<Two>("Right").unwrap_err().to_string(),
            "\"Right\" is not a side (expected \"left\" or \"right\")"
        );
        assert_eq!(choose::<Three>("MID"), Ok(Three::Mid));
        assert_eq!(
            choose::<Three>("Loud").unwrap_err().to_string(),
            "\"Loud\" is not a level (expected one of low, mid, high)"
        );
    }
}
