//! Admitting a user of this server into a room hubbed here, in one call: membership, device,
//! key package, the commit adding the device, and the device's client joining from the Welcome.
//!
//! Every step is durable before the next and each is skipped when already done, so a crash
//! between any two resumes where it stopped: a device added to the group whose client had not
//! joined yet joins from the stored Welcome (it cannot be added twice). It blocks on its writes:
//! call it from a blocking thread, never from an async task.

use crate::event::EventTemplate;

use super::{Hub, HubError};

/// Who is admitted, by whom, with which device.
#[derive(Debug, Clone, Copy)]
pub struct Admission<'a> {
    /// The room (hubbed here, MLS-encrypted).
    pub room_id: &'a str,
    /// The user of this server to admit.
    pub user_id: &'a str,
    /// The device the user's client uses.
    pub device_id: &'a str,
    /// A joined member of this server with a client in the group, who invites and commits.
    pub sponsor: &'a str,
    /// `origin_server_ts` of the events.
    pub ts: i64,
}

/// An `m.room.member` event of `sender` setting `target`'s membership.
pub fn member_event(room: &str, sender: &str, target: &str, membership: &str, ts: i64) -> EventTemplate {
    let value = ruma::CanonicalJsonValue::String(membership.to_owned());
    EventTemplate {
        room_id: room.to_owned(),
        event_type: "m.room.member".into(),
        sender: sender.to_owned(),
        state_key: Some(target.to_owned()),
        content: ruma::CanonicalJsonObject::from([("membership".to_owned(), value)]),
        origin_server_ts: ts,
    }
}

impl Hub {
    /// Makes `a.user_id` a joined member of the room with a client in its group (see the module
    /// documentation). Does nothing if it already is one.
    pub fn admit_local_user(&self, a: &Admission<'_>) -> Result<(), HubError> {
        if self.in_group(a.room_id, a.user_id)? {
            return Ok(());
        }
        if self.membership(a.room_id, a.user_id)?.as_deref() != Some("join") {
            self.submit_local(member_event(a.room_id, a.sponsor, a.user_id, "invite", a.ts))?.wait()?;
            self.submit_local(member_event(a.room_id, a.user_id, a.user_id, "join", a.ts))?.wait()?;
        }
        if self.join_from_stored_welcome(a)? {
            return Ok(());
        }
        let package = self.directories.fresh_key_package(a.user_id, a.device_id, None)?;
        let commit = self.commit_add(a.room_id, a.sponsor, &[package], a.ts)?.wait()?;
        let welcome = self
            .welcome(&commit.event_id)?
            .ok_or_else(|| HubError::MlsClient("the commit adding the device left no Welcome".into()))?;
        self.join_group(a.room_id, a.user_id, &welcome.message)
    }

    /// A crash after the commit adding the device but before its client joined: join from the
    /// Welcome stored with that commit.
    fn join_from_stored_welcome(&self, a: &Admission<'_>) -> Result<bool, HubError> {
        for (_, json) in self.store.welcomes()? {
            let Some(welcome) = crate::mls::member::parse_welcome(&json) else { continue };
            if welcome.targets.iter().any(|(u, d)| u == a.user_id && d == a.device_id)
                && self.join_group(a.room_id, a.user_id, &welcome.message).is_ok()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
