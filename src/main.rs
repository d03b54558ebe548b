//! The `agentlog` command line: parses flags, sets up logging, and runs the broker or
//! the load tool.

mod agents_cmd;
mod bench;
mod cards_cmd;
mod cli;
mod console;
mod consumer_lag;
mod http;
mod mcp_server;
mod models_cmd;
mod search_http;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use agentlog_agents::config::{start_declared, AgentsConfig, BackendChoice};
use agentlog_agents::exactly_once::process_tag;
use agentlog_agents::uplink::Uplinks;
use agentlog_agents::{AgentHandle, EmbeddedBackend, KafkaBackend, Runtime};
use agentlog_broker::security::listener::SecurityProtocol;
use agentlog_broker::{BrokerConfig, RunningBroker};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};

/// A Kafka-wire-compatible broker and AI-agent runtime in one binary.
#[derive(Debug, Parser)]
#[command(name = "agentlog", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker (the default when no command is given).
    Serve(ServeArgs),
    /// Load-test any Kafka-protocol broker: produce, consume or end-to-end latency.
    Bench(bench::BenchArgs),
    /// Work with the agents a configuration declares (replay, ...).
    Agents(agents_cmd::AgentsArgs),
    /// Deploy and list ONNX models in a cluster's models topic.
    Models(models_cmd::ModelsArgs),
    #[command(flatten)]
    Operator(cli::OperatorCommand),
}

#[derive(Debug, Args, Default)]
struct ServeArgs {
    /// Address to accept Kafka clients on; repeat for several. Default: port 9092 on
    /// 127.0.0.1 and [::1]. Port 0 picks a free port.
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<SocketAddr>,
    /// host:port that clients are told to connect to (default: the first listener).
    #[arg(long, value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// Where logs and metadata are kept (default ./agentlog-data).
    #[arg(long, value_name = "PATH")]
    data_dir: Option<PathBuf>,
    /// TOML settings file (Kafka names such as `num.partitions` work).
    #[arg(long, value_name = "FILE", env = "AGENTLOG_CONFIG")]
    config: Option<PathBuf>,
    /// A single setting, `name=value`, over the file and environment; repeatable.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
    /// Serve `GET /health` and `GET /metrics` (Prometheus) on this address (default:
    /// no HTTP listener). Port 0 picks a free port.
    #[arg(long, value_name = "ADDR", env = "AGENTLOG_HTTP")]
    http: Option<SocketAddr>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::Bench(args)) => return bench::run(args),
        Some(Command::Agents(args)) => return agents_cmd::run(args),
        Some(Command::Models(args)) => return models_cmd::run(args),
        Some(Command::Operator(command)) => cli::run(command),
        None => cli.serve,
    };
    let (config, agents) = build_config(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let http = match args.http {
        Some(address) => Some(address),
        None => configured_http(&config)?,
    };
    let mcp = mcp_server::Settings::from_config(&config)?;
    if mcp.is_some() && http.is_none() {
        anyhow::bail!(
            "mcp.server.enable = true needs the HTTP listener: set http.listen or --http"
        );
    }
    let http = http.map(|addr| HttpSettings { addr, mcp });
    let outcome = runtime.block_on(serve(config, agents, http));
    // `serve` has stopped and flushed everything it started. What may be left are
    // blocking librdkafka calls of an uplink stopped mid-call (initialising or committing
    // a transaction over a dead link, up to its remote timeout): nothing in them needs
    // finishing, the remote aborts an unfinished transaction, so do not wait them out.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    outcome
}

/// Logs go to stderr (stdout carries the machine-readable listening lines), filtered
/// by `AGENTLOG_LOG` or `RUST_LOG`, `info` by default.
fn init_logging() {
    let filter = std::env::var("AGENTLOG_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
}

/// Defaults, then the file, then `AGENTLOG_*` variables, then flags; and the agents
/// declared in the file (none without one).
/// The `http.listen` setting (TOML, `--set`, `AGENTLOG_HTTP_LISTEN`), used when `--http`
/// is not given; empty means no HTTP listener.
fn configured_http(config: &BrokerConfig) -> anyhow::Result<Option<SocketAddr>> {
    match config.value("http.listen") {
        Some((address, _)) if !address.is_empty() => address
            .parse()
            .map(Some)
            .with_context(|| format!("http.listen = {address:?} is not a host:port address")),
        _ => Ok(None),
    }
}

fn build_config(args: &ServeArgs) -> anyhow::Result<(BrokerConfig, AgentsConfig)> {
    let mut config = BrokerConfig::default();
    let mut agents = AgentsConfig::from_toml("")?;
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        config
            .apply_toml(&text)
            .with_context(|| format!("in config file {}", path.display()))?;
        agents = AgentsConfig::from_toml(&text)
            .with_context(|| format!("in config file {}", path.display()))?;
    }
    let ignored = config
        .apply_env(std::env::vars())
        .context("in AGENTLOG_* environment variables")?;
    for name in ignored {
        tracing::warn!(variable = %name, "ignoring environment variable that names no setting");
    }
    for setting in &args.set {
        let (name, value) = setting
            .split_once('=')
            .with_context(|| format!("--set {setting}: expected NAME=VALUE"))?;
        config
            .set(name, value)
            .with_context(|| format!("--set {setting}"))?;
    }
    if !args.listen.is_empty() {
        config.set_plaintext_listeners(&args.listen);
    }
    if let Some(advertise) = &args.advertise {
        config.set("advertise", advertise)?;
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = dir.clone();
    }
    // Indexes snapshot under the data directory unless their table says otherwise.
    agents.data_dir = Some(config.data_dir.clone());
    Ok((config, agents))
}

/// What the HTTP listener serves: where, and `/mcp` when enabled.
struct HttpSettings {
    addr: SocketAddr,
    mcp: Option<mcp_server::Settings>,
}

async fn serve(
    config: BrokerConfig,
    agents: AgentsConfig,
    http: Option<HttpSettings>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let console_actions = config
        .value("console.actions")
        .is_some_and(|(value, _)| value == "true");
    // Before anything is printed: a script that sends SIGTERM right after reading the
    // listening line must get a graceful stop, not the default action (death).
    let mut stop = StopSignals::install()?;
    if let BackendChoice::Kafka(kafka) = &agents.backend {
        // Agents on an external cluster: no broker here, so /metrics has agent series
        // only (the cluster's consumer lag is the cluster's to report).
        let runtime = Arc::new(
            Runtime::new(KafkaBackend::new(kafka.clone())?)
                .with_process_tag(&process_tag(&config.data_dir)),
        );
        let agents_source = agent_source(&runtime);
        let console = console::Console::new(
            &kafka.bootstrap,
            &kafka.properties,
            console_actions,
            agents_source.clone(),
        );
        let http = start_http(
            http,
            agents_source,
            console,
            None,
            runtime.indexes().clone(),
            Default::default(),
            started,
        )
        .await?;
        let handles = start_declared(&runtime, &agents).await?;
        tracing::info!(bootstrap = %kafka.bootstrap, agents = handles.len(), "agents running on kafka");
        stop.wait().await;
        stop_agents(handles).await;
        if let Some(http) = http {
            http.stop().await;
        }
        return Ok(());
    }
    let tag = process_tag(&config.data_dir);
    let running = RunningBroker::start(config)
        .await
        .context("starting the broker")?;
    // Before the listening line, so that a SIGHUP right after it never kills the broker.
    reload_tls_on_sighup(&running.broker)?;
    {
        // Scripts and tests parse these lines; their format is documented and stable.
        let mut stdout = std::io::stdout().lock();
        // PLAINTEXT listeners as bare host:port (what scripts took as bootstrap before
        // listeners had protocols), the others as PROTOCOL://host:port.
        for listener in &running.local_listeners {
            if listener.protocol == SecurityProtocol::Plaintext {
                writeln!(stdout, "agentlog listening on {}", listener.address)?;
            } else {
                writeln!(stdout, "agentlog listening on {listener}")?;
            }
        }
        stdout.flush()?;
    }
    tracing::info!(advertised = %running.bootstrap(), "broker started");
    let mut backend = EmbeddedBackend::new(running.broker.clone());
    if let Some(principal) = &agents.principal {
        backend = backend.with_principal(principal);
    }
    let runtime = Arc::new(Runtime::new(backend).with_process_tag(&tag));
    let uplinks = Uplinks::start(&running.broker, &agents.uplinks)?;
    let agents_source = agent_source(&runtime);
    let console = console::Console::new(
        &running.bootstrap(),
        &Default::default(),
        console_actions,
        agents_source.clone(),
    );
    let http = start_http(
        http,
        agents_source,
        console,
        Some(running.broker.clone()),
        runtime.indexes().clone(),
        uplinks.statuses(),
        started,
    )
    .await?;
    let handles = start_declared(&runtime, &agents).await?;
    stop.wait().await;
    stop_agents(handles).await;
    uplinks.stop().await;
    if let Some(http) = http {
        // Health stops answering before the broker goes away.
        http.stop().await;
    }
    tracing::info!("shutting down: finishing in-flight requests and flushing");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Reads the runtime's live agent counters on each scrape.
fn agent_source<B: agentlog_agents::Backend>(
    runtime: &Arc<Runtime<B>>,
) -> http::AgentMetricsSource {
    let runtime = Arc::clone(runtime);
    Arc::new(move || runtime.metrics())
}

/// Binds the HTTP listener if asked for and prints its address line (stable, like the
/// Kafka listener's: tests and scripts read the port from it).
async fn start_http(
    settings: Option<HttpSettings>,
    agents: http::AgentMetricsSource,
    console: console::Console,
    broker: Option<Arc<agentlog_broker::Broker>>,
    indexes: Arc<agentlog_agents::rag::Indexes>,
    uplinks: agentlog_agents::uplink::UplinkStatuses,
    started: Instant,
) -> anyhow::Result<Option<http::HttpServer>> {
    let Some(HttpSettings { addr, mcp }) = settings else {
        return Ok(None);
    };
    let sources = http::Sources {
        agents,
        broker,
        started,
        indexes,
        mcp,
        uplinks,
        console,
    };
    let server = http::HttpServer::start(addr, sources)
        .await
        .with_context(|| format!("binding the HTTP listener on {addr}"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "agentlog http on {}", server.local_addr)?;
    stdout.flush()?;
    Ok(Some(server))
}

/// Each agent finishes its current event, commits and leaves its group.
async fn stop_agents(handles: Vec<AgentHandle>) {
    for handle in handles {
        handle.stop().await;
    }
}

/// SIGHUP: the broker rebuilds its TLS configuration from the certificate files (new
/// connections get the new certificate; a file that does not load is logged and the
/// previous configuration kept).
fn reload_tls_on_sighup(broker: &Arc<agentlog_broker::Broker>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let broker = Arc::downgrade(broker);
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            let Some(broker) = broker.upgrade() else {
                return;
            };
            let reloaded = tokio::task::spawn_blocking(move || broker.reload_tls().is_some());
            if !matches!(reloaded.await, Ok(true)) {
                tracing::info!("SIGHUP: no TLS listener, nothing to reload");
            }
        }
    });
    Ok(())
}

/// SIGTERM and SIGINT, caught from start-up on.
struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals {
            terminate: signal(SignalKind::terminate()).context("installing SIGTERM handler")?,
            interrupt: signal(SignalKind::interrupt()).context("installing SIGINT handler")?,
        })
    }

    /// Resolves at the first SIGTERM or SIGINT (also one that arrived earlier).
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}
