//! `groupInfo/{roomId}` (a participant's provider → this hub): the room's current group for a
//! new client to join by external commit, encrypted to the key in the request (`hub::group_info`).
//! Answered 200 with a `GroupInfoResponse`: `success`, `notAuthorized` or `noSuchRoom`.

use std::sync::Arc;

use crate::http::{MatrixError, Response};
use crate::mimi::protocol::group_info::GroupInfoRefusal;
use crate::mimi::protocol::{GroupInfoRequest, GroupInfoResponse, Wire};

use super::service::{Admitted, Provider, binary, blocking, malformed};

pub(super) async fn serve(provider: &Provider, room: &str, admitted: Admitted<'_>) -> Result<Response, MatrixError> {
    let request = GroupInfoRequest::decode(admitted.body).map_err(|e| malformed(&e))?;
    let response = match crate::translate::uri::room_id_of(room) {
        Ok(room_id) => {
            let (hub, from) = (Arc::clone(&provider.hub), admitted.from.to_owned());
            blocking(move || hub.group_info_for(&room_id, &from, &request)).await?
        }
        Err(_) => GroupInfoResponse { room_id: room.to_owned(), result: Err(GroupInfoRefusal::NoSuchRoom) },
    };
    Ok(binary(hyper::StatusCode::OK, response.encode()))
}
