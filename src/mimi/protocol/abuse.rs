//! `reportAbuse/{roomId}` (to the hub): who reports whom, why, and optionally the messages with
//! the franks that prove the hub accepted them from that sender. No body comes back.

use super::common::AppDataDictionary;
use super::submit::Frank;
use super::tls::{Reader, Wire, WireError, Writer};

/// `AbusiveMessage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbusiveMessage {
    /// `opaque message_content<V>` (a MIMI content message).
    pub content: Vec<u8>,
    /// `Frank frank`.
    pub frank: Frank,
    /// `uint64 accepted_timestamp`.
    pub accepted_timestamp: u64,
}

/// `AbuseReport`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbuseReport {
    /// `IdentifierUri reportingUser` (empty: anonymous).
    pub reporting_user: String,
    /// `IdentifierUri allegedAbuserUri`.
    pub alleged_abuser: String,
    /// `AbuseType reasonCode`. -06 defines no value but `reserved(0)` yet (its taxonomy is a
    /// TODO), so any value is kept as sent.
    pub reason_code: u8,
    /// `opaque note<V>` (UTF-8).
    pub note: String,
    /// `AbusiveMessage messages<V>`.
    pub messages: Vec<AbusiveMessage>,
    /// `AppDataDictionary abuse_extensions` (new in -06).
    pub extensions: AppDataDictionary,
}

impl Wire for AbuseReport {
    fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let reporting_user = r.text("reportingUser")?;
        let alleged_abuser = r.text("allegedAbuserUri")?;
        let reason_code = r.u8("reasonCode")?;
        let note = r.text("note")?;
        let messages = r.list("messages", |r, name| {
            Ok(AbusiveMessage {
                content: r.opaque(&format!("{name}.message_content"))?.to_vec(),
                frank: Frank::read(r)?,
                accepted_timestamp: r.u64(&format!("{name}.accepted_timestamp"))?,
            })
        })?;
        let extensions = AppDataDictionary::read(r, "abuse_extensions")?;
        Ok(Self { reporting_user, alleged_abuser, reason_code, note, messages, extensions })
    }

    fn write(&self, w: &mut Writer) {
        w.opaque(self.reporting_user.as_bytes());
        w.opaque(self.alleged_abuser.as_bytes());
        w.u8(self.reason_code);
        w.opaque(self.note.as_bytes());
        w.vector(|w| {
            for m in &self.messages {
                w.opaque(&m.content);
                m.frank.write(w);
                w.u64(m.accepted_timestamp);
            }
        });
        self.extensions.write(w);
    }
}
