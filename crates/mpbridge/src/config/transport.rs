//! How the daemons' MPTCP connections over the links behave as TCP: the
//! congestion control their subflows use (`local.congestion`,
//! `remote.congestion`) and their send buffer (`local.sndbuf`,
//! `remote.sndbuf`). The receive buffer is `fastopen_rcvbuf` beside them.

use toml::Spanned;

use super::bounded::{FromNumber, SendBuffer};
use super::error::ConfigError;
use super::settings::Sndbuf;
use super::ConfigFile;

/// The kernel's longest congestion control name (TCP_CA_NAME_MAX − 1).
const MAX_NAME_LEN: usize = 15;

impl ConfigFile {
    /// A congestion control name, `None` for "" (the kernel's default,
    /// `net.ipv4.tcp_congestion_control`); `default` when absent. Whether
    /// this kernel has it is only known when a socket asks for it.
    pub(super) fn congestion(
        &self,
        value: Option<&Spanned<String>>,
        field: &str,
        default: &str,
    ) -> Result<Option<String>, ConfigError> {
        let name = match value {
            Some(v) => v.get_ref().as_str(),
            None => default,
        };
        if name.is_empty() {
            return Ok(None);
        }
        let fits = name.len() <= MAX_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !fits {
            let span = value.map_or(0..0, Spanned::span);
            return Err(self.invalid(
                span,
                field,
                format!(
                    "{name:?} is not a congestion control name (expected up to {MAX_NAME_LEN} \
                     lowercase letters, digits or _, e.g. \"cubic\"; \"\" keeps the kernel's \
                     default)"
                ),
            ));
        }
        Ok(Some(name.to_string()))
    }

    /// `sndbuf`: "auto" (also when absent), 0 for the kernel's autotuning,
    /// or a fixed number of bytes.
    pub(super) fn send_buffer(
        &self,
        value: Option<&Spanned<toml::Value>>,
        field: &str,
    ) -> Result<Sndbuf, ConfigError> {
        let Some(value) = value else {
            return Ok(Sndbuf::Auto);
        };
        let refused = |problem: String| self.invalid(value.span(), field, problem);
        match value.get_ref() {
            toml::Value::String(word) if word == "auto" => Ok(Sndbuf::Auto),
            toml::Value::Integer(0) => Ok(Sndbuf::Kernel),
            toml::Value::Integer(n) => SendBuffer::from_number(*n)
                .map(|b| Sndbuf::Fixed(b.get()))
                .map_err(|e| refused(e.to_string())),
            other => {
                let what = match other {
                    toml::Value::String(word) => format!("{word:?}"),
                    v => format!("a {}", v.type_str()),
                };
                Err(refused(format!(
                    "{what} is not a send buffer (expected \"auto\", 0 for the kernel's \
                     autotuning, or a number of bytes)"
                )))
            }
        }
    }
}
