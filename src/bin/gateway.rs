//! `tower-monitor-gateway`: the start-on-demand gateway. See `--help`, and
//! `tower_monitor::gateway` for the configuration.

fn main() -> std::process::ExitCode {
    tower_monitor::gateway::cli::main()
}
