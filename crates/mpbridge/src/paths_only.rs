//! `mpbridge paths local|remote`: the path manager alone (MPTCP limits,
//! endpoints, policy routing, probes) for routers whose MPTCP proxy is
//! another program, e.g. shadowsocks-rust with `--mptcp` (the benchmarks).

use std::future::Future;

use crate::config::{Auth, PathSettings};
use crate::daemon::StartError;
use crate::paths::{PathManager, Side};

/// Sets the links up as `mpbridge local` (`side` Local) or `mpbridge
/// remote` would, follows them until `shutdown`, then removes what it added.
pub async fn run(
    paths: &PathSettings,
    side: Side,
    auth: &Auth,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    crate::checks::mptcp_available()?;
    let role = match side {
        Side::Local { .. } => "local",
        Side::Remote => "remote",
    };
    let Some(manager) = PathManager::start(paths, side, auth).await? else {
        return Err(StartError::Unavailable(
            "no [[link]] is configured: the path manager has nothing to set up".into(),
        ));
    };
    tracing::info!(
        role,
        links = paths.links.len(),
        probing = paths.probe.enabled,
        "paths ready (path manager only)"
    );
    shutdown.await;
    manager.stop().await;
    Ok(())
}
