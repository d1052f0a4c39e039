//! Reading the logs, for what works from them above the hub (the Matrix side's follower, later
//! the fan-out to providers): pages of a room's log in order, and the plaintexts this server's
//! clients kept. Reads only what is durable; the appends themselves stay the linearizer's.

use crate::store::ShortRoomId;

use super::{Hub, HubError};

impl Hub {
    /// Up to `limit` events of a room's log from position `from`, in order: (position, PDU bytes).
    pub fn log_page(&self, room: ShortRoomId, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, HubError> {
        let mut page = Vec::new();
        for item in self.store.pdus(room, from)?.take(limit) {
            page.push(item?);
        }
        Ok(page)
    }

    /// The MIMI content of an `m.room.encrypted` event, as this server's client encrypted or
    /// decrypted it.
    pub fn plaintext(&self, event_id: &str) -> Result<Option<Vec<u8>>, HubError> {
        Ok(self.store.plaintext(event_id)?)
    }

    /// The room ID behind a short room ID (as announced by the store's advances).
    pub fn room_id_of(&self, room: ShortRoomId) -> Result<Option<String>, HubError> {
        Ok(self.store.room_id_of(room)?)
    }

    /// The short room ID of a room this server has.
    pub fn short_room(&self, room_id: &str) -> Result<Option<ShortRoomId>, HubError> {
        Ok(self.store.short_room(room_id)?)
    }
}
