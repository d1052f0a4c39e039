//! The MIMI room state a group carries in its `GroupContext`: the participant list (0x0022) and
//! the room metadata (0x0023) in the `app_data_dictionary` extension, changed only by
//! `AppDataUpdate` proposals inside commits.
//!
//! The room's log stays the one source of truth for membership: at every commit of a room that
//! has a participant list, the list after the commit must be exactly the log's membership before
//! it ([`roster`]: `join` is a participant, `ban` is the "banned" role, anything else is not
//! listed). Clients of this server build each commit's update from the log ([`list_change`]),
//! and the hub, followers and `log verify` refuse a commit whose list differs — so the
//! `GroupContext` and the log can never tell two stories. Rooms created before the list existed
//! have no dictionary and are left as they were.
//!
//! Roles: room policy reserves index 1 for "banned"; ordinary participants are index 2. Without
//! a roles-list component the hub gives the indices no other meaning.

use std::collections::BTreeMap;

use openmls::component::ComponentData;
use openmls::extensions::{AppDataDictionary, AppDataDictionaryExtension};
use openmls::group::{AppDataDictionaryUpdater, AppDataUpdates};
use openmls::messages::proposals::{AppDataUpdateOperation, AppDataUpdateProposal};
use openmls::prelude::{
    Extension, ExtensionType, Extensions, GroupContext, Proposal, ProposalType, RequiredCapabilitiesExtension,
};

use crate::event::state::RoomState;
use crate::mimi::frank::{FRANK_AAD, FRANKING_AGENT, FrankingAgent};
use crate::mimi::protocol::room_state::{PARTICIPANT_LIST, ParticipantListError, ROOM_METADATA};
use crate::mimi::protocol::{ParticipantList, ParticipantListUpdate, RoomMetadata, UserRole, Wire, WireError};

/// The `safe_aad` component: the Safe AAD items every member must understand.
const SAFE_AAD: u16 = 0x0002;

/// A participant list as user URI → role.
pub type Roster = BTreeMap<Vec<u8>, u32>;

/// Role index of a banned user (room policy reserves it).
pub const ROLE_BANNED: u32 = 1;
/// Role index of an ordinary participant.
pub const ROLE_PARTICIPANT: u32 = 2;

/// Why a commit's room-state change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomDataError {
    /// A component's data or update does not decode.
    #[error("component {component:#06x}: {error}")]
    Malformed {
        /// The component.
        component: u16,
        /// What failed.
        error: WireError,
    },
    /// The participant-list update does not apply to the list.
    #[error("participant list: {0}")]
    ParticipantList(#[from] ParticipantListError),
    /// A component this bridge does not keep, or an operation it does not allow.
    #[error("component {component:#06x}: {reason}")]
    NotAllowed {
        /// The component.
        component: u16,
        /// Why.
        reason: &'static str,
    },
}

fn malformed(component: u16) -> impl Fn(WireError) -> RoomDataError {
    move |error| RoomDataError::Malformed { component, error }
}

/// The user URI a participant entry names for a log's user ID.
pub fn participant(user_id: &str) -> Vec<u8> {
    crate::translate::uri::user_uri(user_id).unwrap_or_else(|_| user_id.to_owned()).into_bytes()
}

/// The participant list the log's membership calls for (see the module documentation).
pub fn roster(state: &RoomState) -> Roster {
    state
        .iter()
        .filter(|((event_type, _), _)| *event_type == "m.room.member")
        .filter_map(|((_, user), _)| match state.membership(user) {
            Some("join") => Some((participant(user), ROLE_PARTICIPANT)),
            Some("ban") => Some((participant(user), ROLE_BANNED)),
            _ => None,
        })
        .collect()
}

/// The capabilities every client of a room with a participant list must have.
pub fn required_capabilities() -> RequiredCapabilitiesExtension {
    RequiredCapabilitiesExtension::new(&[ExtensionType::AppDataDictionary], &[ProposalType::AppDataUpdate], &[])
}

/// The `GroupContext` extensions of a new MIMI room: the hub (its domain and server key) as
/// external sender, the capabilities
/// the room state needs, and the dictionary with `creator` the only participant, the room's
/// URI in its metadata, the hub as franking agent and its franking tag as Safe AAD.
pub fn new_room_extensions(
    hub_domain: &str,
    hub_key: [u8; 32],
    creator: &str,
    room_uri: &str,
) -> Result<Extensions<GroupContext>, openmls::prelude::InvalidExtensionError> {
    let list = ParticipantList(vec![UserRole { user: participant(creator), role: ROLE_PARTICIPANT }]);
    let metadata = RoomMetadata { room_uri: room_uri.as_bytes().to_vec(), ..Default::default() };
    let mut dictionary = AppDataDictionary::new();
    dictionary.insert(PARTICIPANT_LIST, list.encode());
    dictionary.insert(ROOM_METADATA, metadata.encode());
    // The hub franks messages with the key it signs as external sender with; senders put their
    // franking tag in the Safe AAD, which the `safe_aad` component (2) lists.
    let agent = FrankingAgent { key: hub_key.to_vec(), identity: format!("mimi://{hub_domain}").into_bytes() };
    dictionary.insert(FRANKING_AGENT, agent.encode());
    dictionary.insert(SAFE_AAD, [&[2u8][..], &FRANK_AAD.to_be_bytes()].concat());
    Extensions::from_vec(vec![
        Extension::ExternalSenders(vec![super::hub_sender(hub_domain, hub_key)]),
        Extension::RequiredCapabilities(required_capabilities()),
        Extension::AppDataDictionary(AppDataDictionaryExtension::new(dictionary)),
    ])
}

/// The participant list in `extensions`, if the room has one.
pub fn participants(extensions: &Extensions<GroupContext>) -> Result<Option<ParticipantList>, RoomDataError> {
    let Some(data) = extensions.app_data_dictionary().and_then(|d| d.dictionary().get(&PARTICIPANT_LIST)) else {
        return Ok(None);
    };
    ParticipantList::decode(data).map(Some).map_err(malformed(PARTICIPANT_LIST))
}

/// The room's franking agent, if its `GroupContext` names one.
pub fn franking_agent(extensions: &Extensions<GroupContext>) -> Option<FrankingAgent> {
    let data = extensions.app_data_dictionary()?.dictionary().get(&FRANKING_AGENT)?;
    FrankingAgent::decode(data).ok()
}

/// The `AppDataUpdate` proposal that brings a room's participant list to `target`; `None` when
/// the room has no list or it is already there.
pub fn list_change(extensions: &Extensions<GroupContext>, target: &Roster) -> Result<Option<Proposal>, RoomDataError> {
    let Some(update) = participants(extensions)?.and_then(|list| list.update_to(target)) else { return Ok(None) };
    let proposal = AppDataUpdateProposal::update(PARTICIPANT_LIST, update.encode());
    Ok(Some(Proposal::AppDataUpdate(Box::new(proposal))))
}

/// The dictionary changes a commit's `AppDataUpdate` proposals make: at most one participant-list
/// update (applied to the list), at most one room-metadata update (replacing it, keeping the
/// room's URI); nothing removed, no other component.
pub fn resolve<'a>(
    mut updater: AppDataDictionaryUpdater<'_>,
    proposals: impl Iterator<Item = &'a AppDataUpdateProposal>,
) -> Result<Option<AppDataUpdates>, RoomDataError> {
    let mut seen = Vec::new();
    for proposal in proposals {
        let component = proposal.component_id();
        let AppDataUpdateOperation::Update(data) = proposal.operation() else {
            return Err(RoomDataError::NotAllowed { component, reason: "room state is never removed" });
        };
        if seen.contains(&component) {
            return Err(RoomDataError::NotAllowed { component, reason: "updated twice in one commit" });
        }
        seen.push(component);
        let old = updater
            .old_value(component)
            .ok_or(RoomDataError::NotAllowed { component, reason: "the room has no such component" })?;
        let new = match component {
            PARTICIPANT_LIST => {
                let update = ParticipantListUpdate::decode(data.as_slice()).map_err(malformed(component))?;
                let list = ParticipantList::decode(old).map_err(malformed(component))?;
                list.apply(&update)?.encode()
            }
            ROOM_METADATA => {
                let metadata = RoomMetadata::decode(data.as_slice()).map_err(malformed(component))?;
                let before = RoomMetadata::decode(old).map_err(malformed(component))?;
                if metadata.room_uri != before.room_uri {
                    return Err(RoomDataError::NotAllowed { component, reason: "a room keeps its URI" });
                }
                data.as_slice().to_vec()
            }
            _ => return Err(RoomDataError::NotAllowed { component, reason: "not a component this hub keeps" }),
        };
        updater.set(ComponentData::from_parts(component, new.into()));
    }
    Ok(updater.changes())
}
