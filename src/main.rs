//! The `herald` binary: parse the command line, set up logging, run the command.

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use herald::accounts::{self, Registration};
use herald::cli::{AccountCommand, Cli, Command};
use herald::config::{LogFormat, ServeArgs};
use herald::keys;
use herald::model;
use std::sync::Arc;

use herald::store::NoListener;

#[tokio::main]
async fn main() {
    let cli = Cli::from_env();
    if let Err(err) = run(cli).await {
        eprintln!("herald: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Migrate(database) => {
            eprintln!("applying migrations to {} ...", database.database_url);
            herald::open_store(&database, Arc::new(NoListener)).await?;
            eprintln!("database is up to date");
            Ok(())
        }
        Command::Account { action } => account(action).await,
        Command::Tail {
            instance,
            channel,
            room,
            last_id,
            url,
            api_key,
        } => {
            let last_id = last_id
                .map(|id| i64::try_from(id).context("--last-id is too large"))
                .transpose()?;
            herald::tail::tail(herald::tail::TailArgs {
                url,
                api_key,
                instance,
                channel,
                room,
                last_id,
            })
            .await
        }
    }
}

fn init_tracing(args: &ServeArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&args.log)
        .with_context(|| format!("invalid --log / HERALD_LOG filter `{}`", args.log))?;
    // Logs go to stderr so stdout carries only what commands print (the first-start key block).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(&args)?;
    args.admin.parsed_key().map_err(anyhow::Error::msg)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (--listen / HERALD_LISTEN)",
                args.listen
            )
        })?;
    herald::run(args, listener, shutdown_signal()).await
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

async fn account(action: AccountCommand) -> anyhow::Result<()> {
    match action {
        AccountCommand::Create {
            email,
            password,
            superuser,
            database,
        } => {
            let email = model::parse_email(&email).map_err(|m| anyhow::anyhow!("--email: {m}"))?;
            let store = herald::open_store_beside_server(&database).await?;
            let generated = password.is_none().then(keys::generate_password);
            let password = password.or_else(|| generated.clone()).unwrap_or_default();
            if password.is_empty() {
                anyhow::bail!("--password may not be empty");
            }
            let password_hash =
                tokio::task::spawn_blocking(move || keys::hash_password(&password)).await?;
            let registration = Registration {
                email,
                first_name: String::new(),
                last_name: String::new(),
                password_hash,
                is_superuser: superuser,
            };
            let (account, key) = accounts::create(store.as_ref(), registration)
                .await
                .map_err(|err| match err {
                    herald::store::StoreError::Conflict(_) => {
                        anyhow::anyhow!("an account with that e-mail already exists")
                    }
                    other => other.into(),
                })?;
            println!("account {} ({})", account.id, account.email);
            if let Some(password) = generated {
                println!("password: {password}");
            }
            println!("account key: {}", key.as_str());
            Ok(())
        }
        AccountCommand::ResetKey { email, database } => {
            let email = model::parse_email(&email).map_err(|m| anyhow::anyhow!("--email: {m}"))?;
            let store = herald::open_store_beside_server(&database).await?;
            let account = store
                .account_by_email(&email)
                .await
                .map_err(|_| anyhow::anyhow!("no account has the e-mail {email}"))?;
            let (_, key) = accounts::reset_key(store.as_ref(), account.id).await?;
            println!("account key: {}", key.as_str());
            Ok(())
        }
        AccountCommand::List { database } => {
            let store = herald::open_store_beside_server(&database).await?;
            for account in store.list_accounts().await? {
                println!("{}\t{}", account.id, account.email);
            }
            Ok(())
        }
    }
}
