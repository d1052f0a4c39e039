//! The bot's management room: a direct chat with `@<bot>:<domain>` where an admin or user types
//! commands, as in the bridges they already run. Inviting the bot to a direct chat makes one;
//! inviting it (or a ghost) to any other room makes that room a portal.

use serde_json::{Value, json};

use super::bridge::{Bridge, BridgeError};
use crate::store::Batch;

const HELP: &str = "Commands: help · ping (round trip to the homeserver) · version · rooms (this bridge's portals) · \
                    open (a new portal room, with you in it) · invite <MIMI user URI> (a new portal room with \
                    you and that user of another provider) · consent grant|revoke <MIMI user URI> [<room URI>] \
                    (whether that user of another provider may fetch your key material to add you to rooms; \
                    their provider is told)";

impl Bridge {
    /// Joins a direct chat the bot was invited to and records it as a management room.
    pub(super) async fn open_management(&self, seq: u64, room: &str, inviter: &str) -> Result<(), BridgeError> {
        if self.mimi_user(inviter).is_none() {
            return self.drop_event(seq, "invite_from_another_server").await;
        }
        self.homeserver.join(room, None).await?;
        // Clients make direct chats encrypted: the bridge's device reads the commands there.
        self.join_device(room, None).await?;
        let mut batch = Batch::new();
        batch.management_room(room, json!({"user": inviter}).to_string().as_bytes());
        self.store().submit(batch).wait().await?;
        self.reply(seq, room, &format!("Hello! I bridge this homeserver to MIMI rooms. {HELP}")).await?;
        self.finish(seq, Batch::new()).await
    }

    /// Runs one command from a management room and answers it there.
    pub(super) async fn command(&self, seq: u64, room: &str, sender: &str, body: &str) -> Result<(), BridgeError> {
        if self.mimi_user(sender).is_none() {
            return self.drop_event(seq, "command_from_another_server").await;
        }
        let mut batch = Batch::new();
        let mut outgoing = Vec::new();
        let answer = match body.trim().trim_start_matches("!mimi").trim() {
            "help" | "" => HELP.to_owned(),
            "ping" => match self.homeserver.ping(Some(&format!("cmd.{seq}"))).await {
                Ok(rtt) => format!("pong — the homeserver reached the bridge in {} ms", rtt.as_millis()),
                Err(e) => format!("the homeserver could not reach the bridge: {e}"),
            },
            "version" => format!(
                "mimi-bridge {} · MIMI rooms {} (Linearized Matrix {}) · MLS {}",
                env!("CARGO_PKG_VERSION"),
                crate::event::room_version::MIMI_HUB_1.id,
                crate::event::room_version::LINEARIZED_02.id,
                crate::mls::events::ALGORITHM
            ),
            "rooms" => self.rooms_list()?,
            "open" => {
                let room = self.open_command_room(seq, sender).await?;
                self.create_portal(&room, sender, None, None).await?;
                format!("Opened a portal: {room} (you are invited).")
            }
            invite if invite.starts_with("invite") => self.invite_command(seq, sender, invite).await?,
            consent if consent.starts_with("consent") => {
                self.consent_command(consent, sender, &mut batch, &mut outgoing)
            }
            other => format!("Unknown command {other:?}. {HELP}"),
        };
        // The command has run: a failed answer is logged, not retried (that would run it again).
        if let Err(error) = self.reply(seq, room, &answer).await {
            tracing::warn!(%error, room, "could not answer a command");
        }
        self.finish_sending(seq, batch, outgoing).await
    }

    /// `finish`, queuing `outgoing` (provider, request) on the outbox in the same
    /// batch; without an outbox (not a MIMI provider) they are not sent.
    pub(super) async fn finish_sending(
        &self,
        seq: u64,
        mut batch: Batch,
        outgoing: Vec<(String, Vec<u8>)>,
    ) -> Result<(), BridgeError> {
        let Some(outbox) = self.outbox.as_ref().filter(|_| !outgoing.is_empty()) else {
            return self.finish(seq, batch).await;
        };
        batch.intake(seq, None);
        let (ticket, keys) = outbox.enqueue(batch, outgoing);
        ticket.wait().await?;
        outbox.wake(&keys);
        Ok(())
    }

    /// `consent grant|revoke <user URI> [<room URI>]`: the sender's decision, written with the
    /// command's intake entry (a rerun after a crash writes the same record), and told to the
    /// requester's provider (`updateConsent`, from the outbox, queued in the same batch).
    fn consent_command(
        &self,
        command: &str,
        sender: &str,
        batch: &mut Batch,
        outgoing: &mut Vec<(String, Vec<u8>)>,
    ) -> String {
        use crate::translate::uri::{matrix_user_id, parse_room_uri, user_uri};
        let usage = "Usage: consent grant|revoke <MIMI user URI, e.g. mimi://b.example/u/bob> [<room URI>]";
        let words: Vec<&str> = command.split_whitespace().collect();
        let (state, requester, room) = match words.as_slice() {
            ["consent", op @ ("grant" | "revoke"), requester, rest @ ..] if rest.len() <= 1 => {
                (if *op == "grant" { "granted" } else { "revoked" }, *requester, rest.first().copied())
            }
            _ => return usage.to_owned(),
        };
        let remote = matrix_user_id(requester).ok().map(|id| crate::event::meta::server_of(&id).to_owned());
        if remote.is_none() || remote.as_deref() == Some(self.hub.server_name()) {
            return format!("{requester} is not a user of another MIMI provider. {usage}");
        }
        if room.is_some_and(|r| parse_room_uri(r).is_err()) {
            return format!("{} is not a MIMI room URI. {usage}", room.unwrap_or_default());
        }
        let Some(target) = self.mimi_user(sender).and_then(|id| user_uri(&id).ok()) else { return usage.to_owned() };
        let record = json!({"state": state, "at": crate::queue::now_ms()}).to_string();
        batch.consent(requester, &target, room, Some(record.as_bytes()));
        let provider = remote.unwrap_or_default();
        outgoing.push((provider.clone(), update_consent(state, requester, &target, room, &provider)));
        let scope = room.map_or_else(|| "for any room".to_owned(), |r| format!("for {r}"));
        if state == "granted" {
            format!("{requester} may now fetch your key material {scope}.")
        } else {
            format!("{requester} may no longer fetch your key material {scope}.")
        }
    }

    /// `invite <user URI>`: a new portal room with the sender (its MIMI room's creator) and the
    /// user of another provider, brought in as a ghost invited at opening would be.
    async fn invite_command(&self, seq: u64, sender: &str, command: &str) -> Result<String, BridgeError> {
        let usage = "Usage: invite <MIMI user URI of another provider, e.g. mimi://b.example/u/bob>";
        let words: Vec<&str> = command.split_whitespace().collect();
        let ["invite", uri] = words.as_slice() else { return Ok(usage.to_owned()) };
        let remote = crate::translate::uri::matrix_user_id(uri).ok();
        let Some(remote) = remote.filter(|id| crate::event::meta::server_of(id) != self.hub.server_name()) else {
            return Ok(format!("{uri} is not a user of another MIMI provider. {usage}"));
        };
        if self.outbox.is_none() {
            return Ok(
                "This bridge has no MIMI provider side (mimi.tls), so it cannot invite users of other providers."
                    .to_owned(),
            );
        }
        let room = self.open_command_room(seq, sender).await?;
        self.create_portal(&room, sender, Some(&remote), None).await?;
        Ok(format!("Opened a portal with {uri}: {room} (you are invited)."))
    }

    /// The Matrix room for an `open` command, made once: createRoom is not idempotent, so the
    /// room gets an alias named after the command's intake entry, and a retry after a crash finds
    /// the room under that alias instead of making another.
    async fn open_command_room(&self, seq: u64, sender: &str) -> Result<String, BridgeError> {
        let alias_name = format!("{}_open_{seq}", self.settings.bot_localpart);
        let content = json!({"preset": "private_chat", "name": "MIMI portal", "invite": [sender],
                             "room_alias_name": alias_name});
        match self.homeserver.create_room(None, &content).await {
            Ok(room) => {
                super::portal::crash_point("open-room");
                Ok(room)
            }
            Err(error) if error.errcode() == Some("M_ROOM_IN_USE") => {
                let alias = format!("#{alias_name}:{}", self.settings.domain);
                Ok(self.homeserver.join(&alias, None).await?)
            }
            Err(error) if error.errcode() == Some("M_EXCLUSIVE") => {
                // A registration from before the alias namespace: still works, without the alias
                // (a crash between creating the room and recording the portal may leave a spare).
                tracing::warn!("the registration reserves no alias for `open`; regenerate it (generate-registration)");
                let content = json!({"preset": "private_chat", "name": "MIMI portal", "invite": [sender]});
                Ok(self.homeserver.create_room(None, &content).await?)
            }
            Err(error) => Err(error.into()),
        }
    }

    fn rooms_list(&self) -> Result<String, BridgeError> {
        const SHOWN: usize = 50;
        let portals = self.store().portals_page(None, SHOWN + 1)?;
        if portals.is_empty() {
            return Ok("No portals yet: invite me (or a ghost) to an unencrypted room.".into());
        }
        let lines: Vec<String> = portals
            .iter()
            .filter_map(|(mimi_room, record)| {
                let record: Value = serde_json::from_slice(record).ok()?;
                let hub = crate::event::meta::server_of(mimi_room);
                let whose =
                    if hub == self.hub.server_name() { "hubbed here".to_owned() } else { format!("hubbed at {hub}") };
                Some(format!("{} ⇄ {mimi_room} ({whose})", record["matrix_room"].as_str()?))
            })
            .take(SHOWN)
            .collect();
        let more = if portals.len() > SHOWN { "\n… and more" } else { "" };
        Ok(format!("{} portal(s):\n{}{more}", lines.len(), lines.join("\n")))
    }

    async fn reply(&self, seq: u64, room: &str, text: &str) -> Result<(), BridgeError> {
        let content = json!({"msgtype": "m.notice", "body": text});
        self.send_notice_content(room, &format!("cmd.{seq}"), &content).await?;
        Ok(())
    }
}

/// The outbox request telling `provider` (the requester's) of a target's decision.
fn update_consent(state: &str, requester: &str, target: &str, room: Option<&str>, provider: &str) -> Vec<u8> {
    use crate::mimi::protocol::{AppDataDictionary, ConsentEntry, ConsentOperation, Wire as _};
    let entry = ConsentEntry {
        operation: if state == "granted" { ConsentOperation::Grant } else { ConsentOperation::Revoke },
        requester_uri: requester.to_owned(),
        target_uri: target.to_owned(),
        room_id: room.map(str::to_owned),
        key_packages: Vec::new(),
        extensions: AppDataDictionary::default(),
    };
    let request = crate::provider::outbox::Outgoing {
        endpoint: "updateConsent".into(),
        variables: vec![("requesterDomain".into(), provider.to_owned())],
        body: entry.encode(),
    };
    request.encode()
}
