//! The documented example configuration that `mimi-bridge generate-config` prints.
//!
//! `bridge-config/config.example.yaml` is this text, checked in; tests check that the file and the
//! command's output are byte-identical, that the example loads, and that every key it marks
//! `(default)` holds the value the struct defaults to.

/// The example `config.yaml`, with a comment on every key.
pub const EXAMPLE: &str = r"# mimi-bridge configuration (printed by `mimi-bridge generate-config`).
#
# Setup: edit this file, run `mimi-bridge generate-registration -c config.yaml -r registration.yaml`
# (it generates the two tokens and writes them back here), add registration.yaml to Synapse's
# `app_service_config_files`, restart Synapse, then start `mimi-bridge serve -c config.yaml`.
#
# Nothing is reloaded while running: restart the bridge after any change. Keys marked
# (registration) are also copied into registration.yaml: after changing one, run
# generate-registration again (the tokens are kept) and restart Synapse.
# Keys marked (default) may be left out. The schema is schemas/config.schema.json.

homeserver:
  # URL of the homeserver's client-server API as the bridge reaches it (http or https).
  address: http://127.0.0.1:8008
  # The homeserver's server name: the part after ':' in its user IDs. (registration)
  domain: hs.test

appservice:
  # URL the homeserver uses to reach the bridge; may carry a path. (registration)
  address: http://127.0.0.1:29340
  # IP address and port the bridge listens on for the homeserver. (default)
  hostname: 127.0.0.1
  port: 29340
  # Registration ID: unique on the homeserver, never change it. (default, registration)
  id: mimi
  bot:
    # Localpart of the bridge bot, here @mimibot:hs.test. (default, registration)
    username: mimibot
  # Tokens between bridge and homeserver. `generate` asks generate-registration to write
  # 64 random letters and digits here; existing tokens are kept. (registration)
  as_token: generate
  hs_token: generate
  # Localpart of the ghost user standing for a remote MIMI user: a fixed prefix, {server}, fixed
  # text containing `_`, then {localpart}. @bob:part.test appears as @mimi_part.test_bob:hs.test.
  # (default, registration)
  username_template: mimi_{server}_{localpart}
  # Also accept the homeserver's token as a legacy `?access_token=` query parameter (homeservers
  # older than Matrix v1.4); otherwise only `Authorization: Bearer`. (default)
  legacy_access_token_query: false

mimi:
  # The bridge's own server name in MIMI rooms, different from homeserver.domain; local users
  # appear as @alice:mimi.hs.test. Never change it once rooms exist.
  server_name: mimi.hs.test
  # Signing key in Synapse's key-file format; create it with
  # `mimi-bridge keygen --out /var/lib/mimi-bridge/signing.key`.
  signing_key: /var/lib/mimi-bridge/signing.key
  # IP address and port of the server-server (federation) listener. It speaks plain HTTP: put
  # a TLS reverse proxy in front of it. (default)
  federation_listen: 127.0.0.1:29341
  # Other servers' signing keys to trust (X-Matrix requests, event signatures), each
  # `server=ed25519:ID=base64 public key`. (default: none)
  trusted_keys: []
  # Send each Matrix event's origin_server_ts and event ID along in its MIMI messages, as
  # extensions 3 (senderTimestamp) and 4 (externalMessageId, scoped by the homeserver's domain)
  # of draft-mimi-content-more-extensions. The key numbers are not assigned by IANA yet.
  # Received ones are always accepted. (default)
  more_content_extensions: false
  # The bridge as a MIMI provider (draft-ietf-mimi-protocol-06): HTTPS with mutual TLS between
  # providers. Without `tls` there is no MIMI listener. `certificate` and `key` are PEM files for
  # server_name (used as server and as client certificate); `trust_anchors` is a PEM file of the
  # CAs to trust for other providers (default: the system's roots).
  # tls:
  #   certificate: /etc/mimi-bridge/tls/fullchain.pem
  #   key: /etc/mimi-bridge/tls/privkey.pem
  #   trust_anchors: /etc/mimi-bridge/tls/peers-ca.pem
  # IP address and port of the MIMI listener. (default)
  listen: 127.0.0.1:29343
  # Where this provider's directory says its endpoints are, https://host[:port]; default
  # https://<server_name>.
  # public_url: https://mimi.hs.test:8443
  # Other providers reached at a fixed address instead of their DNS name's (domain: ip:port);
  # TLS still checks the domain. (default: none)
  peers: {}
  consent:
    # Providers whose users may ask this homeserver's users for consent; '*' for any. (default)
    accept_from: ['*']
    # Providers whose users have consent (to fetch key material) without asking. (default: none)
    auto_grant: []
  # What one other provider's requests may make this one store per day (UTC); past it, 429.
  quotas:
    # Consent requests kept for this homeserver's users to decide. (default)
    consent_requests_per_day: 1000
    # Abuse reports (each at most 256 KiB). (default)
    abuse_reports_per_day: 100
    # Rooms another server may start here through Linearized Matrix `send` (each also needs one
    # of this homeserver's users invited or joined in it). (default)
    rooms_per_day: 100
  # Answer identifierQuery for this homeserver's users (by handle @user:domain); off, every query
  # is answered notFound, whether or not the user exists. (default)
  discovery: false

database:
  # The RocksDB data directory, created on first start. An existing directory must be empty or
  # a mimi-bridge data directory.
  path: /var/lib/mimi-bridge/data
  # `sync`: every write reaches the disk before it is acknowledged. `nosync` leaves that to the
  # operating system, so a power cut can lose acknowledged messages (tests only). (default)
  sync: sync
  # MiB of memory for RocksDB: up to half for memtables (recent writes), the rest for cached
  # data, index and filter blocks. At least 16; more helps a bridge with many busy rooms. (default)
  memory_mb: 128

logging:
  # A level (error, warn, info, debug, trace) or tracing filter directives such as
  # `info,mimi_bridge::hub=debug`. (default)
  level: info
  # `text` (human-readable lines) or `json` (one object per line), on standard error. (default)
  format: text

metrics:
  # Serve Prometheus metrics at /metrics. (default)
  enabled: false
  # IP address and port of the metrics listener. (default)
  listen: 127.0.0.1:29342

encryption:
  # Hold a Matrix device of the bridge's own, MIMIBRIDGE of @<bot username>_device (here
  # @mimibot_device:hs.test): created at start through the appservice device management of
  # Matrix v1.17 (the registration then carries io.element.msc4190: true). With it, inviting
  # the bot or a ghost into an encrypted room opens a portal: the device decrypts members'
  # messages, and each ghost speaks there through a device of its own. Every device is signed by
  # its owner's cross-signing keys. (default, registration)
  enabled: false
  # Take to-device messages and device-list changes from the homeserver's transactions instead
  # of polling /sync. Synapse needs experimental_features msc2409_to_device_messages_enabled and
  # msc3202_transaction_extensions (the registration then carries org.matrix.msc3202: true); at
  # start the device sends itself a to-device probe, and the bridge stops if it does not come
  # back in a transaction. (default, registration)
  push: false
  # Bridge only messages from devices their owners signed with their cross-signing keys; a
  # message from an unsigned device is refused with a notice to its sender and counted
  # (undecryptable). Off, every member's message is bridged. (default)
  require_verification: false
  # The recovery key file: the cross-signing keys of the bridge's Matrix users are kept in their
  # secret storage on the homeserver, encrypted with this key, so that a bridge whose data
  # directory was lost keeps its users' identities. The first start writes a new key there
  # (readable by its owner only); keep a copy away from the data directory. (default: none)
  # recovery_key_file: /etc/mimi-bridge/recovery-key.txt
";
