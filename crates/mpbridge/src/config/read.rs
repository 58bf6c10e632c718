//! Reads the parsed document (toml's [`DeTable`], every key and value with
//! its span) into the raw structs, by hand. serde's derive over toml's
//! deserializer did this before at a cost of some 270 KB of the router's
//! MIPS code (each field type and section instantiated toml's generic
//! deserializer anew); this walk is a few KB. Its errors are serde's
//! messages, word for word, with the spans toml gave them, so that
//! [`super::error::explain`] turns them into the same sentences (the unit
//! tests compare both ways on every field).

use std::borrow::Cow;
use std::fmt::Display;
use std::ops::Range;

use serde::de::Unexpected;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::raw::{
    Field, List, RawAcceptKey, RawAuth, RawConfig, RawLimits, RawLink, RawLocal, RawLog, RawPaths,
    RawProbe, RawRemote,
};

/// A value that does not fit its field: where, and serde's message.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) span: Range<usize>,
    pub(super) message: String,
}

type Read<T> = Result<T, Failure>;
type Value<'i> = Spanned<DeValue<'i>>;

fn fail(span: Range<usize>, message: impl Display) -> Failure {
    Failure {
        span,
        message: message.to_string(),
    }
}

/// The whole document.
pub(super) fn config(doc: &DeTable<'_>) -> Read<RawConfig> {
    let mut raw = RawConfig::default();
    fields(doc, CONFIG, &mut |key, v| {
        match key {
            "auth" => raw.auth = Some(spanned(v, auth)?),
            "local" => raw.local = Some(spanned(v, local)?),
            "remote" => raw.remote = Some(spanned(v, remote)?),
            "limits" => raw.limits = Some(spanned(v, limits)?),
            "log" => raw.log = Some(spanned(v, log)?),
            "link" => raw.link = Some(spanned(v, |v| tables(v, link))?),
            "probe" => raw.probe = Some(spanned(v, probe)?),
            "paths" => raw.paths = Some(spanned(v, paths)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(raw)
}

// The fields of each table, in the order serde listed them.
const CONFIG: &[&str] = &[
    "auth", "local", "remote", "limits", "log", "link", "probe", "paths",
];
const LINK: &[&str] = &["interface", "peer", "backup", "rate_mbit"];
const PROBE: &[&str] = &[
    "enabled",
    "interval_ms",
    "down_after",
    "up_after",
    "port",
    "down_action",
];
const PATHS: &[&str] = &[
    "table_base",
    "rule_priority",
    "routes",
    "route_table",
    "route_metric",
    "nexthop_base",
    "subflows",
    "subflows_after_ms",
    "slow_links",
];
const AUTH: &[&str] = &[
    "mode",
    "key_id",
    "key",
    "key_file",
    "window_secs",
    "replay_cache",
    "accept",
];
const ACCEPT_KEY: &[&str] = &["id", "key", "key_file"];
const LOCAL: &[&str] = &[
    "listen",
    "intercept",
    "remotes",
    "connect_timeout_ms",
    "reply_timeout_ms",
    "mptcp",
    "fastopen",
    "fastopen_rcvbuf",
    "sndbuf",
    "congestion",
    "firewall",
    "lan_interfaces",
    "bypass",
    "quic",
    "control_socket",
    "metrics_listen",
];
const REMOTE: &[&str] = &[
    "listen",
    "header_timeout_ms",
    "connect_timeout_ms",
    "allow",
    "deny",
    "allow_loopback",
    "control_socket",
    "metrics_listen",
    "fastopen_rcvbuf",
    "sndbuf",
    "congestion",
];
const LIMITS: &[&str] = &[
    "max_connections",
    "drain_secs",
    "pipe_size",
    "rcvbuf_budget",
];
const LOG: &[&str] = &["level"];

fn link(v: &Value<'_>) -> Read<RawLink> {
    let t = table(v, "struct RawLink")?;
    let (mut interface, mut peer, mut backup, mut rate_mbit) = (None, None, None, None);
    fields(t, LINK, &mut |key, v| {
        match key {
            "interface" => interface = Some(spanned(v, string)?),
            "peer" => peer = Some(spanned(v, value)?),
            "backup" => backup = Some(spanned(v, boolean)?),
            "rate_mbit" => rate_mbit = Some(spanned(v, integer)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(RawLink {
        interface: interface.ok_or_else(|| missing(v, "interface"))?,
        peer,
        backup,
        rate_mbit,
    })
}

fn probe(v: &Value<'_>) -> Read<RawProbe> {
    let t = table(v, "struct RawProbe")?;
    let mut raw = RawProbe::default();
    fields(t, PROBE, &mut |key, v| {
        match key {
            "enabled" => raw.enabled = Some(spanned(v, boolean)?),
            "interval_ms" => raw.interval_ms = int(v)?,
            "down_after" => raw.down_after = int(v)?,
            "up_after" => raw.up_after = int(v)?,
            "port" => raw.port = int(v)?,
            "down_action" => raw.down_action = text(v)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(raw)
}

fn paths(v: &Value<'_>) -> Read<RawPaths> {
    let t = table(v, "struct RawPaths")?;
    let mut raw = RawPaths::default();
    fields(t, PATHS, &mut |key, v| {
        match key {
            "table_base" => raw.table_base = int(v)?,
            "rule_priority" => raw.rule_priority = int(v)?,
            "routes" => raw.routes = Some(spanned(v, value)?),
            "route_table" => raw.route_table = int(v)?,
            "route_metric" => raw.route_metric = int(v)?,
            "nexthop_base" => raw.nexthop_base = int(v)?,
            "subflows" => raw.subflows = text(v)?,
            "subflows_after_ms" => raw.subflows_after_ms = int(v)?,
            "slow_links" => raw.slow_links = text(v)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(raw)
}

fn auth(v: &Value<'_>) -> Read<RawAuth> {
    let t = table(v, "struct RawAuth")?;
    let mut raw = RawAuth::default();
    fields(t, AUTH, &mut |key, v| {
        match key {
            "mode" => raw.mode = text(v)?,
            "key_id" => raw.key_id = int(v)?,
            "key" => raw.key = text(v)?,
            "key_file" => raw.key_file = text(v)?,
            "window_secs" => raw.window_secs = int(v)?,
            "replay_cache" => raw.replay_cache = int(v)?,
            "accept" => raw.accept = Some(spanned(v, |v| tables(v, accept_key))?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(raw)
}

fn accept_key(v: &Value<'_>) -> Read<RawAcceptKey> {
    let t = table(v, "struct RawAcceptKey")?;
    let (mut id, mut key, mut key_file) = (None, None, None);
    fields(t, ACCEPT_KEY, &mut |name, v| {
        match name {
            "id" => id = Some(spanned(v, integer)?),
            "key" => key = text(v)?,
            "key_file" => key_file = text(v)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(RawAcceptKey {
        id: id.ok_or_else(|| missing(v, "id"))?,
        key,
        key_file,
    })
}

fn local(v: &Value<'_>) -> Read<RawLocal> {
    let t = table(v, "struct RawLocal")?;
    let mut raw = RawLocal::default();
    fields(t, LOCAL, &mut |key, v| {
        match key {
            "listen" => raw.listen = list(v)?,
            "intercept" => raw.intercept = text(v)?,
            "remotes" => raw.remotes = list(v)?,
            "connect_timeout_ms" => raw.connect_timeout_ms = int(v)?,
            "reply_timeout_ms" => raw.reply_timeout_ms = int(v)?,
            "mptcp" => raw.mptcp = Some(spanned(v, boolean)?),
            "fastopen" => raw.fastopen = Some(spanned(v, boolean)?),
            "fastopen_rcvbuf" => raw.fastopen_rcvbuf = int(v)?,
            "sndbuf" => raw.sndbuf = Some(spanned(v, value)?),
            "congestion" => raw.congestion = text(v)?,
            "firewall" => raw.firewall = text(v)?,
            "lan_interfaces" => raw.lan_interfaces = list(v)?,
            "bypass" => raw.bypass = list(v)?,
            "quic" => raw.quic = text(v)?,
            "control_socket" => raw.control_socket = text(v)?,
            "metrics_listen" => raw.metrics_listen = text(v)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(raw)
}

fn remote(v: &Value<'_>) -> Read<RawRemote> {
    let t = table(v, "struct RawRemote")?;
    let mut raw = RawRemote::default();
    fields(t, REMOTE, &mut |key, v| {
        match key {
            "listen" => raw.listen = list(v)?,
            "header_timeout_ms" => raw.header_timeout_ms = int(v)?,
            "connect_timeout_ms" => raw.connect_timeout_ms = int(v)?,
            "allow" => raw.allow = list(v)?,
            "deny" => raw.deny = list(v)?,
            "allow_loopback" => raw.allow_loopback = Some(spanned(v, boolean)?),
            "control_socket" => raw.control_socket = text(v)?,
            "metrics_listen" => raw.metrics_listen = text(v)?,
            "fastopen_rcvbuf" => raw.fastopen_rcvbuf = int(v)?,
            "sndbuf" => raw.sndbuf = Some(spanned(v, value)?),
            "congestion" => raw.congestion = text(v)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(raw)
}

fn limits(v: &Value<'_>) -> Read<RawLimits> {
    let t = table(v, "struct RawLimits")?;
    let mut raw = RawLimits::default();
    fields(t, LIMITS, &mut |key, v| {
        match key {
            "max_connections" => raw.max_connections = int(v)?,
            "drain_secs" => raw.drain_secs = int(v)?,
            "pipe_size" => raw.pipe_size = int(v)?,
            "rcvbuf_budget" => raw.rcvbuf_budget = int(v)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(raw)
}

fn log(v: &Value<'_>) -> Read<RawLog> {
    let t = table(v, "struct RawLog")?;
    let mut raw = RawLog::default();
    fields(t, LOG, &mut |key, v| {
        match key {
            "level" => raw.level = text(v)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(raw)
}

// ---------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------

/// Hands each key of `table` and its value to `put`, in the table's order
/// (as serde took them: the first problem found is the one reported).
/// `put` answers whether it knew the key; an unknown one is refused with
/// `known`, the table's fields.
fn fields(
    table: &DeTable<'_>,
    known: &[&str],
    put: &mut dyn FnMut(&str, &Value<'_>) -> Read<bool>,
) -> Read<()> {
    for (key, value) in table.iter() {
        if !put(key.get_ref(), value)? {
            return Err(fail(key.span(), unknown_field(key.get_ref(), known)));
        }
    }
    Ok(())
}

/// serde's message for a key that is not a field.
fn unknown_field(key: &str, known: &[&str]) -> String {
    let names: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
    let expected = match names.as_slice() {
        [one] => format!("expected {one}"),
        [a, b] => format!("expected {a} or {b}"),
        _ => format!("expected one of {}", names.join(", ")),
    };
    format!("unknown field `{key}`, {expected}")
}

/// serde's message for a required field the table lacks, at the table.
fn missing(table: &Value<'_>, field: &str) -> Failure {
    fail(table.span(), format!("missing field `{field}`"))
}

/// The table a struct is read from; `expected` is how serde named it.
/// (serde also read a struct from an array, field by field in order, and
/// a datetime as a table of one odd key: neither is taken here.)
fn table<'a, 'i>(v: &'a Value<'i>, expected: &str) -> Read<&'a DeTable<'i>> {
    match v.get_ref() {
        DeValue::Table(t) => Ok(t),
        DeValue::Datetime(_) => Err(fail(
            v.span(),
            format!("invalid type: datetime, expected {expected}"),
        )),
        _ => Err(invalid_type(v, expected)),
    }
}

/// An array of tables (`[[link]]`), each read by `read`.
fn tables<T>(v: &Value<'_>, read: fn(&Value<'_>) -> Read<T>) -> Read<Vec<Spanned<T>>> {
    array(v)?.iter().map(|item| spanned(item, read)).collect()
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

fn spanned<'i, T>(v: &Value<'i>, read: impl FnOnce(&Value<'i>) -> Read<T>) -> Read<Spanned<T>> {
    Ok(Spanned::new(v.span(), read(v)?))
}

fn int(v: &Value<'_>) -> Read<Field<i64>> {
    spanned(v, integer).map(Some)
}

fn text(v: &Value<'_>) -> Read<Field<String>> {
    spanned(v, string).map(Some)
}

fn list(v: &Value<'_>) -> Read<List> {
    let items = array(v)?.iter().map(|item| spanned(item, string));
    Ok(Some(Spanned::new(v.span(), items.collect::<Read<_>>()?)))
}

fn array<'a, 'i>(v: &'a Value<'i>) -> Read<&'a [Value<'i>]> {
    match v.get_ref() {
        DeValue::Array(items) => Ok(items),
        _ => Err(invalid_type(v, "a sequence")),
    }
}

fn string(v: &Value<'_>) -> Read<String> {
    match v.get_ref() {
        DeValue::String(s) => Ok(s.to_string()),
        _ => Err(invalid_type(v, "a string")),
    }
}

fn boolean(v: &Value<'_>) -> Read<bool> {
    match v.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        _ => Err(invalid_type(v, "a boolean")),
    }
}

fn integer(v: &Value<'_>) -> Read<i64> {
    const EXPECTED: &str = "i64";
    let DeValue::Integer(_) = v.get_ref() else {
        return Err(invalid_type(v, EXPECTED));
    };
    match number(v)? {
        Number::I64(n) => Ok(n),
        // serde's i64 takes none of these.
        Number::U64(n) => Err(invalid_value(v, Unexpected::Unsigned(n), EXPECTED)),
        Number::I128(_) | Number::U128(_) => Err(invalid_type(v, EXPECTED)),
    }
}

/// Any value, as `toml::Value` (`peer`, `routes`, `sndbuf`: validation
/// tells the shapes it takes).
fn value(v: &Value<'_>) -> Read<toml::Value> {
    const EXPECTED: &str = "any valid TOML value";
    Ok(match v.get_ref() {
        DeValue::String(s) => toml::Value::String(s.to_string()),
        DeValue::Integer(_) => match number(v)? {
            Number::I64(n) => toml::Value::Integer(n),
            Number::U64(_) => return Err(fail(v.span(), "u64 value was too large")),
            Number::I128(_) | Number::U128(_) => return Err(invalid_type(v, EXPECTED)),
        },
        DeValue::Float(_) => toml::Value::Float(float(v)?),
        DeValue::Boolean(b) => toml::Value::Boolean(*b),
        DeValue::Datetime(d) => toml::Value::Datetime(*d),
        DeValue::Array(items) => toml::Value::Array(items.iter().map(value).collect::<Read<_>>()?),
        DeValue::Table(t) => {
            let mut table = toml::Table::new();
            for (key, item) in t.iter() {
                table.insert(key.get_ref().to_string(), value(item)?);
            }
            toml::Value::Table(table)
        }
    })
}

/// An integer as toml hands it to serde: the first type it fits.
enum Number {
    I64(i64),
    U64(u64),
    I128(i128),
    U128(u128),
}

fn number(v: &Value<'_>) -> Read<Number> {
    let DeValue::Integer(n) = v.get_ref() else {
        unreachable!("number() of an integer only")
    };
    let (digits, radix) = (n.as_str(), n.radix());
    if let Ok(n) = i64::from_str_radix(digits, radix) {
        Ok(Number::I64(n))
    } else if let Ok(n) = u64::from_str_radix(digits, radix) {
        Ok(Number::U64(n))
    } else if let Ok(n) = i128::from_str_radix(digits, radix) {
        Ok(Number::I128(n))
    } else if let Ok(n) = u128::from_str_radix(digits, radix) {
        Ok(Number::U128(n))
    } else {
        Err(fail(v.span(), "integer number overflowed"))
    }
}

fn float(v: &Value<'_>) -> Read<f64> {
    let DeValue::Float(f) = v.get_ref() else {
        unreachable!("float() of a float only")
    };
    match f.as_str().parse::<f64>() {
        Ok(x) if !x.is_infinite() || f.as_str().contains("inf") => Ok(x),
        _ => Err(fail(v.span(), "floating-point number overflowed")),
    }
}

/// serde's message for a value of another type than `expected`, as toml
/// presented it to serde's visitors.
fn invalid_type(v: &Value<'_>, expected: &str) -> Failure {
    let found: Cow<'_, str> = match v.get_ref() {
        DeValue::String(s) => Unexpected::Str(s).to_string().into(),
        DeValue::Integer(_) => match number(v) {
            Ok(Number::I64(n)) => Unexpected::Signed(n).to_string().into(),
            Ok(Number::U64(n)) => Unexpected::Unsigned(n).to_string().into(),
            Ok(Number::I128(n)) => format!("integer `{n}` as i128").into(),
            Ok(Number::U128(n)) => format!("integer `{n}` as u128").into(),
            Err(overflowed) => return overflowed,
        },
        DeValue::Float(_) => match float(v) {
            Ok(x) => Unexpected::Float(x).to_string().into(),
            Err(overflowed) => return overflowed,
        },
        DeValue::Boolean(b) => Unexpected::Bool(*b).to_string().into(),
        // A datetime reaches serde as a map of one entry.
        DeValue::Datetime(_) | DeValue::Table(_) => "map".into(),
        DeValue::Array(_) => "sequence".into(),
    };
    fail(
        v.span(),
        format!("invalid type: {found}, expected {expected}"),
    )
}

fn invalid_value(v: &Value<'_>, found: Unexpected<'_>, expected: &str) -> Failure {
    fail(
        v.span(),
        format!("invalid value: {found}, expected {expected}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::error::{explain, find_path};

    /// What a document reads to, or (span, field, problem) of its error:
    /// by serde's derive (as before) or by [`config`].
    fn both(text: &str) -> (String, String) {
        let doc = DeTable::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let explained = |span: Range<usize>, message: &str| {
            let (field, problem) = explain(find_path(doc.get_ref(), &span), message);
            format!("{span:?} {field}: {problem}")
        };
        let by_serde = match toml::from_str::<RawConfig>(text) {
            Ok(raw) => format!("{raw:?}"),
            Err(e) => explained(e.span().unwrap_or(0..0), e.message()),
        };
        let by_hand = match config(doc.get_ref()) {
            Ok(raw) => format!("{raw:?}"),
            Err(e) => explained(e.span, &e.message),
        };
        (by_serde, by_hand)
    }

    fn same(text: &str) {
        let (by_serde, by_hand) = both(text);
        assert_eq!(by_hand, by_serde, "\n{text}");
    }

    /// Values of every kind, and integers at each width toml hands serde.
    const VALUES: &[&str] = &[
        "\"word\"",
        "\"with \\\"quotes\\\" and é\"",
        "''",
        "5",
        "-5",
        "0x7f",
        "9223372036854775807",
        "18446744073709551615",
        "170141183460469231731687303715884105727",
        "340282366920938463463374607431768211455",
        "9999999999999999999999999999999999999999999",
        "1.5",
        "1e400",
        "-1e400",
        "inf",
        "-inf",
        "nan",
        "2.0",
        "true",
        "false",
        "1979-05-27",
        "1979-05-27T07:32:00Z",
        "07:32:00",
        "[]",
        "[1]",
        "[\"a\", \"b\"]",
        "[\"a\", 2]",
        "[[\"a\"]]",
        "{}",
        "{ a = 1 }",
        "{ a = [1, { b = \"c\" }] }",
    ];

    /// Each table's fields, where its header is written, and what a
    /// table needs besides.
    const TABLES: &[(&str, &[&str], &str)] = &[
        ("[auth]", AUTH, ""),
        ("[[auth.accept]]", ACCEPT_KEY, "id = 1\n"),
        ("[local]", LOCAL, ""),
        ("[remote]", REMOTE, ""),
        ("[limits]", LIMITS, ""),
        ("[log]", LOG, ""),
        ("[[link]]", LINK, "interface = \"wan0\"\n"),
        ("[probe]", PROBE, ""),
        ("[paths]", PATHS, ""),
    ];

    #[test]
    fn every_field_given_every_kind_of_value_reads_as_serde_read_it() {
        for (header, fields, needs) in TABLES {
            for field in *fields {
                for value in VALUES {
                    if *field == "accept" && value.starts_with("[[") {
                        continue; // tables given as arrays: see below
                    }
                    let (required, _) = needs.split_once(" =").unwrap_or(("", ""));
                    let rest = if *field == required { "" } else { needs };
                    same(&format!("{header}\n{rest}{field} = {value}\n"));
                }
            }
        }
    }

    #[test]
    fn unknown_and_missing_fields_and_misplaced_tables_read_as_serde_read_them() {
        for (header, _, needs) in TABLES {
            same(&format!("{header}\n{needs}bogus = 1\n"));
            same(&format!("{header}\n{needs}\n[other]\n"));
            // Unknown among known, in either order: the first is reported.
            same(&format!("{header}\n{needs}a_bogus = 1\nz_bogus = \"x\"\n"));
            // A required field missing.
            same(&format!("{header}\n"));
        }
        for doc in [
            "",
            "bogus = 1",
            "auth = 5",
            "local = \"x\"",
            "log = true",
            "probe = 1.5",
            "link = 5",
            "link = [5]",
            "link = [\"wan0\"]",
            "link = []",
            "[link]\ninterface = \"wan0\"",
            "[auth]\naccept = { id = 1 }",
            "[[auth.accept]]\nid = 1\n[[auth.accept]]\nkey = \"k\"",
            "[[link]]\ninterface = \"a\"\n[[link]]\ninterface = 5",
            "[[link]]\ninterface = \"a\"\n[[link]]\nbackup = true",
            "[local]\nlisten = [\"a\", 5]",
            "[local]\nlisten = [\"a\", [\"b\"]]",
            "[local]\nmptcp = 1\nbogus = 2\nfastopen = \"x\"",
            "[remote]\nallow = [\"10.0.0.0/8\", 1.5]",
            "[paths]\nroutes = [\"0.0.0.0/0\", 18446744073709551615]",
            "[paths]\nroutes = { a = 1979-05-27 }",
            "[probe]\ninterval_ms = 18446744073709551615",
        ] {
            same(doc);
        }
    }

    #[test]
    fn full_configs_read_as_serde_read_them() {
        same(include_str!("../../examples-config/mpbridge.toml"));
        let mut all = String::new();
        for (header, fields, needs) in TABLES {
            all.push_str(&format!("{header}\n{needs}"));
            let required = needs.split_once(" =").map_or("", |(f, _)| f);
            for field in fields.iter().filter(|f| **f != required) {
                let value = match *field {
                    "peer" | "routes" | "sndbuf" => "[\"10.20.0.2\", 7, { a = 1.5 }]",
                    "listen" | "remotes" | "lan_interfaces" | "bypass" | "allow" | "deny" => {
                        "[\"x\", \"y\"]"
                    }
                    "enabled" | "backup" | "mptcp" | "fastopen" | "allow_loopback" => "true",
                    "mode" | "key" | "key_file" | "intercept" | "congestion" | "firewall"
                    | "quic" | "control_socket" | "metrics_listen" | "level" | "down_action"
                    | "subflows" | "slow_links" => "\"w\"",
                    _ => "7",
                };
                if *field != "accept" {
                    all.push_str(&format!("{field} = {value}\n"));
                }
            }
        }
        let (by_serde, by_hand) = both(&all);
        assert!(
            by_hand.starts_with("RawConfig"),
            "an error: {by_hand}\n{all}"
        );
        assert_eq!(by_hand, by_serde, "\n{all}");
    }

    /// serde read a struct from an array too, its fields in order
    /// (`log = ["debug"]`); the docs never offered that, and it is refused.
    #[test]
    fn a_table_given_as_an_array_is_refused() {
        for (text, refusal) in [
            (
                "log = [\"debug\"]",
                "6..15 log: found an array (expected a table)",
            ),
            (
                "[auth]\naccept = [[1]]",
                "17..20 auth.accept[0]: found an array (expected a table)",
            ),
        ] {
            let (by_serde, by_hand) = both(text);
            assert_eq!(by_hand, refusal);
            assert_ne!(by_serde, by_hand);
        }
    }

    /// serde saw a datetime as a table with one odd key, which it named.
    #[test]
    fn a_table_given_as_a_datetime_says_so() {
        let (by_serde, by_hand) = both("log = 1979-05-27");
        assert_eq!(by_hand, "6..16 log: found datetime (expected a table)");
        assert_eq!(
            by_serde, "6..16 log: unknown field (expected one of level)",
            "serde's"
        );
    }
}
