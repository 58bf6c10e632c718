//! Keys: inline or in key files, relative paths, the permission warnings,
//! `auth.mode = "none"`, and that secrets never reach `Debug` output.

use std::path::PathBuf;

use super::*;

#[test]
fn load_reads_the_file_from_disk() {
    let config = TempFile::new(&format!("[auth]\nkey = \"{KEY}\"\n[remote]\n"), 0o600);
    let (s, warnings) = load_remote(&config.0, true, &Overrides::default()).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    psk(&s.common.auth);
    let (roles, _) = check(&config.0).unwrap();
    assert_eq!(roles, vec![Role::Remote]);
}

#[test]
fn inline_key_in_world_readable_config_gives_a_warning() {
    let config = TempFile::new(&format!("[auth]\nkey = \"{KEY}\"\n"), 0o644);
    let (_, warnings) = load_remote(&config.0, true, &Overrides::default()).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].0.contains("readable by others (mode 0644)"),
        "{warnings:?}"
    );
}

#[test]
fn world_readable_key_file_gives_a_warning() {
    let key_file = TempFile::new(&format!("  {KEY}\n"), 0o644);
    let text = format!("[auth]\nkey_file = \"{}\"\n", key_file.0.display());
    let (s, warnings) = remote(&text).unwrap();
    assert_eq!(hex::encode(psk(&s.common.auth).0.secret.expose()), KEY);
    let expected = format!(
        "{0} is readable by others (mode 0644); run chmod 600 {0}",
        key_file.0.display()
    );
    assert_eq!(warnings, vec![Warning(expected)]);
}

#[test]
fn private_key_file_gives_no_warning() {
    let key_file = TempFile::new(KEY, 0o600);
    let text = format!("[auth]\nkey_file = \"{}\"\n", key_file.0.display());
    let (_, warnings) = remote(&text).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn relative_key_file_is_found_beside_the_config_file() {
    let key_file = TempFile::new(KEY, 0o600);
    let name = key_file.0.file_name().unwrap().to_str().unwrap();
    let origin = std::env::temp_dir().join("mpbridge.toml");
    let text = format!("[auth]\nkey_file = \"{name}\"\n");
    let (s, _) = parse_str(&text, &origin)
        .unwrap()
        .remote(&Overrides::default())
        .unwrap();
    assert_eq!(hex::encode(psk(&s.common.auth).0.secret.expose()), KEY);
}

#[test]
fn key_file_problems_name_the_key_file() {
    let short = TempFile::new("0011223344556677\n", 0o600);
    let not_hex = TempFile::new("not a key\n", 0o600);
    let cases = [
        (
            PathBuf::from("/nonexistent/mpbridge-key"),
            "cannot read: no such file",
        ),
        (
            short.0.clone(),
            "key is 8 bytes, at least 16 are needed (generate one with: mpbridge genkey)",
        ),
        (not_hex.0.clone(), "key is not hex"),
        (std::env::temp_dir(), "is not a regular file"),
    ];
    assert!(!cases.is_empty());
    for (path, problem) in cases {
        let text = format!("[auth]\nkey_file = \"{}\"\n", path.display());
        let message = error_text(remote(&text));
        let expected = format!("{}: auth.key_file: {problem}", path.display());
        assert!(
            message.starts_with(&expected),
            "{message:?} should start with {expected:?}"
        );
    }
}

#[test]
fn auth_mode_none_gives_a_warning_and_no_keys() {
    let (s, warnings) = remote("[auth]\nmode = \"none\"\n").unwrap();
    assert!(matches!(s.common.auth, Auth::None));
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].0.contains("auth.mode = \"none\""),
        "{warnings:?}"
    );
    let with_key = parse("[auth]\nmode = \"none\"\n")
        .unwrap()
        .remote(&Overrides {
            key_file: Some(PathBuf::from("/etc/mpbridge/key")),
            ..Default::default()
        });
    assert!(error_text(with_key).starts_with("command line: --key-file: "));
}

#[test]
fn allow_loopback_gives_a_warning() {
    let text = format!("[auth]\nkey = \"{KEY}\"\n[remote]\nallow_loopback = true\n");
    let (s, warnings) = remote(&text).unwrap();
    assert!(s.policy.allow_loopback);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

#[test]
fn secrets_are_masked_in_debug_output() {
    let text = format!("[auth]\nkey = \"{KEY}\"\n[local]\nremotes = [\"192.0.2.2:4443\"]\n");
    let (s, _) = local(&text).unwrap();
    let shown = format!("{s:?}");
    assert!(shown.contains("MASKED"));
    assert!(
        !shown.contains(KEY) && !shown.contains("[0, 17, 34"),
        "{shown}"
    );
    assert_eq!(Secret::new(vec![1]).to_string(), "MASKED");
}
