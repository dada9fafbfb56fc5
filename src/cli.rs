//! The command line (docs/api.md §11.4): `serve` (the default), `migrate` and `account ...`.

use clap::{Parser, Subcommand};

use crate::config::{DatabaseArgs, ServeArgs};

#[derive(Parser, Debug)]
#[command(
    name = "herald",
    version,
    about = "A self-hosted realtime Channels server (Syncano API v1.1)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(DatabaseArgs),
    /// Follow a channel over WebSocket, printing each message as one JSON line; reconnects
    /// with the last id on any drop.
    Tail {
        instance: String,
        channel: String,
        /// Room to follow (required on separate_rooms channels).
        #[arg(long)]
        room: Option<String>,
        /// Start after this message id (default: only new messages).
        #[arg(long)]
        last_id: Option<u64>,
        /// Server address.
        #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// API key or account key.
        #[arg(long, env = "HERALD_API_KEY")]
        api_key: String,
    },
    /// Manage accounts offline (the server must not be running on the same SQLite file).
    Account {
        #[command(subcommand)]
        action: AccountCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum AccountCommand {
    /// Create an account and print its key (and the generated password without --password).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: Option<String>,
        /// May register accounts while registration is disabled.
        #[arg(long)]
        superuser: bool,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// Give an account a new key and print it; the old key stops working.
    ResetKey {
        #[arg(long)]
        email: String,
        #[command(flatten)]
        database: DatabaseArgs,
    },
    /// List accounts: id and e-mail.
    List {
        #[command(flatten)]
        database: DatabaseArgs,
    },
}

impl Cli {
    /// Parses the process arguments; `herald` alone, or `herald --flag ...`, means `serve`.
    pub fn from_env() -> Cli {
        let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let first = args.get(1).and_then(|a| a.to_str()).map(str::to_owned);
        let implicit_serve = match first.as_deref() {
            None => true,
            Some("-h" | "--help" | "-V" | "--version") => false,
            Some(flag) => flag.starts_with('-'),
        };
        if implicit_serve {
            args.insert(1, "serve".into());
        }
        Cli::parse_from(args)
    }
}
