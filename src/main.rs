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
    /// Run the gateway and the mock upstream in one process, from conf/demo.toml.
    #[cfg(feature = "mock")]
    Demo {
        /// The demo config file.
        #[arg(long, short, default_value = "conf/demo.toml")]
        config: PathBuf,
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
        Command::Serve { config, upgrade } => serve(&config, false, upgrade),
        #[cfg(feature = "mock")]
        Command::Demo { config } => serve(&config, true, false),
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

fn serve(path: &std::path::Path, demo: bool, upgrade: bool) -> ExitCode {
    let snapshot = match config::load(path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(config = %path.display(), models = snapshot.models.len(), providers = snapshot.providers.len(), "config loaded");
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
            eprintln!("{}: the demo needs [demo] mock_listen", path.display());
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
    let services = match server::gateway_services(config, Some(path.to_path_buf()), drain.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let accounting = services.accounting.clone();
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
