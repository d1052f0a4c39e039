//! The room state a MIMI room keeps in its group's `GroupContext` (`app_data_dictionary`
//! components, draft-ietf-mimi-protocol-06 §"Participant List" and §"Room Metadata"), and the
//! `AppDataUpdate` bodies that change it.
//!
//! A participant-list update names users by their index in the list *before* the update, so
//! applying one is a pure function of the old list; [`ParticipantList::apply`] enforces the
//! draft's one rule (no user touched twice) and what a list must be (no user twice, no role 0,
//! which room policy keeps for "not in the list").

use std::collections::BTreeMap;

use super::tls::{Reader, Wire, WireError, Writer};

/// Component ID of the participant list (-06 IANA section).
pub const PARTICIPANT_LIST: u16 = 0x0022;
/// Component ID of the room metadata.
pub const ROOM_METADATA: u16 = 0x0023;

/// `UserRolePair`: a participant (user URI bytes) and their role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRole {
    /// `opaque user<V>`: the user's URI.
    pub user: Vec<u8>,
    /// `uint32 role_index`.
    pub role: u32,
}

/// `ParticipantListData`: the participants in list order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParticipantList(pub Vec<UserRole>);

/// `ParticipantListUpdate`, applied in the draft's order: role changes, removals, additions
/// (appended).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParticipantListUpdate {
    /// `UserindexRolePair changedRoleParticipants<V>`: (index in the old list, new role).
    pub changed_roles: Vec<(u32, u32)>,
    /// `uint32 removedIndices<V>`: indices in the old list.
    pub removed: Vec<u32>,
    /// `UserRolePair addedParticipants<V>`.
    pub added: Vec<UserRole>,
}

/// Why a participant-list update does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParticipantListError {
    /// An index past the end of the list.
    #[error("index {0} is not in the participant list")]
    NoSuchIndex(u32),
    /// The update touches one user more than once (draft: the commit is invalid).
    #[error("the update changes {0} more than once")]
    UserTwice(String),
    /// An added user is already a participant.
    #[error("{0} is already a participant")]
    AlreadyListed(String),
    /// Role 0 means "not a participant"; it is never listed.
    #[error("role 0 given to {0}")]
    RoleZero(String),
}

fn read_pair(r: &mut Reader<'_>, name: &str) -> Result<UserRole, WireError> {
    let user = r.opaque(&format!("{name}.user"))?.to_vec();
    Ok(UserRole { user, role: r.u32(&format!("{name}.role_index"))? })
}

fn write_pairs(w: &mut Writer, pairs: &[UserRole]) {
    w.vector(|w| {
        for pair in pairs {
            w.opaque(&pair.user);
            w.u32(pair.role);
        }
    });
}

impl Wire for ParticipantList {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Self(r.list("participants", read_pair)?))
    }

    fn write(&self, w: &mut Writer) {
        write_pairs(w, &self.0);
    }
}

impl Wire for ParticipantListUpdate {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let changed_roles = r.list("changedRoleParticipants", |r, name| {
            Ok((r.u32(&format!("{name}.user_index"))?, r.u32(&format!("{name}.role_index"))?))
        })?;
        let removed = r.list("removedIndices", Reader::u32)?;
        let added = r.list("addedParticipants", read_pair)?;
        Ok(Self { changed_roles, removed, added })
    }

    fn write(&self, w: &mut Writer) {
        w.vector(|w| {
            for (index, role) in &self.changed_roles {
                w.u32(*index);
                w.u32(*role);
            }
        });
        w.vector(|w| self.removed.iter().for_each(|i| w.u32(*i)));
        write_pairs(w, &self.added);
    }
}

fn name(user: &[u8]) -> String {
    String::from_utf8_lossy(user).into_owned()
}

impl ParticipantList {
    /// The list as user → role.
    pub fn roles(&self) -> BTreeMap<Vec<u8>, u32> {
        self.0.iter().map(|p| (p.user.clone(), p.role)).collect()
    }

    /// The list after `update` (see the module documentation).
    pub fn apply(&self, update: &ParticipantListUpdate) -> Result<Self, ParticipantListError> {
        let mut touched = std::collections::BTreeSet::new();
        let mut touch = |user: &[u8]| {
            if touched.insert(user.to_vec()) { Ok(()) } else { Err(ParticipantListError::UserTwice(name(user))) }
        };
        let mut list = self.0.clone();
        let len = list.len();
        let index = |i: u32| usize::try_from(i).ok().filter(|i| *i < len).ok_or(ParticipantListError::NoSuchIndex(i));
        for (i, role) in &update.changed_roles {
            let at = index(*i)?;
            touch(&list[at].user)?;
            if *role == 0 {
                return Err(ParticipantListError::RoleZero(name(&list[at].user)));
            }
            list[at].role = *role;
        }
        let mut removed = vec![false; list.len()];
        for i in &update.removed {
            let at = index(*i)?;
            touch(&list[at].user)?;
            removed[at] = true;
        }
        let mut kept = removed.iter();
        list.retain(|_| !kept.next().copied().unwrap_or(false));
        for pair in &update.added {
            touch(&pair.user)?;
            if pair.role == 0 {
                return Err(ParticipantListError::RoleZero(name(&pair.user)));
            }
            if list.iter().any(|p| p.user == pair.user) {
                return Err(ParticipantListError::AlreadyListed(name(&pair.user)));
            }
            list.push(pair.clone());
        }
        Ok(Self(list))
    }

    /// The update that turns this list into `target` (user → role), `None` if it already is.
    /// Additions come in `target`'s order, so the result is a function of the two alone.
    pub fn update_to(&self, target: &BTreeMap<Vec<u8>, u32>) -> Option<ParticipantListUpdate> {
        let mut update = ParticipantListUpdate::default();
        for (i, pair) in (0u32..).zip(&self.0) {
            match target.get(&pair.user) {
                None => update.removed.push(i),
                Some(role) if *role != pair.role => update.changed_roles.push((i, *role)),
                Some(_) => {}
            }
        }
        let listed = self.roles();
        update.added = target
            .iter()
            .filter(|(user, _)| !listed.contains_key(*user))
            .map(|(user, role)| UserRole { user: user.clone(), role: *role })
            .collect();
        (update != ParticipantListUpdate::default()).then_some(update)
    }
}

/// `RoomMetaData` (the room metadata component; an update replaces it whole). Descriptions are
/// kept as (media type, language tag, content).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomMetadata {
    /// `Uri room_uri`.
    pub room_uri: Vec<u8>,
    /// `UTF8String room_name`.
    pub name: Vec<u8>,
    /// `RichDescription room_descriptions<V>`.
    pub descriptions: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
    /// `Uri room_avatar`.
    pub avatar: Vec<u8>,
    /// `UTF8String room_subject`.
    pub subject: Vec<u8>,
    /// `UTF8String room_mood`.
    pub mood: Vec<u8>,
}

impl Wire for RoomMetadata {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let room_uri = r.opaque("room_uri")?.to_vec();
        let name = r.opaque("room_name")?.to_vec();
        let descriptions = r.list("room_descriptions", |r, name| {
            let media_type = r.opaque(&format!("{name}.media_type"))?.to_vec();
            let language = r.opaque(&format!("{name}.language_tag"))?.to_vec();
            Ok((media_type, language, r.opaque(&format!("{name}.description_content"))?.to_vec()))
        })?;
        let avatar = r.opaque("room_avatar")?.to_vec();
        let subject = r.opaque("room_subject")?.to_vec();
        Ok(Self { room_uri, name, descriptions, avatar, subject, mood: r.opaque("room_mood")?.to_vec() })
    }

    fn write(&self, w: &mut Writer) {
        w.opaque(&self.room_uri);
        w.opaque(&self.name);
        w.vector(|w| {
            for (media_type, language, content) in &self.descriptions {
                w.opaque(media_type);
                w.opaque(language);
                w.opaque(content);
            }
        });
        w.opaque(&self.avatar);
        w.opaque(&self.subject);
        w.opaque(&self.mood);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(user: &str, role: u32) -> UserRole {
        UserRole { user: user.as_bytes().to_vec(), role }
    }

    #[test]
    fn the_drafts_order_role_changes_then_removals_then_additions() {
        let list = ParticipantList(vec![pair("a", 2), pair("b", 2), pair("c", 2)]);
        let update = ParticipantListUpdate { changed_roles: vec![(2, 1)], removed: vec![0], added: vec![pair("d", 2)] };
        assert_eq!(list.apply(&update).unwrap(), ParticipantList(vec![pair("b", 2), pair("c", 1), pair("d", 2)]));
        // Bytes: changed <08: 00000002 00000001>, removed <04: 00000000>, added <06: 01 'd' 00000002>.
        let bytes = update.encode();
        assert_eq!(hex::encode(&bytes), "080000000200000001040000000006016400000002");
        assert_eq!(ParticipantListUpdate::decode(&bytes).unwrap(), update);
        assert_eq!(ParticipantList::decode(&list.encode()).unwrap(), list);
    }

    #[test]
    fn refused_updates_name_what_is_wrong() {
        let list = ParticipantList(vec![pair("a", 2), pair("b", 2)]);
        let twice = ParticipantListUpdate { changed_roles: vec![(1, 1)], removed: vec![1], ..Default::default() };
        assert_eq!(list.apply(&twice), Err(ParticipantListError::UserTwice("b".into())));
        let past = ParticipantListUpdate { removed: vec![2], ..Default::default() };
        assert_eq!(list.apply(&past), Err(ParticipantListError::NoSuchIndex(2)));
        let again = ParticipantListUpdate { added: vec![pair("a", 2)], ..Default::default() };
        assert_eq!(list.apply(&again), Err(ParticipantListError::AlreadyListed("a".into())));
        let zero = ParticipantListUpdate { added: vec![pair("c", 0)], ..Default::default() };
        assert_eq!(list.apply(&zero), Err(ParticipantListError::RoleZero("c".into())));
        // Removed and added back in one update is one user touched twice.
        let back = ParticipantListUpdate { removed: vec![0], added: vec![pair("a", 2)], ..Default::default() };
        assert_eq!(list.apply(&back), Err(ParticipantListError::UserTwice("a".into())));
    }

    #[test]
    fn update_to_reaches_the_target_and_nothing_when_there() {
        let list = ParticipantList(vec![pair("a", 2), pair("b", 2), pair("c", 2)]);
        let target: BTreeMap<_, _> =
            [(b"a".to_vec(), 2), (b"c".to_vec(), 1), (b"e".to_vec(), 2), (b"d".to_vec(), 2)].into_iter().collect();
        let update = list.update_to(&target).unwrap();
        assert_eq!(list.apply(&update).unwrap().roles(), target);
        assert_eq!(update.added, vec![pair("d", 2), pair("e", 2)]);
        assert_eq!(list.apply(&update).unwrap().update_to(&target), None);
    }

    #[test]
    fn room_metadata_round_trips_and_refuses_a_short_body() {
        let metadata = RoomMetadata {
            room_uri: b"mimi://a.example/r/x".to_vec(),
            name: b"Planning".to_vec(),
            descriptions: vec![(Vec::new(), b"en".to_vec(), b"what we plan".to_vec())],
            ..Default::default()
        };
        let bytes = metadata.encode();
        assert_eq!(RoomMetadata::decode(&bytes).unwrap(), metadata);
        let err = RoomMetadata::decode(&bytes[..bytes.len() - 1]).unwrap_err();
        assert_eq!(err.field, "room_mood");
    }
}
