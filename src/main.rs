//! The `mimi-bridge` command: argument parsing only; the work is in the library's `cli` module.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use mimi_bridge::cli::{self, CliError};
use mimi_bridge::event::room_version::LINEARIZED_02;

/// glibc's allocator spends a tenth of `log verify`'s time in consolidation and locking across
/// threads; mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "mimi-bridge",
    version,
    about = "Attach a Matrix homeserver to MIMI rooms: hub-linearized logs, replay and verification"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the bridge: the appservice and federation listeners, and the bridging between them.
    Serve {
        /// The configuration file.
        #[arg(short = 'c', long = "config", default_value = "config.yaml")]
        config: PathBuf,
    },
    /// Print a documented example configuration (bridge-config/config.example.yaml).
    GenerateConfig,
    /// Write the homeserver's registration file, generating the tokens still set to `generate`
    /// in the configuration and writing them back into it (existing tokens are kept).
    GenerateRegistration {
        /// The configuration file.
        #[arg(short = 'c', long = "config", default_value = "config.yaml")]
        config: PathBuf,
        /// Where to write the registration (`-` for standard output).
        #[arg(short = 'r', long = "registration", default_value = "registration.yaml")]
        registration: PathBuf,
    },
    /// Generate a server signing key in Synapse's key-file format.
    Keygen {
        /// Where to write the key (never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// Key version (`[A-Za-z0-9_]+`); the key ID becomes `ed25519:VERSION`. Default: `a_XXXX`.
        #[arg(long = "key-id", value_name = "VERSION")]
        key_id: Option<String>,
    },
    /// Sign or check one event given as JSON on standard input.
    #[command(subcommand)]
    Event(EventCommand),
    /// Inspect, verify, export and import room logs in a data directory.
    #[command(subcommand)]
    Log(LogCommand),
    /// MIMI content (CBOR) on standard input: decode, encode, message IDs; other providers:
    /// directory, claim.
    #[command(subcommand)]
    Mimi(MimiCommand),
}

#[derive(Subcommand)]
enum MimiCommand {
    /// CBOR message → JSON (`schemas/mimi-content.schema.json`).
    Decode {
        /// Decode a `MessageDerivedValues` record instead of a message.
        #[arg(long)]
        derived: bool,
    },
    /// JSON → CBOR message (the inverse of decode; the bytes go to standard output).
    Encode,
    /// The message ID, in lowercase hex.
    Id {
        /// Sender user URI (default: extension 1 of the message).
        #[arg(long)]
        sender: Option<String>,
        /// Room URI (default: extension 2 of the message).
        #[arg(long)]
        room: Option<String>,
        /// Which draft's ID function: 08 (length-prefixed URIs) or 07.
        #[arg(long, default_value = "08")]
        draft: String,
    },
    /// Fetch another provider's directory over mutual TLS and print its endpoints.
    Directory {
        /// The configuration file (for mimi.tls and mimi.peers).
        #[arg(short, long)]
        config: PathBuf,
        /// The provider's domain, e.g. b.example.
        provider: String,
    },
    /// Claim a remote user's key material as the bridge's bot; print each client's KeyPackage
    /// and whether it holds (consumes one of the user's KeyPackages).
    Claim {
        /// The configuration file (for mimi.tls and mimi.peers).
        #[arg(short, long)]
        config: PathBuf,
        /// The user URI, e.g. `mimi://b.example/u/bob`.
        user: String,
        /// The room the material is for.
        #[arg(long)]
        room: Option<String>,
    },
}

#[derive(Args)]
struct VersionArg {
    /// Room version rules to apply ("1" selects Matrix room version 1, for the spec's vectors).
    #[arg(long = "room-version", default_value = LINEARIZED_02.id)]
    room_version: String,
}

#[derive(Args)]
struct KeysArg {
    /// A trusted public key, SERVER=ed25519:ID=PUBKEY (repeatable).
    #[arg(long = "key", value_name = "SERVER=ed25519:ID=PUBKEY")]
    keys: Vec<String>,
}

#[derive(Subcommand)]
enum EventCommand {
    /// Hash and sign: an LPDU (`hub_server`, no auth/prev events) as its origin, otherwise a PDU.
    Sign {
        /// The signing server's name.
        #[arg(long = "server-name")]
        server_name: String,
        /// The signing key file (Synapse format).
        #[arg(long = "key-file")]
        key_file: PathBuf,
        #[command(flatten)]
        version: VersionArg,
    },
    /// Recompute hashes, signatures and the event ID; exit 0 only if the event is authentic.
    Check {
        #[command(flatten)]
        keys: KeysArg,
        #[command(flatten)]
        version: VersionArg,
    },
}

#[derive(Args)]
struct DataDir {
    /// The data directory (a RocksDB store).
    #[arg(long = "data-dir")]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum LogCommand {
    /// Rooms, event counts and tail event IDs.
    List {
        #[command(flatten)]
        dir: DataDir,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// A room's timeline.
    Show {
        #[command(flatten)]
        dir: DataDir,
        /// The room ID.
        #[arg(long)]
        room: String,
        /// First position (0-based).
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Most events to show.
        #[arg(long)]
        limit: Option<u64>,
        /// One JSON object per line: `position`, `event_id`, `pdu` (and `decrypted`).
        #[arg(long)]
        json: bool,
        /// Print the MIMI content stored for each `m.room.encrypted` (or, in a follower's record,
        /// each `m.mimi.fanout` of an application message): what this server's clients encrypted
        /// or first decrypted; MLS keeps no keys to decrypt again.
        #[arg(long)]
        decrypt: bool,
    },
    /// The room state after position N (default: the tail).
    State {
        #[command(flatten)]
        dir: DataDir,
        /// The room ID.
        #[arg(long)]
        room: String,
        /// Position (0-based).
        #[arg(long)]
        at: Option<u64>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Recompute every hash, signature, event ID, link and auth decision.
    Verify {
        #[command(flatten)]
        dir: DataDir,
        /// Only this room.
        #[arg(long)]
        room: Option<String>,
        #[command(flatten)]
        keys: KeysArg,
    },
    /// Write a room's log as JSON Lines to standard output.
    Export {
        #[command(flatten)]
        dir: DataDir,
        /// The room ID.
        #[arg(long)]
        room: String,
    },
    /// Verify a JSON Lines export from standard input and store it (all or nothing).
    Import {
        #[command(flatten)]
        dir: DataDir,
        #[command(flatten)]
        keys: KeysArg,
    },
}

fn run(command: Command) -> Result<Option<String>, CliError> {
    let stdin = || cli::read_limited(&mut std::io::stdin().lock(), cli::MAX_STDIN_EVENT, "stdin");
    match command {
        Command::Serve { config } => cli::serve(&config).map(|()| None),
        Command::GenerateConfig => {
            std::io::stdout()
                .lock()
                .write_all(cli::generate_config().as_bytes())
                .map_err(|e| CliError::usage(format!("stdout: {e}")))?;
            Ok(None)
        }
        Command::GenerateRegistration { config, registration } => {
            cli::generate_registration(&config, &registration).map(Some)
        }
        Command::Keygen { out, key_id } => cli::keygen(&out, key_id.as_deref()).map(Some),
        Command::Event(EventCommand::Sign { server_name, key_file, version }) => {
            cli::event_sign(&stdin()?, &server_name, &key_file, &version.room_version).map(Some)
        }
        Command::Event(EventCommand::Check { keys, version }) => {
            let ring = cli::key_ring(&keys.keys)?;
            let (report, valid) = cli::event_check(&stdin()?, &ring, &version.room_version)?;
            let _ = writeln!(std::io::stdout().lock(), "{report}");
            if valid { Ok(None) } else { Err(CliError::check("event check: not valid")) }
        }
        Command::Log(LogCommand::List { dir, json }) => cli::log_list(&dir.data_dir, json).map(Some),
        Command::Log(LogCommand::Show { dir, room, from, limit, json, decrypt }) => {
            cli::log_show(&dir.data_dir, &room, cli::ShowOptions { from, limit, json, decrypt }).map(Some)
        }
        Command::Log(LogCommand::State { dir, room, at, json }) => {
            cli::log_state(&dir.data_dir, &room, at, json).map(Some)
        }
        Command::Log(LogCommand::Verify { dir, room, keys }) => {
            cli::log_verify(&dir.data_dir, room.as_deref(), &keys.keys).map(Some)
        }
        Command::Log(LogCommand::Export { dir, room }) => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let note = cli::log_export(&dir.data_dir, &room, &mut out)?;
            let _ = writeln!(std::io::stderr().lock(), "{note}");
            Ok(None)
        }
        Command::Mimi(MimiCommand::Decode { derived }) => cli::mimi_decode(&stdin()?, derived).map(Some),
        Command::Mimi(MimiCommand::Encode) => {
            let bytes = cli::mimi_encode(&stdin()?)?;
            std::io::stdout().lock().write_all(&bytes).map_err(|e| CliError::usage(format!("stdout: {e}")))?;
            Ok(None)
        }
        Command::Mimi(MimiCommand::Directory { config, provider }) => cli::mimi_directory(&config, &provider).map(Some),
        Command::Mimi(MimiCommand::Claim { config, user, room }) => {
            cli::mimi_claim(&config, &user, room.as_deref()).map(Some)
        }
        Command::Mimi(MimiCommand::Id { sender, room, draft }) => {
            cli::mimi_id(&stdin()?, sender.as_deref(), room.as_deref(), &draft).map(Some)
        }
        Command::Log(LogCommand::Import { dir, keys }) => {
            cli::log_import(&dir.data_dir, &mut std::io::stdin().lock(), &keys.keys).map(Some)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` sets up logging from its configuration.
    if !matches!(cli.command, Command::Serve { .. }) {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    match run(cli.command) {
        Ok(output) => {
            if let Some(text) = output {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr().lock(), "mimi-bridge: {e}");
            ExitCode::from(e.code)
        }
    }
}
