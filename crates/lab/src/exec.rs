//! Running the system tools the lab drives (`ip`, `tc`, `nft`, `ss`) and
//! turning their failures into errors that quote the command line, the
//! exit status, stderr and, for batch input, the script.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// Runs `program args…`, feeding `stdin` when given; returns stdout.
pub(crate) fn run(program: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let line = command_line(program, args);
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    if let Some(input) = stdin {
        // Taking the pipe closes it after the write, so the tool sees EOF.
        let mut pipe = child.stdin.take().context("stdin pipe missing")?;
        pipe.write_all(input.as_bytes())
            .with_context(|| format!("cannot feed `{line}`"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("cannot wait for `{line}`"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut msg = format!("`{line}` failed ({}): {}", out.status, stderr.trim());
        if let Some(input) = stdin {
            msg.push_str("\ninput was:\n");
            msg.push_str(input);
        }
        bail!(msg);
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{line}` printed non-UTF-8"))
}

/// Checks that `program` can be started at all, with a hint if not.
pub(crate) fn require_tool(program: &str, version_arg: &str, package: &str) -> anyhow::Result<()> {
    match Command::new(program)
        .arg(version_arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(_) => Ok(()),
        Err(e) => bail!("`{program}` cannot be run ({e}): install the `{package}` package"),
    }
}

/// The command as a person would type it, for messages.
pub(crate) fn command_line(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_is_returned() {
        assert_eq!(run("echo", &["hi"], None).unwrap(), "hi\n");
    }

    #[test]
    fn stdin_is_fed() {
        assert_eq!(run("cat", &[], Some("abc")).unwrap(), "abc");
    }

    #[test]
    fn failure_names_command_and_stderr() {
        let err = run("sh", &["-c", "echo oops >&2; exit 3"], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sh -c echo oops >&2; exit 3"), "{err}");
        assert!(err.contains("oops"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
    }

    #[test]
    fn missing_tool_is_named_with_its_package() {
        let err = require_tool("mpb-no-such-tool", "-V", "mpb-pkg")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mpb-no-such-tool") && err.contains("mpb-pkg"),
            "{err}"
        );
    }
}
