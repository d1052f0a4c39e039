//! Creating a room with this server as its hub.
//!
//! The opening events follow what Matrix clients and eigen-server produce, so peers see a
//! familiar room: create, the creator's join, power levels (creator 100), join rules and
//! history visibility.

use ruma::{CanonicalJsonObject, CanonicalJsonValue, Int};

use crate::event::room_version::LINEARIZED_02;
use crate::event::{Chain, EventTemplate, RoomVersion, build_local};

use super::{Appended, Hub, HubError, RoomHead, lock};

/// How a new room is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomPreset {
    /// `m.room.join_rules` `join_rule`: `invite` (default), `public` or `knock`.
    pub join_rule: String,
    /// `m.room.history_visibility`: `shared` by default.
    pub history_visibility: String,
    /// An MLS-encrypted room: the creator's registered device creates the room's group, whose
    /// epoch-0 group info goes into the create event.
    pub encrypted: bool,
    /// The room version: Linearized Matrix 02 by default; portals use
    /// [`MIMI_HUB_1`](crate::event::room_version::MIMI_HUB_1), whose members may be users of
    /// other MIMI providers.
    pub version: &'static RoomVersion,
}

impl Default for RoomPreset {
    fn default() -> Self {
        Self {
            join_rule: "invite".into(),
            history_visibility: "shared".into(),
            encrypted: false,
            version: &LINEARIZED_02,
        }
    }
}

fn object(entries: Vec<(&str, CanonicalJsonValue)>) -> CanonicalJsonObject {
    entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

fn text(s: &str) -> CanonicalJsonValue {
    CanonicalJsonValue::String(s.to_owned())
}

fn int(i: i64) -> CanonicalJsonValue {
    CanonicalJsonValue::Integer(Int::new(i).unwrap_or_default())
}

/// A fresh room ID on `server`: 18 random letters (about 102 bits).
fn new_room_id(server: &str) -> Option<String> {
    Some(format!("!{}:{server}", crate::event::keys::random_letters(18)?))
}

impl Hub {
    /// Creates a room hubbed here, created by `creator` (a user of this server), and returns its
    /// ID and opening events once they are durable.
    pub async fn create_room(
        &self,
        creator: &str,
        preset: &RoomPreset,
        origin_server_ts: i64,
    ) -> Result<(String, Vec<Appended>), HubError> {
        let (room_id, pending) = self.submit_create_room(creator, preset, origin_server_ts)?;
        let mut out = Vec::with_capacity(pending.len());
        for p in pending {
            out.push(p.durable().await?);
        }
        Ok((room_id, out))
    }

    /// The same, blocking (for tools and threads outside an async runtime).
    pub fn create_room_blocking(
        &self,
        creator: &str,
        preset: &RoomPreset,
        origin_server_ts: i64,
    ) -> Result<(String, Vec<Appended>), HubError> {
        let (room_id, pending) = self.submit_create_room(creator, preset, origin_server_ts)?;
        let appended = pending.into_iter().map(super::PendingAppend::wait).collect::<Result<_, _>>()?;
        Ok((room_id, appended))
    }

    /// A fresh room ID on this server, for a caller that records it before creating the room
    /// (so that a retry after a crash opens the same room; see [`open_room_blocking`](Self::open_room_blocking)).
    pub fn new_room_id(&self) -> Result<String, HubError> {
        new_room_id(&self.server_name).ok_or_else(|| {
            HubError::Store(crate::store::StoreError::Corrupt(
                "the system random number generator is unavailable".into(),
            ))
        })
    }

    /// Opens the room `room_id` (an ID from [`new_room_id`](Self::new_room_id)) created by
    /// `creator`, idempotently: creates it if it does not exist; if an earlier attempt was cut
    /// short after the create event, appends whichever opening events it lacks. Blocks on the
    /// writes: call it from a blocking thread.
    pub fn open_room_blocking(
        &self,
        room_id: &str,
        creator: &str,
        preset: &RoomPreset,
        ts: i64,
    ) -> Result<(), HubError> {
        if self.store.short_room(room_id)?.is_none() && !lock(&self.rooms).contains(room_id) {
            let (_, pending) = self.submit_create_room_as(room_id.to_owned(), creator, preset, ts)?;
            for p in pending {
                p.wait()?;
            }
            return Ok(());
        }
        let head = self.head(room_id)?;
        for template in opening_events(room_id, creator, preset, ts) {
            let state_key = template.state_key.clone().unwrap_or_default();
            let already = lock(&head).chain.state().get(&template.event_type, &state_key).is_some();
            if !already {
                self.submit_local(template)?.wait()?;
            }
        }
        Ok(())
    }

    fn submit_create_room(
        &self,
        creator: &str,
        preset: &RoomPreset,
        ts: i64,
    ) -> Result<(String, Vec<super::PendingAppend>), HubError> {
        self.submit_create_room_as(self.new_room_id()?, creator, preset, ts)
    }

    fn submit_create_room_as(
        &self,
        room_id: String,
        creator: &str,
        preset: &RoomPreset,
        ts: i64,
    ) -> Result<(String, Vec<super::PendingAppend>), HubError> {
        if crate::event::meta::server_of(creator) != self.server_name {
            return Err(HubError::NotLocalSender { sender: creator.to_owned(), server: self.server_name.clone() });
        }
        let group = preset.encrypted.then(|| self.new_group(creator, &room_id)).transpose()?;
        let mut create_content = object(vec![("room_version", text(preset.version.id))]);
        if let Some((_, encryption)) = &group {
            create_content.insert("encryption".to_owned(), encryption.to_json());
        }
        let create = build_local(
            preset.version,
            state_event(&room_id, creator, ts, "m.room.create", create_content),
            &[],
            &[],
            &self.key,
            &self.server_name,
        )?;
        let chain = Chain::for_create(&create)?;
        let head = self.insert_head(&room_id, RoomHead::new(self.store.allocate_short_room(), chain))?;
        let mut head = lock(&head);
        if let Some((member, encryption)) = group {
            Self::install_group(&mut head, member, &create, &encryption)?;
        }
        let mut pending = vec![self.append_built(&mut head, &create, None, crate::store::Batch::new())?];
        drop(head);
        for t in opening_events(&room_id, creator, preset, ts) {
            pending.push(self.submit_local(t)?);
        }
        Ok((room_id, pending))
    }
}

/// The events after the create event that open a room: the creator's join, power levels (creator
/// 100), join rules and history visibility. In a MIMI room every participant may invite (as in a
/// Matrix private chat): a follower's user adds someone through the hub (`hub::adds`).
fn opening_events(room_id: &str, creator: &str, preset: &RoomPreset, ts: i64) -> Vec<EventTemplate> {
    let template = |event_type: &str, state_key: &str, content| {
        let mut event = state_event(room_id, creator, ts, event_type, content);
        event.state_key = Some(state_key.to_owned());
        event
    };
    let users = object(vec![(creator, int(100))]);
    vec![
        template("m.room.member", creator, object(vec![("membership", text("join"))])),
        template(
            "m.room.power_levels",
            "",
            object(vec![
                ("ban", int(50)),
                ("events_default", int(0)),
                ("invite", int(if preset.version.hub_signs() { 0 } else { 50 })),
                ("kick", int(50)),
                ("redact", int(50)),
                ("state_default", int(50)),
                ("users", CanonicalJsonValue::Object(users)),
                ("users_default", int(0)),
            ]),
        ),
        template("m.room.join_rules", "", object(vec![("join_rule", text(&preset.join_rule))])),
        template(
            "m.room.history_visibility",
            "",
            object(vec![("history_visibility", text(&preset.history_visibility))]),
        ),
    ]
}

/// A state event of `creator`'s with an empty state key.
fn state_event(room_id: &str, creator: &str, ts: i64, event_type: &str, content: CanonicalJsonObject) -> EventTemplate {
    EventTemplate {
        room_id: room_id.to_owned(),
        event_type: event_type.to_owned(),
        sender: creator.to_owned(),
        state_key: Some(String::new()),
        content,
        origin_server_ts: ts,
    }
}
