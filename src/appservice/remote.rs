//! Users of other MIMI providers in a portal's room: inviting one claims their key material
//! from their provider (through its directory, over mutual TLS; the provider's consent rules
//! apply), records their joining (the hub vouches for it), and commits the add of every client
//! handed out, whose Welcome the hub's fan-out takes to their provider.
//!
//! Each step is durable before the next and skipped when done, so the intake entry that asked
//! for it can be retried after any failure: a retry after the join claims again (the one-time
//! packages of the failed attempt are spent, which the draft allows) and commits.

use std::sync::Arc;

use super::bridge::{Bridge, BridgeError, off_runtime};
use super::portal::now_ms;

/// Why a remote user could not be brought in.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// This bridge has no MIMI provider side (`mimi.tls` unset).
    #[error("no MIMI provider is configured (mimi.tls), so users of other providers cannot be invited")]
    NoProvider,
    /// The user's provider could not be asked, or refused.
    #[error("{0}")]
    Peer(#[from] crate::provider::peers::PeersError),
    /// The provider handed out no usable key material.
    #[error("{user}'s provider gave no usable key material ({status})")]
    NoKeyMaterial {
        /// The user URI.
        user: String,
        /// What the provider said.
        status: String,
    },
}

impl Bridge {
    /// Makes `remote` (`@name:provider`) a participant of `mimi_room` with all the clients its
    /// provider hands out, committed by `sponsor` (a local member with a client in the group).
    pub(super) async fn admit_remote(&self, mimi_room: &str, sponsor: &str, remote: &str) -> Result<(), BridgeError> {
        let (hub, room, user) = (Arc::clone(&self.hub), mimi_room.to_owned(), remote.to_owned());
        if off_runtime(move || Ok(hub.has_clients(&room, &user)?)).await? {
            return Ok(());
        }
        let packages = self.claim_remote(mimi_room, sponsor, remote).await?;
        let (hub, room, sponsor, remote) =
            (Arc::clone(&self.hub), mimi_room.to_owned(), sponsor.to_owned(), remote.to_owned());
        off_runtime(move || {
            if let Some(joined) = hub.vouch_join(&room, &remote, now_ms())? {
                joined.wait()?;
            }
            hub.commit_add(&room, &sponsor, &packages, now_ms())?.wait()?;
            tracing::info!(room, user = remote, clients = packages.len(), "user of another provider added");
            Ok(())
        })
        .await
    }

    /// In a room hubbed elsewhere: `sponsor`'s client commits the add of `remote`'s clients
    /// through the hub (`hub::adds`), which appends their join. While another commit of the
    /// sponsor's is with the hub this fails as transient, before claiming anything.
    pub(super) async fn add_remote_for_hub(
        &self,
        mimi_room: &str,
        sponsor: &str,
        remote: &str,
    ) -> Result<(), BridgeError> {
        let (hub, room, (by, user)) =
            (Arc::clone(&self.hub), mimi_room.to_owned(), (sponsor.to_owned(), remote.to_owned()));
        let done = off_runtime(move || {
            hub.may_commit(&room, &by)?;
            Ok(hub.has_clients(&room, &user)?)
        });
        if done.await? {
            return Ok(());
        }
        let packages = self.claim_remote(mimi_room, sponsor, remote).await?;
        let (hub, room, sponsor) = (Arc::clone(&self.hub), mimi_room.to_owned(), sponsor.to_owned());
        let user = remote.to_owned();
        off_runtime(move || {
            let clients = packages.len();
            hub.add_for_hub(&room, &sponsor, || Ok(packages))?;
            tracing::info!(room, user, clients, "add of a user of another provider sent to the room's hub");
            Ok(())
        })
        .await
    }

    /// Claims `remote`'s key material for `mimi_room` from their provider, as `sponsor`.
    async fn claim_remote(
        &self,
        mimi_room: &str,
        sponsor: &str,
        remote: &str,
    ) -> Result<Vec<openmls::prelude::KeyPackage>, BridgeError> {
        let outbox = self.outbox.as_ref().ok_or(RemoteError::NoProvider)?;
        let uri = |id: &str| crate::translate::uri::user_uri(id).map_err(|_| BridgeError::Malformed("user ID"));
        let (requester_uri, target_uri) = (uri(sponsor)?, uri(remote)?);
        let room_uri = crate::translate::uri::room_uri_of(mimi_room).map_err(|_| BridgeError::Malformed("room ID"))?;
        let requester = crate::provider::peers::Requester::ephemeral(&requester_uri).map_err(RemoteError::from)?;
        let claimed = outbox
            .deliverer()
            .peers()
            .claim(&requester, &target_uri, Some(&room_uri))
            .await
            .map_err(RemoteError::from)?;
        let packages: Vec<_> = claimed.checked.into_iter().filter_map(|(_, checked)| checked.ok()).collect();
        if packages.is_empty() {
            let status = format!("{:?}", claimed.response.status);
            return Err(RemoteError::NoKeyMaterial { user: target_uri, status }.into());
        }
        Ok(packages)
    }
}
