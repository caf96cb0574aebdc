//! Instructions per request through each stack, counted by callgrind: a figure the load of a
//! shared machine cannot move. `bash benches/instructions.sh` runs this program under callgrind
//! twice per stack (with two request counts) and divides the difference, so the setup cancels out.
//!
//! Run directly (as `cargo bench` and `cargo test --all-targets` do), it only checks that every
//! stack answers, and says how to get the counts.
//!
//! Usage: `instructions STACK REQUESTS`, STACK one of [`STACKS`].

mod stacks;

use std::hint::black_box;

use tower::Service;

const STACKS: [&str; 8] = [
    "bare",
    "floor",
    "floor_with_drop",
    "validate_request",
    "concurrency_limit",
    "monitor_up",
    "monitor_up_idle",
    "monitor_up_gone",
];

fn run<S: Service<http::Request<()>>>(mut service: S, requests: u64) {
    for _ in 0..requests {
        black_box(stacks::one_request(black_box(&mut service)));
    }
}

/// Runs `requests` requests through `stack`; `false` if there is no such stack.
fn stack(name: &str, requests: u64) -> bool {
    match name {
        "bare" => run(stacks::inner(), requests),
        "floor" => run(stacks::floor(), requests),
        "floor_with_drop" => run(stacks::floor_with_drop(), requests),
        "validate_request" => run(stacks::validate_request(), requests),
        "concurrency_limit" => run(stacks::concurrency_limit(), requests),
        "monitor_up" => run(stacks::monitor_up(&stacks::monitor(false)), requests),
        "monitor_up_idle" => run(stacks::monitor_up(&stacks::monitor(true)), requests),
        "monitor_up_gone" => run(stacks::monitor_up_gone(&stacks::monitor(false)), requests),
        _ => return false,
    }
    true
}

fn main() {
    // A current-thread runtime that never runs: the monitor's timers are spawned on it and wait,
    // and no worker thread adds instructions of its own to the count.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = runtime.enter();

    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [name, requests] = args.as_slice() {
        if let Ok(requests) = requests.parse() {
            if stack(name, requests) {
                return;
            }
        }
        eprintln!("usage: instructions STACK REQUESTS (STACK one of {STACKS:?})");
        std::process::exit(2);
    }
    for name in STACKS {
        assert!(stack(name, 100));
    }
    println!("every stack answers; for instruction counts run: bash benches/instructions.sh");
}
