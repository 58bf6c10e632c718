//! `mpbridge paths local|remote`: the path manager alone (MPTCP limits,
//! endpoints, policy routing, probes) for routers whose MPTCP proxy is
//! another program, e.g. shadowsocks-rust with `--mptcp` (the benchmarks).

use std::future::Future;
use std::net::SocketAddr;

use crate::config::{Auth, PathSettings, Role};
use crate::daemon::{Daemon, StartError};
use crate::paths::PathManager;

/// Sets the links up as `mpbridge local` (probing to the first of
/// `remotes`) or `mpbridge remote` would, follows them until `shutdown`,
/// then removes what it added.
pub async fn run(
    paths: &PathSettings,
    role: Role,
    remotes: &[SocketAddr],
    auth: &Auth,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    crate::checks::mptcp_available()?;
    // The path manager follows the links through the host's view, as in
    // the daemons; it ends when `host` is dropped, after the manager.
    let host = crate::checks::host_view().await?;
    // The path manager is its only part; the daemon value removes what
    // it added on every way out, a dropped future included.
    let mut daemon = Daemon::<()>::default();
    if daemon
        .hold_paths(PathManager::start(paths, role, remotes, &[], auth, host.watch()).await?)
        .is_none()
    {
        return Err(StartError::Unavailable(
            "no [[link]] is configured: the path manager has nothing to set up".into(),
        ));
    }
    tracing::info!(
        %role,
        links = paths.links.len(),
        probing = paths.probe.enabled,
        "paths ready (path manager only)"
    );
    shutdown.await;
    daemon.stop().await;
    Ok(())
}
