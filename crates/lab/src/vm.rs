//! Scenarios that need netem (delay, jitter, bursty loss) run inside a
//! full-system x86_64 VM: Debian's Linux 6.12 under qemu, booted by
//! `scripts/vm-lab.sh` with this machine's root file system shared
//! read-only, so that the very same `mpbridge-lab` and `mpbridge` run
//! there. The host's `mpbridge-lab` runs itself in the VM with the same
//! arguments, its JSON written to a writable share; back on the host it
//! reads that JSON and writes the report and plot as it always does. Every
//! figure of such a run (the limit too) is measured in the VM.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Set (to 1) by the VM for the command it runs.
pub const INSIDE_ENV: &str = "MPBRIDGE_VM";
/// Overrides where `scripts/vm-lab.sh` is.
pub const SCRIPT_ENV: &str = "MPBRIDGE_VM_LAB";

/// Whether this process runs inside the lab's VM.
pub fn inside() -> bool {
    std::env::var(INSIDE_ENV).as_deref() == Ok("1")
}

/// `timeout`, or six times it inside the VM: under TCG, on a busy host, a
/// daemon took more than 10 s to start listening.
pub fn slow(timeout: std::time::Duration) -> std::time::Duration {
    if inside() {
        timeout * 6
    } else {
        timeout
    }
}

/// `scripts/vm-lab.sh`: `$MPBRIDGE_VM_LAB`, else the one of the source tree
/// this binary was built from.
pub fn script() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os(SCRIPT_ENV) {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/vm-lab.sh"),
    };
    anyhow::ensure!(
        path.is_file(),
        "the VM needs scripts/vm-lab.sh, which is not at {}: set {SCRIPT_ENV} to its path",
        path.display()
    );
    Ok(path)
}

/// Why a run goes to the VM: the first link that needs netem, or `None`.
pub fn reason(links: &[crate::LinkSpec]) -> Option<String> {
    let (i, link) = links
        .iter()
        .enumerate()
        .find(|(_, l)| crate::shaping::needs_netem_here(l))?;
    Some(format!(
        "link {i} ({}) needs netem, which this machine's kernel may lack",
        link.spec_text()
    ))
}

/// The arguments for the run inside the VM: `args` (without the program
/// name) minus `--vm`, `--mpbridge`, `--json`, `--plot` (and the bench's
/// `--out`, `--svg` and `--cache`, which the caller gives anew), with
/// `--mpbridge MPBRIDGE` first and `--json JSON` (in the share) last: the
/// host writes the JSON and the plot the user asked for from that.
pub fn guest_args(args: &[String], mpbridge: &Path, json: &Path) -> Vec<String> {
    let mut out = vec!["--mpbridge".to_string(), mpbridge.display().to_string()];
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (arg.as_str(), None),
        };
        match name {
            "--vm" => {}
            "--mpbridge" | "--json" | "--plot" | "--out" | "--svg" | "--cache" => {
                if inline.is_none() {
                    it.next();
                }
            }
            _ => out.push(arg.clone()),
        }
    }
    out.push("--json".into());
    out.push(json.display().to_string());
    out
}

/// A writable folder for the VM's results, removed on drop.
pub struct Share {
    pub dir: PathBuf,
}

impl Share {
    pub fn new() -> anyhow::Result<Share> {
        let dir = std::env::temp_dir().join(format!("mpbridge-lab-vm.{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Share { dir })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `program args…` in the VM with `share` writable; returns whether it
/// exited with 0. The VM's console (the command's output) goes to this
/// process's stdout.
pub fn run(share: &Share, program: &Path, args: &[String]) -> anyhow::Result<bool> {
    let script = script()?;
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg("--share")
        .arg(&share.dir)
        .arg("--")
        .arg(program)
        .args(args)
        .status()
        .with_context(|| format!("cannot run {}", script.display()))?;
    Ok(status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_guest_gets_the_same_arguments_with_outputs_in_the_share() {
        let args = strings(&[
            "--mpbridge",
            "target/x/mpbridge",
            "run",
            "aggregate",
            "--vm",
            "--links",
            "50@5ms,50@30ms",
            "--json",
            "out.json",
            "--plot=out.svg",
        ]);
        let got = guest_args(
            &args,
            Path::new("/abs/mpbridge"),
            Path::new("/share/report.json"),
        );
        assert_eq!(
            got,
            strings(&[
                "--mpbridge",
                "/abs/mpbridge",
                "run",
                "aggregate",
                "--links",
                "50@5ms,50@30ms",
                "--json",
                "/share/report.json",
            ])
        );
    }

    #[test]
    fn a_bench_in_the_guest_loses_the_outputs_the_host_writes() {
        let args = strings(&[
            "bench",
            "--vm",
            "--cases",
            "unequal",
            "--out",
            "docs/X.md",
            "--svg=x.svg",
            "--cache",
            "/c",
            "--variant",
            "a|b = 1",
        ]);
        let got = guest_args(&args, Path::new("/m"), Path::new("/s/b.json"));
        assert_eq!(
            got,
            strings(&[
                "--mpbridge",
                "/m",
                "bench",
                "--cases",
                "unequal",
                "--variant",
                "a|b = 1",
                "--json",
                "/s/b.json",
            ])
        );
    }

    #[test]
    fn the_reason_names_the_first_link_that_needs_netem() {
        let links = crate::checks::parse_links("50,50@30ms,wifi").unwrap();
        assert_eq!(
            reason(&links).unwrap(),
            "link 1 (50@30ms) needs netem, which this machine's kernel may lack"
        );
        assert!(reason(&crate::checks::parse_links("50,50-1%").unwrap()).is_none());
    }
}
