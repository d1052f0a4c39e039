//! `update/{roomId}` (follower → this hub): a commit by a device of a follower provider's user
//! (or an external commit by a new device of one, after `groupInfo`), with the group after it
//! and the Welcome for the devices it adds. Answered 200 with an
//! `UpdateRoomResponse`: `success` with the hub's timestamp once the commit and its fan-out are
//! durable, `wrongEpoch` with the room's epoch, `notAllowed`, or `invalidProposal` naming the
//! rule a proposal broke. Proposals without a commit are taken only when they are a user's
//! clients proposing their own removal: the user leaves and a client of this server commits
//! the removal (`hub::leave`); the hub holds no proposals for a later committer yet.

use std::sync::Arc;

use crate::http::{MatrixError, Response};
use crate::hub::{GROUP_INFO_MESSAGE, Verdict};
use crate::mimi::protocol::{
    GroupInfoOption, HandshakeBundle, UpdateOutcome, UpdateRoomResponse, WELCOME_MESSAGE, Wire,
};

use super::service::{Admitted, Provider, binary, blocking, malformed};

pub(super) async fn serve(provider: &Provider, room: &str, admitted: Admitted<'_>) -> Result<Response, MatrixError> {
    let bundle = HandshakeBundle::decode(admitted.body).map_err(|e| malformed(&e))?;
    let answer = |outcome: UpdateOutcome, why: &str| {
        let response = UpdateRoomResponse { outcome, error_description: why.to_owned() };
        Ok(binary(hyper::StatusCode::OK, response.encode()))
    };
    let Ok(room_id) = crate::translate::uri::room_id_of(room) else {
        return answer(UpdateOutcome::NotAllowed, "not a room URI");
    };
    let (hub, from) = (Arc::clone(&provider.hub), admitted.from.to_owned());
    let verdict = match bundle {
        HandshakeBundle::Proposals { proposal, more } => {
            let proposals = [vec![proposal], more].concat();
            blocking(move || hub.submit_remote_leave(&room_id, &from, &proposals)).await?
        }
        HandshakeBundle::Commit { commit, welcome, group_info, .. } => {
            let GroupInfoOption::Full(group_info) = group_info else {
                let why = "this hub needs the full GroupInfo, with its ratchet_tree extension";
                return answer(UpdateOutcome::NotAllowed, why);
            };
            let group_info = [GROUP_INFO_MESSAGE.as_slice(), &group_info].concat();
            // Kept (and fanned out) as an MLSMessage, whichever way it came.
            let welcome =
                welcome.map(|w| if w.starts_with(&WELCOME_MESSAGE) { w } else { [&WELCOME_MESSAGE[..], &w].concat() });
            blocking(move || hub.submit_remote_commit(&room_id, &from, &commit, &group_info, welcome.as_deref()))
                .await?
        }
    };
    let (outcome, why) = match verdict {
        Verdict::Accepted { timestamp, pending, .. } => {
            if let Some(pending) = pending {
                super::submit::durable(pending).await?;
            }
            (UpdateOutcome::Success(timestamp), String::new())
        }
        Verdict::WrongEpoch(epoch) => (UpdateOutcome::WrongEpoch(epoch), "the room is at another epoch".into()),
        Verdict::NotAllowed(why) => (UpdateOutcome::NotAllowed, why),
        Verdict::InvalidProposal(why) => (UpdateOutcome::InvalidProposal(Vec::new()), why),
    };
    if !matches!(outcome, UpdateOutcome::Success(_)) {
        tracing::info!(from = admitted.from, room, why, "update refused");
    }
    answer(outcome, &why)
}
