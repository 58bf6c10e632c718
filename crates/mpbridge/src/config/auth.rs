//! `[auth]`: the pre-shared keys (inline or in key files) and the cookie
//! window and replay cache.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read as _};
use std::ops::Range;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use serde::Deserialize;

use super::bounded::{KeyId, ReplayCache, WindowSecs};
use super::choice::Choice;
use super::error::{ConfigError, Location};
use super::raw::{section, Field};
use super::settings::{Auth, KeySpec, Overrides, Secret, Warning};
use super::{
    ConfigFile, DEFAULT_KEY_ID, DEFAULT_REPLAY_CACHE, DEFAULT_WINDOW_SECS, FLAG_KEY_FILE,
    GENKEY_HINT, MAX_KEY_FILE_BYTES, MIN_KEY_LEN,
};

impl ConfigFile {
    pub(super) fn auth(
        &self,
        ov: &Overrides,
        warnings: &mut Vec<Warning>,
    ) -> Result<Auth, ConfigError> {
        let (raw, header) = section(&self.raw.auth);
        let key_id: u8 = self
            .bounded::<KeyId>(raw.key_id.as_ref(), "auth.key_id", DEFAULT_KEY_ID)?
            .get();
        let window_secs: u64 = self
            .bounded::<WindowSecs>(
                raw.window_secs.as_ref(),
                "auth.window_secs",
                DEFAULT_WINDOW_SECS,
            )?
            .get();
        let replay_capacity: usize = self
            .bounded::<ReplayCache>(
                raw.replay_cache.as_ref(),
                "auth.replay_cache",
                DEFAULT_REPLAY_CACHE,
            )?
            .get();

        if self.choice(&raw.mode, "auth.mode", AuthMode::Psk)? == AuthMode::None {
            if ov.key_file.is_some() {
                return Err(ConfigError::command_line(
                    FLAG_KEY_FILE,
                    format!(
                        "cannot be used with auth.mode = \"none\" in {} (expected mode = \"psk\")",
                        self.path.display()
                    ),
                ));
            }
            let ignored = raw.key.is_some() || raw.key_file.is_some() || raw.accept.is_some();
            warnings.push(Warning(format!(
                "auth.mode = \"none\": connections are neither authenticated nor protected against replay; use it only for interop tests{}",
                if ignored { " (auth.key, auth.key_file and auth.accept are ignored)" } else { "" }
            )));
            return Ok(Auth::None);
        }

        let send_secret = match &ov.key_file {
            Some(path) => read_key_file(path, FLAG_KEY_FILE, warnings)?,
            None => self.key_material("auth", &raw.key, &raw.key_file, header, warnings)?,
        };
        let send = KeySpec {
            id: key_id,
            secret: send_secret,
        };

        let mut accept = vec![send.clone()];
        let mut used: HashMap<u8, String> = HashMap::from([(key_id, "auth.key_id".to_owned())]);
        for (i, entry) in raw.accept.iter().flat_map(|a| a.get_ref()).enumerate() {
            let prefix = format!("auth.accept[{i}]");
            let e = entry.get_ref();
            let id: u8 = self
                .bounded::<KeyId>(Some(&e.id), &format!("{prefix}.id"), 0)?
                .get();
            if let Some(other) = used.get(&id) {
                return Err(self.invalid(
                    e.id.span(),
                    format!("{prefix}.id"),
                    format!("key id {id} is already used by {other} (expected a different id for each key)"),
                ));
            }
            used.insert(id, format!("{prefix}.id"));
            let secret =
                self.key_material(&prefix, &e.key, &e.key_file, Some(entry.span()), warnings)?;
            accept.push(KeySpec { id, secret });
        }

        Ok(Auth::Psk {
            send,
            accept,
            window_secs,
            replay_capacity,
        })
    }

    /// One key written as `key` (inline hex) or `key_file`, under `prefix`.
    pub(super) fn key_material(
        &self,
        prefix: &str,
        key: &Field<String>,
        key_file: &Field<String>,
        header: Option<Range<usize>>,
        warnings: &mut Vec<Warning>,
    ) -> Result<Secret, ConfigError> {
        match (key, key_file) {
            (Some(_), Some(file)) => Err(self.invalid(
                file.span(),
                format!("{prefix}.key_file"),
                format!("is set together with {prefix}.key (expected exactly one of key and key_file)"),
            )),
            (None, None) => Err(self.missing(
                header,
                format!("{prefix}.key"),
                format!(
                    "required when auth.mode = \"psk\" (expected key = \"<64 hex digits>\" or key_file = \"/etc/mpbridge/key\"; {GENKEY_HINT})"
                ),
            )),
            (Some(key), None) => {
                let bytes = decode_key(key.get_ref())
                    .map_err(|p| self.invalid(key.span(), format!("{prefix}.key"), p))?;
                if let Some(mode) = self.mode.filter(|m| m & 0o077 != 0) {
                    let warning = Warning(format!(
                        "{0} holds a key inline and is readable by others (mode {1:04o}); run chmod 600 {0}, or move the key into a key_file",
                        self.path.display(),
                        mode & 0o7777
                    ));
                    if !warnings.contains(&warning) {
                        warnings.push(warning);
                    }
                }
                Ok(Secret::new(bytes))
            }
            (None, Some(file)) => {
                let field = format!("{prefix}.key_file");
                if file.get_ref().is_empty() {
                    return Err(self.invalid(
                        file.span(),
                        field,
                        "is empty (expected a path, e.g. \"/etc/mpbridge/key\")",
                    ));
                }
                // Relative key files are relative to the config file's directory.
                let base = self.path.parent().unwrap_or(Path::new(""));
                read_key_file(&base.join(file.get_ref()), &field, warnings)
            }
        }
    }
}

/// `auth.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum AuthMode {
    /// Every connection carries a cookie made with a pre-shared key.
    Psk,
    /// No cookie (interop tests only).
    None,
}

impl Choice for AuthMode {
    const WHAT: &'static str = "an auth mode";
}

/// Hex text to key bytes. The problem text never quotes the key.
pub(super) fn decode_key(hex_text: &str) -> Result<Vec<u8>, String> {
    if hex_text.is_empty() {
        return Err(format!(
            "key is empty (expected at least {} hex digits; {GENKEY_HINT})",
            2 * MIN_KEY_LEN
        ));
    }
    if let Some(i) = hex_text.chars().position(|c| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "key is not hex: character {} is not 0-9 or a-f (expected at least {} hex digits; {GENKEY_HINT})",
            i + 1,
            2 * MIN_KEY_LEN
        ));
    }
    let bytes = hex::decode(hex_text).map_err(|_| {
        format!(
            "key has an odd number of hex digits ({}) (expected two per byte; {GENKEY_HINT})",
            hex_text.len()
        )
    })?;
    if bytes.len() < MIN_KEY_LEN {
        return Err(format!(
            "key is {} bytes, at least {MIN_KEY_LEN} are needed ({GENKEY_HINT})",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Reads a file holding a hex key; warns when group or others may open it.
pub(super) fn read_key_file(
    path: &Path,
    field: &str,
    warnings: &mut Vec<Warning>,
) -> Result<Secret, ConfigError> {
    let fail = |problem: String| ConfigError::Invalid {
        at: Location::Path(path.to_owned()),
        field: field.to_owned(),
        problem,
    };
    let cannot_read = |e: io::Error| fail(format!("cannot read: {}", io_reason(&e)));
    let file = File::open(path).map_err(cannot_read)?;
    let meta = file.metadata().map_err(cannot_read)?;
    if !meta.is_file() {
        return Err(fail(
            "is not a regular file (expected a file holding the key as hex)".to_owned(),
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        let what = if mode & 0o044 != 0 {
            "readable"
        } else {
            "accessible"
        };
        warnings.push(Warning(format!(
            "{0} is {what} by others (mode {mode:04o}); run chmod 600 {0}",
            path.display()
        )));
    }
    let mut text = String::new();
    file.take(MAX_KEY_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(cannot_read)?;
    decode_key(text.trim()).map(Secret::new).map_err(fail)
}

pub(super) fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        io::ErrorKind::IsADirectory => "is a directory".to_owned(),
        io::ErrorKind::InvalidData => "not UTF-8 text".to_owned(),
        _ => e.to_string(),
    }
}
