//! The command line of the `tower-monitor-gateway` program (and of `cargo run --example
//! gateway`): options, logs, the demo, serving and exit codes.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::{Gateway, demo};

const NAME: &str = "tower-monitor-gateway";

/// The most `--workers` the program takes: a thread, a runtime and a listening socket each.
const MAX_WORKERS: usize = 1024;

const HELP: &str = "\
tower-monitor-gateway: a reverse proxy that starts backends on demand and stops them when idle.

Usage: tower-monitor-gateway [--config FILE] [--listen ADDR] [--workers N] [--check]

With no --config, runs a self-contained demo: a gateway on 127.0.0.1:8080 in front of a demo
backend that is started by the first request and stopped after 20 s idle.

Options:
  --config FILE   the JSON configuration: a \"gateway\" section beside \"services\"
                  (every setting, with an example: CONFIG.md in the crate's source)
  --listen ADDR   listen on ADDR (an IP and a port) instead of gateway.listen
  --workers N     serve on N threads (1 to 1024), each with its own runtime
                  (default: one per core)
  --check         check the configuration, print what is wrong if anything, and exit
  -h, --help      print this help
  -V, --version   print the version
A value follows its option or an = sign: --config FILE or --config=FILE.

Clients speak HTTP/1.1 or HTTP/2; with gateway.tls (a certificate chain and a private key,
PEM files) over TLS (HTTPS, ALPN h2 and http/1.1), else cleartext.
Logs go to stderr; RUST_LOG sets their level (default: info).
Stops on SIGTERM or SIGINT, letting requests in flight finish (gateway.shutdown_grace); a
second signal stops waiting for them, and still stops the backend programs it started, each
within its stop_grace; a third kills them at once. On SIGHUP, reads the --config file again
and applies it (routes, gateway.services, services, the gateway.tls certificate and key
files read again...; gateway.listen, turning gateway.tls on or off, admin and fleet need a
restart); a file with an error changes nothing.
Exit codes: 0 done; 1 bad configuration, cannot listen or serve, or a shutdown that left
connections open past the grace or a backend program running; 2 bad command line.
";

#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Version,
    Backend(String),
    Run {
        config: Option<PathBuf>,
        listen: Option<String>,
        workers: Option<NonZeroUsize>,
        check: bool,
    },
}

fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let (mut config, mut listen, mut workers, mut check) = (None, None, None, false);
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        // `--config=FILE`, as systemd units and most programs' users write it, is `--config FILE`.
        let (text, mut inline) = match text.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
            _ => (text, None),
        };
        if inline.is_some() && matches!(text, "--help" | "--version" | "--check") {
            return Err(format!("option {text} takes no value"));
        }
        let mut value = |flag: &str| match inline.take() {
            Some(given) => Some(OsString::from(given))
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("option {flag} needs a value")),
            None => args
                .next()
                .filter(|v| !v.to_string_lossy().starts_with("--"))
                .ok_or_else(|| format!("option {flag} needs a value")),
        };
        match text {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--backend" => {
                let addr = value("--backend")?;
                return Ok(Command::Backend(addr.to_string_lossy().into_owned()));
            }
            // Given twice, one of the two would be ignored without a word.
            "--config" if config.is_some() => return Err("option --config given twice".into()),
            "--listen" if listen.is_some() => return Err("option --listen given twice".into()),
            "--workers" if workers.is_some() => {
                return Err("option --workers given twice".into());
            }
            "--config" => config = Some(PathBuf::from(value("--config")?)),
            "--listen" => listen = Some(value("--listen")?.to_string_lossy().into_owned()),
            "--workers" => {
                let text = value("--workers")?.to_string_lossy().into_owned();
                let n = text
                    .parse::<NonZeroUsize>()
                    .ok()
                    .filter(|n| n.get() <= MAX_WORKERS)
                    .ok_or_else(|| {
                        format!(
                            "option --workers needs a whole number from 1 to {MAX_WORKERS}, not {text:?}"
                        )
                    })?;
                workers = Some(n);
            }
            "--check" => check = true,
            other if other.starts_with('-') => return Err(format!("unknown option {other:?}")),
            // A file named alone is the likely slip: say how to give it.
            other if other.ends_with(".json") => {
                return Err(format!(
                    "unexpected argument {other:?}; for a configuration file, write --config {other}"
                ));
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(Command::Run {
        config,
        listen,
        workers,
        check,
    })
}

/// Runs the program with the process's arguments; returns its exit code.
pub fn main() -> ExitCode {
    let command = match parse(std::env::args_os().skip(1)) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("{NAME}: {error}. Try --help.");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("{NAME} {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::Backend(addr) => {
            match runtime().and_then(|rt| rt.block_on(demo::backend(&addr))) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("{NAME}: demo backend: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run {
            config,
            listen,
            workers,
            check,
        } => run(config, listen, workers, check),
    }
}

fn run(
    config: Option<PathBuf>,
    listen: Option<String>,
    workers: Option<NonZeroUsize>,
    check: bool,
) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        // When stderr is closed (the reader of its pipe gone), a line is lost, not the task
        // that logs it: the default reports the failure with `eprintln!`, which panics there.
        .log_internal_errors(false)
        .try_init();
    let listen = match listen
        .map(|text| text.parse::<SocketAddr>().map_err(|_| text))
        .transpose()
    {
        Ok(listen) => listen,
        Err(text) => {
            eprintln!(
                "{NAME}: --listen: invalid address {text:?}; write an IP and a port, e.g. 127.0.0.1:8080. Try --help."
            );
            return ExitCode::from(2);
        }
    };
    // The workers have runtimes of their own; this one reads the configuration, waits for a
    // signal, and runs the admin listener and the fleet.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{NAME}: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    let demo = config.is_none();
    let code = runtime.block_on(async move {
        let registry = demo::registry();
        let loaded = match &config {
            Some(path) => Gateway::from_config_file(path, &registry),
            None => Gateway::from_config(demo::DEFAULT_CONFIG, &registry),
        };
        let gateway = match loaded {
            Ok(gateway) => gateway,
            Err(error) => {
                eprintln!("{NAME}: configuration error: {error}");
                return ExitCode::FAILURE;
            }
        };
        let addr = listen.unwrap_or(gateway.listen());
        // The configuration checked its addresses against its own `gateway.listen` only.
        if let Some(listen) = listen {
            if let Err(error) = super::own_address::check_listen_flag(&gateway, listen) {
                eprintln!("{NAME}: configuration error: {error}");
                return ExitCode::FAILURE;
            }
            gateway.reload.listen_flag(listen);
        }
        if check {
            // Said with what was checked: a bare `--check` checks the demo, not a file.
            match &config {
                Some(path) => println!("{NAME}: {}: the configuration is valid", path.display()),
                None => println!(
                    "{NAME}: no --config given: the demo's built-in configuration is valid"
                ),
            }
            return ExitCode::SUCCESS;
        }
        let listener = match std::net::TcpListener::bind(addr) {
            Ok(listener) => listener,
            Err(error) => {
                let field = if listen.is_some() { "--listen" } else { "gateway.listen" };
                let hint = super::run::in_use_hint(&error, field);
                eprintln!("{NAME}: cannot listen on {addr} ({field}): {error}{hint}");
                return ExitCode::FAILURE;
            }
        };
        let local = listener.local_addr().unwrap_or(addr);
        // Listening for signals before saying so: a SIGTERM right after it is a shutdown.
        let (first, drain) = tokio::sync::oneshot::channel();
        let (second, force) = tokio::sync::oneshot::channel();
        let (third, kill) = tokio::sync::oneshot::channel();
        let reloader = config.is_some().then(|| gateway.reloader());
        tokio::spawn(super::signals::signals([first, second, third], reloader));
        // Said once the admin listener is bound too (see `serve_on_workers_then`).
        let scheme = gateway.scheme();
        let ready = move |admin: Option<SocketAddr>| {
            say(format_args!("gateway: listening on {scheme}://{local}"));
            if let Some(admin) = admin {
                say(format_args!("gateway: admin on http://{admin}/"));
            }
            if demo {
                say(format_args!(
                    "gateway: try curl -i http://{local}/ (the first request starts the backend)"
                ));
            }
        };
        let workers = workers.unwrap_or_else(super::default_workers);
        // Should the signal task end without a word, nothing is asked: serve on.
        let asked = |told: tokio::sync::oneshot::Receiver<()>| async move {
            if told.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let (shutdown, forced) = (asked(drain), asked(force));
        #[cfg(unix)]
        let supervisor = registry.supervisor().clone();
        // Pressed again: the programs' stop graces are not waited out either.
        #[cfg(unix)]
        tokio::spawn({
            let supervisor = supervisor.clone();
            async move {
                if kill.await.is_ok() {
                    tracing::warn!("third signal: killing the backend programs (SIGKILL)");
                    let _ = supervisor.shutdown(Duration::ZERO).await;
                }
            }
        });
        #[cfg(not(unix))]
        drop(kill);
        let monitor = Arc::clone(gateway.monitor());
        // Kept until the end, not dropped when the second signal wins: it holds the workers,
        // whose runtimes watch the backend programs (and the last handles to them), so that
        // the programs it may be stopping already are still stopped and waited for.
        let serving = gateway.serve_on_workers_then(listener, workers, shutdown, ready);
        let mut serving = std::pin::pin!(serving);
        let clean = tokio::select! {
            clean = &mut serving => clean,
            () = forced => {
                // An operator who does not want to wait out the grace must not need `kill -9`,
                // which would leave the backend programs running.
                tracing::warn!("second signal: not waiting for the connections still open; a third kills the backend programs at once");
                // Answered while the programs stop, rather than cut off unanswered.
                monitor.release_held();
                #[cfg(unix)]
                let _ = supervisor.shutdown_each_with_its_grace().await;
                false
            }
        };
        say(format_args!("gateway: stopped"));
        // Not clean: it could not serve (the admin listener, the fleet, the workers), or
        // connections outlived the grace, or a backend program would not stop (all logged).
        if clean {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    });
    // Tasks still running (a relayed WebSocket, a backend's output) must not delay the exit.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

/// Prints a line on stdout, unlike `println!` without a panic when stdout is closed: that is
/// no reason to stop serving, nor to skip stopping the backend programs.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// The log filter: `RUST_LOG`, or `info` when it is unset or empty (an empty filter would
/// silence even the errors that say why the program stops). A value that does not parse is
/// said, rather than silently replaced.
fn log_filter() -> tracing_subscriber::EnvFilter {
    let default = || tracing_subscriber::EnvFilter::new("info");
    let set = std::env::var_os("RUST_LOG").is_some_and(|v| !v.to_string_lossy().trim().is_empty());
    if !set {
        return default();
    }
    tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|error| {
        eprintln!("{NAME}: RUST_LOG: {error}; logging at info instead");
        default()
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, crate::BoxError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

#[cfg(test)]
mod tests;
