//! An example's executable, built as `cargo run --example NAME` builds it.

use std::path::PathBuf;

/// The example `name`'s executable, built in this test's profile (`cargo test --all-targets`
/// builds examples only as test harnesses, which run no `main`).
pub fn example_binary(name: &str) -> PathBuf {
    let test_exe = std::env::current_exe().unwrap();
    let profile_dir = test_exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .to_path_buf();
    let mut cargo = std::process::Command::new(env!("CARGO"));
    cargo
        .args(["build", "--quiet", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir
        .file_name()
        .is_some_and(|profile| profile == "release")
    {
        cargo.arg("--release");
    }
    let status = cargo.status().expect("cargo runs");
    assert!(status.success(), "building the {name} example failed");
    let binary = profile_dir.join("examples").join(name);
    assert!(binary.is_file(), "{} was not built", binary.display());
    binary
}
