//! The file's layout as `read` takes it in: every value optional and
//! spanned, unknown keys refused. Validation (the sibling modules) turns it
//! into settings. The unit tests also derive serde's reading of it, which
//! `read` replaced, to show both give the same.

use std::borrow::Cow;
use std::ops::Range;

#[cfg(test)]
use serde::Deserialize;
use toml::Spanned;

pub(super) type Field<T> = Option<Spanned<T>>;
pub(super) type List = Field<Vec<Spanned<String>>>;

#[derive(Default, Clone)]
#[cfg_attr(test, derive(Deserialize, Debug, PartialEq))]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub(super) struct RawConfig {
    pub(super) auth: Field<RawAuth>,
    pub(super) local: Field<RawLocal>,
    pub(super) remote: Field<RawRemote>,
    pub(super) limits: Field<RawLimits>,
    pub(super) log: Field<RawLog>,
    // Path management.
    pub(super) link: Field<Vec<Spanned<RawLink>>>,
    pub(super) probe: Field<RawProbe>,
    pub(super) paths: Field<RawPaths>,
}

#[derive(Clone)]
#[cfg_attr(test, derive(Deserialize, Debug, PartialEq))]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub(super) struct RawLink {
    pub(super) interface: Spanned<String>,
    /// A string or an array of strings (one address per family).
    pub(super) peer: Field<toml::Value>,
    pub(super) backup: Field<bool>,
    pub(super) rate_mbit: Field<i64>,
}

#[derive(Default, Clone)]
#[cfg_attr(test, derive(Deserialize, Debug, PartialEq))]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub(super) struct RawProbe {
    pub(super) enabled: Field<bool>,
    pub(super) interval_ms: Field<i64>,
    pub(super) down_after: Field<i64>,
    pub(super) up_after: Field<i64>,
    pub(super) port: Field<i64>,
    pub(super) down_action: Field<String>,
    pub(super) interface_counter: Field<bool>,
    pub(super) close_subflows: Field<bool>,
}

#[derive(Default, Clone)]
#[cfg_attr(test, derive(Deserialize, Debug, PartialEq))]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub(super) struct RawPaths {
    pub(super) table_base: Field<i64>,
    pub(super) rule_priority: Field<i64>,
    /// An array of prefixes, or "none".
    pub(super) routes: Field<toml::Value>,
    pub(super) route_table: Field<i64>,
    pub(super) route_metric: Field<i64>,
    pub(super) nexthop_base: Field<i64>,
    pub(super) subflows: Field<String>,
    pub(super) subflows_after_ms: Field<i64>,
    pub(super) slow_links: Field<String>,
}

#[derive(Default, Clone)]
#[cfg_attr(test, derive(Deserialize, Debug, PartialEq))]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub(super) struct RawAuth {
    pub(super) mode: Field<String>,
    pub(super) key_id: Field<i64>,
    pub(super) key: Field<String>,
    pub(super) key_file: Field<String>,
    pub(super) window_secs: Field<i64>,
    pub(super) replay_cache: Field<i64>,
    pub(super) accept: Field<Vec<Spanned<RawAcceptKey>>>,
}

#[derive(Clone)]
#[cfg_attr(test, derive(Deserialize, Debug, PartialEq))]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub(super) struct RawAcceptKey {
    pub(super) id: Spanned<i64>,
    pub(super) key: Field<String>,
    pub(super) key_file: Field<String>,
}

#[derive(Default, Clone)]
#[cfg_attr(test, derive(Deserialize, Debug, PartialEq))]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub(super) struct RawLocal {
    pub(super) listen: List,
    pub(super) intercept: Field<String>,
    pub(super) remotes: List,
    pub(super) connect_timeout_ms: Field<i64>,
    pub(super) reply_timeout_ms: Field<i64>,
    pub(super) mptcp: Field<bool>,
    pub(super) fastopen: Field<bool>,
    pub(super) fastopen_rcvbuf: Field<i64>,
    /// "auto" or a number of bytes.
    pub(super) sndbuf: Field<toml::Value>,
    pub(super) congestion: Field<String>,
    // Interception (see "Interception rules" below).
    pub(super) firewall: Field<String>,
    pub(super) lan_interfaces: List,
    pub(super) bypass: List,
    pub(super) quic: Field<String>,
    pub(super) control_socket: Field<String>,
    pub(super) metrics_listen: Field<String>,
}

#[derive(Default, Clone)]
#[cfg_attr(test, derive(Deserialize, Debug, PartialEq))]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub(super) struct RawRemote {
    pub(super) listen: List,
    pub(super) header_timeout_ms: Field<i64>,
    pub(super) connect_timeout_ms: Field<i64>,
    pub(super) allow: List,
    pub(super) deny: List,
    pub(super) allow_loopback: Field<bool>,
    pub(super) control_socket: Field<String>,
    pub(super) metrics_listen: Field<String>,
    pub(super) fastopen_rcvbuf: Field<i64>,
    /// "auto" or a number of bytes.
    pub(super) sndbuf: Field<toml::Value>,
    pub(super) congestion: Field<String>,
}

#[derive(Default, Clone)]
#[cfg_attr(test, derive(Deserialize, Debug, PartialEq))]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub(super) struct RawLimits {
    pub(super) max_connections: Field<i64>,
    pub(super) drain_secs: Field<i64>,
    pub(super) pipe_size: Field<i64>,
    pub(super) rcvbuf_budget: Field<i64>,
}

#[derive(Default, Clone)]
#[cfg_attr(test, derive(Deserialize, Debug, PartialEq))]
#[cfg_attr(test, serde(deny_unknown_fields))]
pub(super) struct RawLog {
    pub(super) level: Field<String>,
}

/// A section's fields (or all defaults when absent) and the span of its header.
pub(super) fn section<T: Default + Clone>(field: &Field<T>) -> (Cow<'_, T>, Option<Range<usize>>) {
    match field {
        Some(s) => (Cow::Borrowed(s.get_ref()), Some(s.span())),
        None => (Cow::Owned(T::default()), None),
    }
}
