//! The `junction` command: serve the gateway, check a config, run the mock upstream, or run
//! the demo (gateway and mock in one process).

use arc_swap::ArcSwap;
use clap::{Parser, Subcommand};
use junction::config;
#[cfg(feature = "mock")]
use junction::mock;
use junction::server;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "junction",
    version,
    about = "An LLM API gateway: one OpenAI-compatible endpoint in front of every model provider"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Take the listening sockets over from the running process (binary upgrade): start
        /// this, then send SIGQUIT to the old process.
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config file: print every problem (exit 1) or what it would serve (exit 0).
    Check {
        /// The config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Create or migrate the tables of the store and the ledger (SQLite files, or PostgreSQL
    /// with [store] url), then exit. The gateway does it too when it starts; this runs them
    /// alone (before a rolling upgrade, say).
    Migrate {
        /// The config file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Teams, keys, usage and the audit trail of a running gateway, through its admin
    /// listener; the admin key (or a team admin's) from $JUNCTION_ADMIN_KEY.
    Admin {
        /// The admin listener.
        #[arg(long, default_value = "http://127.0.0.1:9091")]
        url: String,
        #[command(subcommand)]
        what: junction::admin::cli::What,
    },
    /// Run the mock upstream (OpenAI, Anthropic and Gemini wire formats).
    #[cfg(feature = "mock")]
    Mock {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: std::net::SocketAddr,
        /// Worker threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Serve TLS with this certificate chain (PEM); needs --tls-key.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<String>,
        /// The private key (PEM) of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<String>,
        #[command(flatten)]
        defaults: mock::Controls,
    },
    /// Run the gateway and the mock upstream in one process, from conf/demo.toml (or, where
    /// there is none, the copy built into the binary); from any directory.
    #[cfg(feature = "mock")]
    Demo {
        /// The demo config file (default: conf/demo.toml if it exists here, else the built-in
        /// copy).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Check { config } => match config::load(&config) {
            Ok(snapshot) => {
                println!("{}: OK\n{}", config.display(), snapshot.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                eprintln!("{} problem(s) found.", e.problems.len());
                ExitCode::FAILURE
            }
        },
        Command::Migrate { config } => {
            let snapshot = match config::load(&config) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            let done = junction::tenancy::Store::migrate_only(&snapshot.store).and_then(|store| {
                junction::usage::ledger::migrate_only(
                    snapshot.ledger.path.as_deref(),
                    snapshot.ledger.postgres.as_ref(),
                )
                .map(|ledger| format!("{store}\n{ledger}"))
            });
            match done {
                Ok(said) => {
                    println!("{said}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve { config, upgrade } => serve(Source::File(&config), false, upgrade),
        Command::Admin { url, what } => {
            let Ok(key) = std::env::var("JUNCTION_ADMIN_KEY") else {
                eprintln!("junction admin: set JUNCTION_ADMIN_KEY to the admin key");
                return ExitCode::FAILURE;
            };
            match junction::admin::cli::run(&url, &key, &what) {
                Ok(out) => {
                    println!("{out}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("junction admin: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        #[cfg(feature = "mock")]
        Command::Demo { config } => {
            let config = config.or_else(|| {
                let here = PathBuf::from("conf/demo.toml");
                here.exists().then_some(here)
            });
            match config {
                Some(path) => serve(Source::File(&path), true, false),
                None => serve(Source::BuiltInDemo, true, false),
            }
        }
        #[cfg(feature = "mock")]
        Command::Mock {
            listen,
            threads,
            tls_cert,
            tls_key,
            defaults,
        } => {
            tracing::info!(%listen, tls = tls_cert.is_some(), "starting the mock upstream");
            let tls = tls_cert.as_deref().zip(tls_key.as_deref());
            let service = match mock::service(listen, tls, defaults) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cannot start the mock: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let mut server = server::new_server(&server::Lifecycle {
                threads,
                ..Default::default()
            });
            server.add_service(service);
            server.run_forever()
        }
    }
}

/// Where the config comes from.
enum Source<'a> {
    File(&'a std::path::Path),
    /// The demo's config, built into the binary (`junction demo` away from the repository).
    #[cfg(feature = "mock")]
    BuiltInDemo,
}

#[cfg(feature = "mock")]
const DEMO_CONFIG: &str = include_str!("../conf/demo.toml");

impl Source<'_> {
    fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            #[cfg(feature = "mock")]
            Source::BuiltInDemo => "demo.toml (built in)".into(),
        }
    }

    fn load(&self) -> Result<config::Snapshot, config::ConfigError> {
        match self {
            Source::File(p) => config::load(p),
            #[cfg(feature = "mock")]
            Source::BuiltInDemo => {
                config::parse_in(&self.name(), DEMO_CONFIG, std::path::Path::new(""), &|k| {
                    std::env::var(k).ok()
                })
            }
        }
    }
}

/// Where the demo keeps its ledger: a data directory (`$JUNCTION_DATA_DIR`, else
/// `$XDG_DATA_HOME/junction`, else `~/.local/share/junction`), never beside its config.
#[cfg(feature = "mock")]
fn demo_data_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("JUNCTION_DATA_DIR")
        .or_else(|| env("XDG_DATA_HOME").map(|d| d.join("junction")))
        .or_else(|| env("HOME").map(|h| h.join(".local/share/junction")))
        .unwrap_or_else(|| std::env::temp_dir().join("junction"))
}

fn serve(source: Source<'_>, demo: bool, upgrade: bool) -> ExitCode {
    #[allow(unused_mut)]
    let mut snapshot = match source.load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let name = source.name();
    #[cfg(feature = "mock")]
    if demo && snapshot.ledger.path.is_some() {
        let dir = demo_data_dir();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("{}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        let file = format!("junction-demo-{}.sqlite", snapshot.server.listen.port());
        snapshot.ledger.path = Some(dir.join(file));
        if snapshot.responses.path.is_some() {
            let file = format!(
                "junction-demo-{}-responses.sqlite",
                snapshot.server.listen.port()
            );
            snapshot.responses.path = Some(dir.join(file));
        }
        if let junction::tenancy::Location::Sqlite(Some(_)) = &snapshot.store {
            let file = format!(
                "junction-demo-{}-store.sqlite",
                snapshot.server.listen.port()
            );
            snapshot.store = junction::tenancy::Location::Sqlite(Some(dir.join(file)));
        }
    }
    tracing::info!(config = %name, models = snapshot.models.len(), providers = snapshot.providers.len(), ledger = ?snapshot.ledger.path, "config loaded");
    let mut server = server::new_server(&server::Lifecycle {
        threads: snapshot.server.threads,
        upgrade_grace: snapshot.server.shutdown_grace,
        upgrade_sock: snapshot.server.upgrade_sock.clone(),
        upgrade,
    });
    #[cfg(not(feature = "mock"))]
    let _ = demo;
    #[cfg(feature = "mock")]
    if demo {
        let Some(mock_listen) = snapshot.demo_mock_listen else {
            eprintln!("{name}: the demo needs [demo] mock_listen");
            return ExitCode::FAILURE;
        };
        tracing::info!(listen = %mock_listen, "starting the mock upstream");
        match mock::service(mock_listen, None, mock::Controls::default()) {
            Ok(s) => server.add_service(s),
            Err(e) => {
                eprintln!("cannot start the mock: {e}");
                return ExitCode::FAILURE;
            }
        };
    }
    tracing::info!(listen = %snapshot.server.listen, "starting the gateway");
    let grace = snapshot.server.shutdown_grace;
    let config = Arc::new(ArcSwap::from_pointee(snapshot));
    let drain: Arc<junction::net::drain::Drain> = Arc::default();
    let reload_from = match source {
        Source::File(p) => Some(p.to_path_buf()),
        #[cfg(feature = "mock")]
        Source::BuiltInDemo => None,
    };
    let services = match server::gateway_services(config, reload_from, drain.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let accounting = services.accounting.clone();
    let responses = services.responses.clone();
    server.add_service(services.gateway);
    if let Some(exporter) = services.exporter {
        server.add_service(exporter);
    }
    if let Some(reload) = services.reload {
        server.add_service(reload);
    }
    server.add_service(services.checks);
    if let Some(admin) = services.admin {
        tracing::info!("starting the admin listener");
        server.add_service(admin);
    }
    server.run(pingora_core::server::RunArgs {
        shutdown_signal: Box::new(junction::net::drain::DrainingSignals { drain, grace }),
    });
    // The listeners are closed and the requests drained: write out every queued record.
    accounting.close();
    responses.close();
    tracing::info!(
        written = accounting
            .written
            .load(std::sync::atomic::Ordering::Relaxed),
        dropped = accounting
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        "accounting closed"
    );
    ExitCode::SUCCESS
}

#[cfg(all(test, feature = "mock"))]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_demo_is_the_repositorys_and_keeps_its_ledger_in_a_data_directory() {
        let built_in = Source::BuiltInDemo.load().unwrap();
        let file = config::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/conf/demo.toml"
        )))
        .unwrap();
        assert_eq!(built_in.summary(), file.summary());
        assert!(built_in.demo_mock_listen.is_some());
        // The one test that sets it: the data directory follows JUNCTION_DATA_DIR.
        std::env::set_var("JUNCTION_DATA_DIR", "/tmp/junction-data-test");
        assert_eq!(demo_data_dir(), PathBuf::from("/tmp/junction-data-test"));
    }
}
