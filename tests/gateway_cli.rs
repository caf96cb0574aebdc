//! The `tower-monitor-gateway` program's command line as a user meets it: `--help`,
//! `--version`, usage errors, `--check`, and the exit code of a gateway that cannot serve.

mod common;

use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

async fn run(args: &[&str]) -> Output {
    run_with_log(args, None).await
}

/// [`run`] with `RUST_LOG` set to `rust_log` (if given).
async fn run_with_log(args: &[&str], rust_log: Option<&str>) -> Output {
    let mut command = Command::new(PROGRAM);
    if let Some(value) = rust_log {
        command.env("RUST_LOG", value);
    }
    let child = command.args(args).kill_on_drop(true).output();
    tokio::time::timeout(Duration::from_secs(20), child)
        .await
        .expect("the program exits by itself")
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn help_and_version_print_and_exit_0() {
    let help = run(&["--help"]).await;
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("Usage: tower-monitor-gateway") && text.contains("--check"),
        "{text}"
    );
    let version = run(&["--version"]).await;
    assert!(version.status.success());
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[tokio::test]
async fn an_unknown_option_or_a_missing_value_is_a_usage_error_and_starts_nothing() {
    for (args, says) in [
        (&["--conifg", "x.json"][..], "unknown option \"--conifg\""),
        (&["--config"][..], "option --config needs a value"),
        (&["--listen"][..], "option --listen needs a value"),
        (
            &["--listen", "localhost"][..],
            "--listen: invalid address \"localhost\"",
        ),
        (
            &["gateway.json"][..],
            "unexpected argument \"gateway.json\"; for a configuration file, write --config gateway.json",
        ),
    ] {
        let output = run(args).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let text = stderr(&output);
        assert!(text.contains(says), "{args:?}: {text}");
        assert_eq!(text.lines().count(), 1, "one sentence: {text}");
        assert!(!String::from_utf8_lossy(&output.stdout).contains("listening"));
    }
}

#[tokio::test]
async fn check_accepts_a_good_file_and_names_the_field_of_a_bad_one() {
    let good = common::TempFile::new(
        "good",
        r#"{ "gateway": { "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ],
                          "services": { "app": { "hold": { "max_wait": "5s" } } } },
             "services": { "app": { "url": "http://127.0.0.1:9/", "grace_period": "1s" } } }"#,
    );
    let output = run(&["--check", "--config", good.path()]).await;
    assert!(output.status.success(), "{}", stderr(&output));

    for (tag, text, field) in [
        (
            "routes",
            r#"{ "gateway": { "listen": "127.0.0.1:0", "routes": [] },
                 "services": { "app": { "url": "http://127.0.0.1:9/", "grace_period": "1s" } } }"#,
            "gateway.routes: at least one route is required",
        ),
        (
            "hold",
            r#"{ "gateway": { "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ],
                              "services": { "app": { "hold": { "max_wait": "soon" } } } },
                 "services": { "app": { "url": "http://127.0.0.1:9/", "grace_period": "1s" } } }"#,
            "gateway.services.app.hold.max_wait: invalid duration \"soon\"",
        ),
        (
            "listen",
            r#"{ "gateway": { "listen": "everywhere", "routes": [ { "service": "app" } ] },
                 "services": { "app": { "url": "http://127.0.0.1:9/", "grace_period": "1s" } } }"#,
            "gateway.listen: invalid address \"everywhere\"",
        ),
    ] {
        let bad = common::TempFile::new(tag, text);
        let output = run(&["--check", "--config", bad.path()]).await;
        assert_eq!(output.status.code(), Some(1), "{tag}");
        let said = stderr(&output);
        assert!(said.contains(field), "{tag}: {said}");
        assert!(
            !said.contains("ConfigError {"),
            "not a debug string: {said}"
        );
    }
    let output = run(&["--check", "--config", "/nonexistent/gateway.json"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("cannot read /nonexistent/gateway.json"));
}

/// `--check` says what it found valid: a bare `--check` (the file forgotten) checks the demo's
/// built-in configuration, which a plain "valid" let pass for the operator's file.
#[tokio::test]
async fn check_names_what_it_checked_and_takes_config_with_an_equals_sign() {
    let good = common::TempFile::new(
        "named",
        r#"{ "gateway": { "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ] },
             "services": { "app": { "url": "http://127.0.0.1:9/", "grace_period": "1s" } } }"#,
    );
    let with_equals = format!("--config={}", good.path());
    for args in [
        &["--check", "--config", good.path()][..],
        &["--check", with_equals.as_str()][..],
    ] {
        let output = run(args).await;
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            format!(
                "tower-monitor-gateway: {}: the configuration is valid\n",
                good.path()
            ),
            "{args:?}"
        );
    }
    let output = run(&["--check"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "tower-monitor-gateway: no --config given: the demo's built-in configuration is valid\n"
    );
}

/// `--listen` on the admin listener's address is a configuration error, named, for `--check`
/// and for serving alike: it was checked against `gateway.listen` only, so `--check` said
/// "valid" and the gateway, once serving, stopped with "the admin service cannot listen".
#[tokio::test]
async fn listen_on_the_admin_address_is_an_error_naming_it() {
    let config = common::TempFile::new(
        "listen-admin",
        r#"{ "gateway": { "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ] },
             "admin": { "listen": "127.0.0.1:18090", "token": "t" },
             "services": { "app": { "url": "http://127.0.0.1:9/", "grace_period": "1s" } } }"#,
    );
    for check in [true, false] {
        let mut args = vec!["--config", config.path(), "--listen", "127.0.0.1:18090"];
        if check {
            args.push("--check");
        }
        let output = run(&args).await;
        assert_eq!(output.status.code(), Some(1), "check: {check}");
        let said = stderr(&output);
        assert!(
            said.contains("admin.listen") && said.contains("--listen"),
            "check: {check}: {said}"
        );
    }
}

/// `--listen` on a service's address: checked as `gateway.listen` is, for `--check` too.
#[tokio::test]
async fn listen_on_a_services_address_is_an_error_naming_both() {
    let config = common::TempFile::new(
        "listen-service",
        r#"{ "gateway": { "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ] },
             "services": { "app": { "url": "http://127.0.0.1:18091/", "grace_period": "1s" } } }"#,
    );
    let output = run(&[
        "--config",
        config.path(),
        "--listen",
        "127.0.0.1:18091",
        "--check",
    ])
    .await;
    assert_eq!(output.status.code(), Some(1));
    let said = stderr(&output);
    assert!(
        said.contains("services.app.url") && said.contains("--listen: 127.0.0.1:18091"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_cannot_serve_exits_1() {
    // The admin listener's address is taken: the gateway cannot serve as configured.
    let (taken, config) = admin_address_taken("taken");
    let output = run(&["--config", config.path()]).await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let said = stderr(&output);
    let line = said
        .lines()
        .find(|l| l.contains("admin service cannot listen"))
        .unwrap_or_else(|| panic!("{said}"));
    // Which address is taken: the operator has no other way to tell.
    assert!(
        line.contains(&taken.local_addr().unwrap().to_string()),
        "{line}"
    );
    // Which setting, and what to do.
    assert!(
        line.contains("admin.listen") && line.contains("give admin.listen another port"),
        "{line}"
    );
}

/// The gateway's own address taken (a second gateway started, say): named with its setting,
/// `gateway.listen` or `--listen`, and what to do, before anything is served.
#[tokio::test]
async fn a_listen_address_in_use_names_its_setting_and_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let config = common::TempFile::new(
        "listen-taken",
        &format!(
            r#"{{ "gateway": {{ "listen": "{addr}", "routes": [ {{ "service": "app" }} ] }},
                 "services": {{ "app": {{ "url": "http://127.0.0.1:9/", "grace_period": "1s" }} }} }}"#
        ),
    );
    for (args, field) in [
        (vec!["--config", config.path()], "gateway.listen"),
        (
            vec!["--config", config.path(), "--listen", &addr],
            "--listen",
        ),
    ] {
        let output = run(&args).await;
        assert_eq!(output.status.code(), Some(1));
        let said = stderr(&output);
        assert!(
            said.contains(&format!("cannot listen on {addr} ({field})"))
                && said.contains(&format!("give {field} another port")),
            "{said}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_or_unreadable_rust_log_still_logs_at_info() {
    // A gateway that cannot serve (its admin address is taken) must say why, whatever RUST_LOG.
    let (_taken, config) = admin_address_taken("rust-log");
    // Empty, as `Environment=RUST_LOG=${LEVEL}` gives with LEVEL unset: the default, info.
    let output = run_with_log(&["--config", config.path()], Some("")).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("admin service cannot listen"),
        "silent: {}",
        stderr(&output)
    );
    // A value that does not parse is said, and info is used.
    let output = run_with_log(&["--config", config.path()], Some("tower_monitor=verbose")).await;
    assert_eq!(output.status.code(), Some(1));
    let said = stderr(&output);
    assert!(
        said.lines()
            .any(|l| l.starts_with("tower-monitor-gateway: RUST_LOG: ") && l.contains("info")),
        "{said}"
    );
    assert!(said.contains("admin service cannot listen"), "{said}");
}

#[tokio::test]
async fn a_refused_backend_url_is_named_without_its_password() {
    let config = common::TempFile::new(
        "userinfo",
        r#"{ "gateway": { "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ] },
             "services": { "app": { "url": "http://alice:hunter2@127.0.0.1:9/", "grace_period": "1s" } } }"#,
    );
    let output = run(&["--check", "--config", config.path()]).await;
    assert_eq!(output.status.code(), Some(1));
    let said = stderr(&output);
    assert!(said.contains("services.app.url"), "{said}");
    assert!(
        said.contains("127.0.0.1:9"),
        "the URL is still named: {said}"
    );
    assert!(
        !said.contains("hunter2"),
        "the password was printed: {said}"
    );
}

#[cfg(feature = "fleet")]
#[tokio::test]
async fn a_refused_redis_url_is_named_without_its_password() {
    // A managed Redis with TLS and a password: this build has no TLS for Redis.
    for (tag, redis) in [
        ("tls", "rediss://:hunter2@127.0.0.1:6380/"),
        ("db", "redis://:hunter2@127.0.0.1:6379/zero"),
    ] {
        let config = common::TempFile::new(
            tag,
            &format!(
                r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ] }},
                     "fleet": {{ "redis": "{redis}", "prefix": "p" }},
                     "services": {{ "app": {{ "url": "http://127.0.0.1:9/", "grace_period": "1s" }} }} }}"#
            ),
        );
        let output = run(&["--check", "--config", config.path()]).await;
        assert_eq!(output.status.code(), Some(1), "{tag}");
        let said = stderr(&output);
        assert!(said.contains("fleet.redis"), "{tag}: {said}");
        assert!(
            said.contains("127.0.0.1:63"),
            "{tag}: the URL is still named: {said}"
        );
        assert!(
            !said.contains("hunter2"),
            "{tag}: the password was printed: {said}"
        );
    }
}

/// A configuration whose admin listener's address is taken (by the listener returned, kept
/// for as long as the test needs it taken): a gateway that cannot serve as configured.
fn admin_address_taken(tag: &str) -> (std::net::TcpListener, common::TempFile) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = common::TempFile::new(
        tag,
        &format!(
            r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ] }},
                 "admin": {{ "listen": "{}", "token": "t" }},
                 "services": {{ "app": {{ "url": "http://127.0.0.1:9/", "grace_period": "1s" }} }} }}"#,
            taken.local_addr().unwrap()
        ),
    );
    (taken, config)
}
