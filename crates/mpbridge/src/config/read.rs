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
    RawAcceptKey, RawAuth, RawConfig, RawLimits, RawLink, RawLocal, RawLog, RawPaths, RawProbe,
    RawRemote,
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

/// Declares how a table is read, each field written once as `field: reader`
/// in the order serde listed them (the order an unknown key's message offers
/// them in). `field` is both the key and the Raw struct's field it fills;
/// `reader` reads the value, which is kept with its span. Makes
/// `const NAMES`, the table's keys for that message, and `fn name`, which
/// reads the document itself or a table value into the Raw struct (a value
/// that is not a table is refused as serde did: "expected struct RawX").
///
/// A key the table lacks leaves its field `None`, but one marked
/// `#[required]` (a plain `Spanned` in the Raw struct) is refused as missing.
/// Such a table is gathered in locals named after its fields, its Raw struct
/// having no empty value; the others start from one with every field written
/// out as `None`, so that a Raw field left out here does not compile.
macro_rules! read_table {
    // The document itself, every field optional.
    (const $names:ident; $(#[$m:meta])* $vis:vis fn $name:ident(doc: &DeTable) -> $raw:ident {
        $($field:ident: $read:expr),* $(,)?
    }) => {
        const $names: &[&str] = &[$(stringify!($field)),*];

        $(#[$m])*
        $vis fn $name(doc: &DeTable<'_>) -> Read<$raw> {
            read_table!(@optional doc, $raw, $names, $($field: $read),*)
        }
    };
    // A table value, every field optional.
    (const $names:ident; $(#[$m:meta])* fn $name:ident(v: &Value) -> $raw:ident {
        $($field:ident: $read:expr),* $(,)?
    }) => {
        const $names: &[&str] = &[$(stringify!($field)),*];

        $(#[$m])*
        fn $name(v: &Value<'_>) -> Read<$raw> {
            let t = table(v, concat!("struct ", stringify!($raw)))?;
            read_table!(@optional t, $raw, $names, $($field: $read),*)
        }
    };
    // A table value with required fields.
    (const $names:ident; $(#[$m:meta])* fn $name:ident(v: &Value) -> $raw:ident {
        $($(#[$required:ident])? $field:ident: $read:expr),* $(,)?
    }) => {
        const $names: &[&str] = &[$(stringify!($field)),*];

        $(#[$m])*
        fn $name(v: &Value<'_>) -> Read<$raw> {
            let t = table(v, concat!("struct ", stringify!($raw)))?;
            $(let mut $field = None;)*
            fields(t, $names, &mut |key, v| {
                match key {
                    $(stringify!($field) => $field = Some(spanned(v, $read)?),)*
                    _ => return Ok(false),
                }
                Ok(true)
            })?;
            Ok($raw {
                $($field: read_table!(@take v, $field $(, $required)?),)*
            })
        }
    };
    (@optional $t:ident, $raw:ident, $names:ident, $($field:ident: $read:expr),*) => {{
        let mut raw = $raw { $($field: None),* };
        fields($t, $names, &mut |key, v| {
            match key {
                $(stringify!($field) => raw.$field = Some(spanned(v, $read)?),)*
                _ => return Ok(false),
            }
            Ok(true)
        })?;
        Ok(raw)
    }};
    (@take $v:ident, $field:ident) => {
        $field
    };
    (@take $v:ident, $field:ident, required) => {
        $field.ok_or_else(|| missing($v, stringify!($field)))?
    };
}

read_table! {
    const CONFIG;
    /// The whole document.
    pub(super) fn config(doc: &DeTable) -> RawConfig {
        auth: auth,
        local: local,
        remote: remote,
        limits: limits,
        log: log,
        link: |v| tables(v, link),
        probe: probe,
        paths: paths,
    }
}

read_table! {
    const LINK;
    fn link(v: &Value) -> RawLink {
        #[required]
        interface: string,
        peer: value,
        backup: boolean,
        rate_mbit: integer,
    }
}

read_table! {
    const PROBE;
    fn probe(v: &Value) -> RawProbe {
        enabled: boolean,
        interval_ms: integer,
        down_after: integer,
        up_after: integer,
        port: integer,
        down_action: string,
        interface_counter: boolean,
        close_subflows: boolean,
    }
}

read_table! {
    const PATHS;
    fn paths(v: &Value) -> RawPaths {
        table_base: integer,
        rule_priority: integer,
        routes: value,
        route_table: integer,
        route_metric: integer,
        nexthop_base: integer,
        subflows: string,
        subflows_after_ms: integer,
        slow_links: string,
    }
}

read_table! {
    const AUTH;
    fn auth(v: &Value) -> RawAuth {
        mode: string,
        key_id: integer,
        key: string,
        key_file: string,
        window_secs: integer,
        replay_cache: integer,
        accept: |v| tables(v, accept_key),
    }
}

read_table! {
    const ACCEPT_KEY;
    fn accept_key(v: &Value) -> RawAcceptKey {
        #[required]
        id: integer,
        key: string,
        key_file: string,
    }
}

read_table! {
    const LOCAL;
    fn local(v: &Value) -> RawLocal {
        listen: strings,
        intercept: string,
        remotes: strings,
        connect_timeout_ms: integer,
        reply_timeout_ms: integer,
        mptcp: boolean,
        fastopen: boolean,
        fastopen_rcvbuf: integer,
        sndbuf: value,
        congestion: string,
        firewall: string,
        lan_interfaces: strings,
        bypass: strings,
        quic: string,
        control_socket: string,
        metrics_listen: string,
    }
}

read_table! {
    const REMOTE;
    fn remote(v: &Value) -> RawRemote {
        listen: strings,
        header_timeout_ms: integer,
        connect_timeout_ms: integer,
        allow: strings,
        deny: strings,
        allow_loopback: boolean,
        control_socket: string,
        metrics_listen: string,
        fastopen_rcvbuf: integer,
        sndbuf: value,
        congestion: string,
    }
}

read_table! {
    const LIMITS;
    fn limits(v: &Value) -> RawLimits {
        max_connections: integer,
        drain_secs: integer,
        pipe_size: integer,
        rcvbuf_budget: integer,
    }
}

read_table! {
    const LOG;
    fn log(v: &Value) -> RawLog {
        level: string,
    }
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

/// An array of strings (`listen`, `allow`, ...), each with its span.
fn strings(v: &Value<'_>) -> Read<Vec<Spanned<String>>> {
    array(v)?.iter().map(|item| spanned(item, string)).collect()
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
                    "enabled" | "backup" | "mptcp" | "fastopen" | "allow_loopback"
                    | "interface_counter" | "close_subflows" => "true",
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
