//! `application/mimi-message-status` (draft-mahy-mimi-message-status-01): per-message delivery
//! and read reports, `[* [messageId, status]]`.

use super::cbor::{self, DecodeError, Reader};
use super::content::MessageId;

/// A reported status (0-6 defined; 7-255 kept as unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u8);

impl Status {
    /// 0.
    pub const UNREAD: Self = Self(0);
    /// 1.
    pub const DELIVERED: Self = Self(1);
    /// 2.
    pub const READ: Self = Self(2);
    /// 3.
    pub const EXPIRED: Self = Self(3);
    /// 4.
    pub const DELETED: Self = Self(4);
    /// 5.
    pub const HIDDEN: Self = Self(5);
    /// 6.
    pub const ERROR: Self = Self(6);

    /// The draft's name, or `unknown`.
    pub fn name(self) -> &'static str {
        ["unread", "delivered", "read", "expired", "deleted", "hidden", "error"]
            .get(usize::from(self.0))
            .copied()
            .unwrap_or("unknown")
    }

    /// Parses a name (or a number).
    pub fn from_name(name: &str) -> Option<Self> {
        ["unread", "delivered", "read", "expired", "deleted", "hidden", "error"]
            .iter()
            .position(|n| *n == name)
            .and_then(|i| u8::try_from(i).ok())
            .map(Self)
            .or_else(|| name.parse().ok().map(Self))
    }
}

/// A report: statuses for one or more messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusReport {
    /// (message, status) pairs in the order sent.
    pub entries: Vec<(MessageId, Status)>,
}

impl StatusReport {
    /// Decodes a report.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let count = r.array("report")?;
        let mut entries = Vec::with_capacity(count.min(4096));
        for i in 0..count {
            let field = format!("report[{i}]");
            let at = r.position();
            if r.array(&field)? != 2 {
                return Err(Reader::error(at, &field, "expected [messageId, status]"));
            }
            let at = r.position();
            let id: [u8; 32] = r.bytes(&format!("{field}.messageId"))?.try_into().map_err(|b: Vec<u8>| {
                Reader::error(at, &format!("{field}.messageId"), format!("32 bytes expected, found {}", b.len()))
            })?;
            let at = r.position();
            let status = u8::try_from(r.uint(&format!("{field}.status"))?)
                .map_err(|_| Reader::error(at, &format!("{field}.status"), "must be 0..255"))?;
            entries.push((MessageId(id), Status(status)));
        }
        r.finish()?;
        Ok(Self { entries })
    }

    /// The deterministic encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        cbor::write_head(&mut out, 4, self.entries.len() as u64);
        for (id, status) in &self.entries {
            cbor::write_head(&mut out, 4, 2);
            cbor::write_bytes(&mut out, &id.0);
            cbor::write_head(&mut out, 0, u64::from(status.0));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_name_their_statuses() {
        let report =
            StatusReport { entries: vec![(MessageId([1; 32]), Status::READ), (MessageId([2; 32]), Status(200))] };
        let bytes = report.encode();
        assert_eq!(StatusReport::decode(&bytes).unwrap(), report);
        assert_eq!(Status::READ.name(), "read");
        assert_eq!(Status(200).name(), "unknown");
        assert_eq!(Status::from_name("expired"), Some(Status::EXPIRED));
        let err = StatusReport::decode(&[0x81, 0x82, 0x41, 0x00, 0x02]).unwrap_err();
        assert!(err.to_string().contains("32 bytes"), "{err}");
    }
}
