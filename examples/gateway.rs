//! The start-on-demand gateway: pullcord's whole job in one program.
//!
//! Run:  cargo run --example gateway            (or, faster to build:
//!       cargo run --features gateway --bin tower-monitor-gateway)
//! Then: curl -i http://127.0.0.1:8080/     (503 while the backend boots; again two seconds later: 200)
//!
//! With no arguments it listens on 127.0.0.1:8080 in front of a demo backend (this program
//! started again in backend mode on 127.0.0.1:8081) that is *not running*. The first request
//! runs `on_down`, which starts it; the gateway answers 503 until a probe finds it up, then
//! reverse-proxies to it; after 20 s without a request in flight `on_idle` stops it, and the next
//! request starts it again. Your own file: `cargo run --example gateway -- --config FILE`, with
//! a `gateway` section (`listen`, `routes` by `path_prefix` and/or `host`) beside `services`;
//! `--help` tells the rest. The program is `tower_monitor::gateway::cli`.

fn main() -> std::process::ExitCode {
    tower_monitor::gateway::cli::main()
}
