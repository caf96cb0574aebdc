//! Relative paths in a configuration file count from the file's folder, wherever the
//! `tower-monitor-gateway` program is started from: an operator runs
//! `tower-monitor-gateway --config /etc/gw/config.json` from a home folder, systemd from `/`.
#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const PROGRAM: &str = env!("CARGO_BIN_EXE_tower-monitor-gateway");

/// A folder of its own in the temporary folder, with a `conf` folder (the configuration's)
/// and an `elsewhere` one (where the gateway is started); removed when dropped.
struct Folders(PathBuf);

impl Folders {
    fn new(tag: &str) -> Self {
        let root =
            std::env::temp_dir().join(format!("tower-monitor-paths-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for dir in ["conf", "elsewhere"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        Self(root)
    }

    fn conf(&self) -> PathBuf {
        self.0.join("conf")
    }

    fn elsewhere(&self) -> PathBuf {
        self.0.join("elsewhere")
    }
}

impl Drop for Folders {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes an executable file.
fn script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A gateway configuration with one service, `app`, at `backend`, started by `on_down`.
fn config(backend: std::net::SocketAddr, on_down: &str) -> String {
    format!(
        r#"{{ "gateway": {{ "listen": "127.0.0.1:0", "routes": [ {{ "service": "app" }} ],
                           "services": {{ "app": {{ "hold": {{ "max_wait": "20s" }} }} }} }},
             "services": {{ "app": {{ "url": "http://{backend}/", "grace_period": "30s",
                                      "probe_timeout": "300ms", "on_down": {on_down} }} }} }}"#
    )
}

/// `tower-monitor-gateway --check --config <config>` run in `dir` (at most 20 s).
async fn check_in(dir: &Path, config: &str, path_var: Option<&str>) -> Output {
    let mut command = tokio::process::Command::new(PROGRAM);
    command
        .args(["--check", "--config", config])
        .current_dir(dir)
        .kill_on_drop(true);
    if let Some(path_var) = path_var {
        command.env("PATH", path_var);
    }
    tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .expect("--check finishes")
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_command_is_started_from_the_configuration_folder_wherever_the_gateway_runs() {
    let folders = Folders::new("serve");
    let backend = common::refused_addr().await;
    script(
        &folders.conf().join("backend.sh"),
        &format!(
            "#!/bin/sh\nexec python3 -m http.server {} --bind 127.0.0.1\n",
            backend.port()
        ),
    );
    // The program runs in the configuration's folder too: Python serves this file from there.
    std::fs::write(
        folders.conf().join("where.txt"),
        "the configuration's folder",
    )
    .unwrap();
    std::fs::write(
        folders.conf().join("gateway.json"),
        config(
            backend,
            r#"{ "type": "process", "command": "./backend.sh", "stop_grace": "3s" }"#,
        ),
    )
    .unwrap();

    // Started in another folder, with the configuration's path relative to that one.
    let mut gateway = tokio::process::Command::new(PROGRAM)
        .args(["--config", "../conf/gateway.json"])
        .current_dir(folders.elsewhere())
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = common::listening_addr(&mut gateway).await;

    // Held until the program is up (hold mode), then answered by it.
    let reply = tokio::time::timeout(
        Duration::from_secs(25),
        common::get(addr, "/where.txt", &[]),
    )
    .await
    .expect("the request is answered");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "the configuration's folder");

    common::terminate_gateway_then_backend_is_gone(gateway, backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_resolves_relative_paths_from_the_configuration_folder_and_names_them() {
    let folders = Folders::new("check");
    // As errors name it: without symbolic links (the temporary folder may be one).
    let conf = folders.conf().canonicalize().unwrap();
    let backend = common::refused_addr().await;
    script(&conf.join("backend.sh"), "#!/bin/sh\nexit 0\n");
    script(&conf.join("bad.sh"), "#!/no/such/interpreter\nexit 0\n");
    // In the gateway's current folder only: found there before, it must not be now.
    script(
        &folders.elsewhere().join("missing.sh"),
        "#!/bin/sh\nexit 0\n",
    );
    let shown = |name: &str| format!("{:?}", conf.join(name).display().to_string());

    for (tag, on_down, said) in [
        (
            "good",
            r#"{ "type": "process", "command": "./backend.sh" }"#.to_string(),
            None,
        ),
        (
            "good-command",
            r#"{ "type": "command", "command": "./backend.sh" }"#.to_string(),
            None,
        ),
        (
            "missing",
            r#"{ "type": "process", "command": "./missing.sh" }"#.to_string(),
            Some(format!(
                "services.app.on_down.command: program \"./missing.sh\" (at {}) does not exist",
                shown("missing.sh")
            )),
        ),
        (
            "interpreter",
            r#"{ "type": "process", "command": "./bad.sh" }"#.to_string(),
            Some(format!(
                "services.app.on_down.command: program \"./bad.sh\" (at {}) names the \
                 interpreter \"/no/such/interpreter\", which does not exist",
                shown("bad.sh")
            )),
        ),
        (
            "current-dir",
            r#"{ "type": "process", "command": "sh", "current_dir": "data" }"#.to_string(),
            Some(format!(
                "services.app.on_down.current_dir: {} is not a directory",
                shown("data")
            )),
        ),
        (
            "in-current-dir",
            r#"{ "type": "process", "command": "../backend.sh", "current_dir": "sub" }"#
                .to_string(),
            Some(format!(
                "services.app.on_down.current_dir: {} is not a directory",
                shown("sub")
            )),
        ),
    ] {
        let file = conf.join(format!("{tag}.json"));
        std::fs::write(&file, config(backend, &on_down)).unwrap();
        let config_path = format!("../conf/{tag}.json");
        let output = check_in(&folders.elsewhere(), &config_path, None).await;
        match said {
            None => assert!(output.status.success(), "{tag}: {}", stderr(&output)),
            Some(said) => {
                assert_eq!(output.status.code(), Some(1), "{tag}");
                assert!(
                    stderr(&output).contains(&said),
                    "{tag}: {}",
                    stderr(&output)
                );
            }
        }
    }

    // A waiting page is read from the file's folder, and named there when it is missing.
    let page = r#"{ "gateway": { "listen": "127.0.0.1:0", "routes": [ { "service": "app" } ],
                     "services": { "app": { "waiting_page": "page.html" } } },
         "services": { "app": { "url": "http://127.0.0.1:9/", "grace_period": "1s" } } }"#;
    std::fs::write(conf.join("page.json"), page).unwrap();
    let output = check_in(&folders.elsewhere(), "../conf/page.json", None).await;
    assert_eq!(output.status.code(), Some(1));
    let said = format!(
        "gateway.services.app.waiting_page: cannot read \"page.html\" (at {}): ",
        shown("page.html")
    );
    assert!(stderr(&output).contains(&said), "{}", stderr(&output));
    std::fs::write(conf.join("page.html"), "<p>{service} is starting</p>").unwrap();
    let output = check_in(&folders.elsewhere(), "../conf/page.json", None).await;
    assert!(output.status.success(), "{}", stderr(&output));

    // A relative command counts from a relative current_dir, itself from the file's folder.
    std::fs::create_dir(conf.join("sub")).unwrap();
    let output = check_in(&folders.elsewhere(), "../conf/in-current-dir.json", None).await;
    assert!(output.status.success(), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_name_without_a_slash_is_looked_up_in_path_not_the_configuration_folder() {
    let folders = Folders::new("path");
    let backend = common::refused_addr().await;
    let bin = folders.0.join("bin");
    std::fs::create_dir(&bin).unwrap();
    script(&bin.join("on-path-backend"), "#!/bin/sh\nexit 0\n");
    // Beside the configuration, but a bare name is not a path.
    script(
        &folders.conf().join("beside-backend"),
        "#!/bin/sh\nexit 0\n",
    );
    let path_var = match std::env::var("PATH") {
        Ok(path) => format!("{}:{path}", bin.display()),
        Err(_) => bin.display().to_string(),
    };
    for (name, found) in [("on-path-backend", true), ("beside-backend", false)] {
        let on_down = format!(r#"{{ "type": "process", "command": "{name}" }}"#);
        std::fs::write(
            folders.conf().join(format!("{name}.json")),
            config(backend, &on_down),
        )
        .unwrap();
        let config_path = format!("../conf/{name}.json");
        let output = check_in(&folders.elsewhere(), &config_path, Some(&path_var)).await;
        if found {
            assert!(output.status.success(), "{name}: {}", stderr(&output));
        } else {
            assert_eq!(output.status.code(), Some(1), "{name}");
            let said =
                format!("services.app.on_down.command: program \"{name}\" was not found on PATH");
            assert!(stderr(&output).contains(&said), "{}", stderr(&output));
        }
    }
}
