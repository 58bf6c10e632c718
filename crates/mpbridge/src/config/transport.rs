//! How the daemons' MPTCP connections over the links behave as TCP: the
//! congestion control their subflows use (`local.congestion`,
//! `remote.congestion`). The send and receive buffers are `sndbuf` and
//! `fastopen_rcvbuf` beside them.

use toml::Spanned;

use super::error::ConfigError;
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
}
