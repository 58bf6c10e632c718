//! Tests of the whole validation pass, by theme: the values read
//! (`values`), every error naming file, line, column and field (`errors`),
//! keys and their warnings (`keys`). Shared fixtures are here.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use ipnet::IpNet;

use super::*;

mod errors;
mod keys;
mod values;

pub(super) const ORIGIN: &str = "/etc/mpbridge/mpbridge.toml";
pub(super) const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
pub(super) const KEY2: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

pub(super) fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
    parse_str(text, Path::new(ORIGIN))
}

pub(super) fn local(text: &str) -> Result<(LocalSettings, Vec<Warning>), ConfigError> {
    parse(text)?.local(&Overrides::default())
}

pub(super) fn remote(text: &str) -> Result<(RemoteSettings, Vec<Warning>), ConfigError> {
    parse(text)?.remote(&Overrides::default())
}

pub(super) fn error_text<T>(r: Result<T, ConfigError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// A file under the temp dir with a unique name, removed on drop.
pub(super) struct TempFile(pub(super) PathBuf);

impl TempFile {
    pub(super) fn new(contents: &str, mode: u32) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "mpbridge-config-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

pub(super) fn psk(auth: &Auth) -> (&KeySpec, &[KeySpec], u64, usize) {
    match auth {
        Auth::Psk {
            send,
            accept,
            window_secs,
            replay_capacity,
        } => (send, accept, *window_secs, *replay_capacity),
        Auth::None => panic!("expected psk"),
    }
}

pub(super) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

pub(super) fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}
