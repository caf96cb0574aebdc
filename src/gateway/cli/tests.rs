//! The command line's parsing, as a user types it.

use super::*;

fn args(list: &[&str]) -> Result<Command, String> {
    parse(list.iter().map(OsString::from))
}

#[test]
fn options_and_their_values_are_read() {
    assert_eq!(
        args(&["--config", "g.json", "--listen", "127.0.0.1:0", "--check"]),
        Ok(Command::Run {
            config: Some("g.json".into()),
            listen: Some("127.0.0.1:0".into()),
            workers: None,
            check: true
        })
    );
    assert_eq!(args(&["--help"]), Ok(Command::Help));
    assert_eq!(args(&["-V"]), Ok(Command::Version));
}

#[test]
fn unknown_options_missing_values_and_stray_arguments_are_errors() {
    assert_eq!(
        args(&["--conifg", "x"]),
        Err("unknown option \"--conifg\"".into())
    );
    assert_eq!(
        args(&["--config"]),
        Err("option --config needs a value".into())
    );
    assert_eq!(
        args(&["--config", "--check"]),
        Err("option --config needs a value".into())
    );
    assert_eq!(
        args(&["x.json"]),
        Err(
            "unexpected argument \"x.json\"; for a configuration file, write --config x.json"
                .into()
        )
    );
}

#[test]
fn an_option_given_twice_is_an_error_not_one_value_ignored() {
    for (list, flag) in [
        (
            &["--config", "a.json", "--config", "b.json"][..],
            "--config",
        ),
        (
            &[
                "--listen",
                "127.0.0.1:1",
                "--check",
                "--listen",
                "127.0.0.1:2",
            ][..],
            "--listen",
        ),
        (&["--workers", "2", "--workers", "3"][..], "--workers"),
    ] {
        assert_eq!(args(list), Err(format!("option {flag} given twice")));
    }
}

#[test]
fn workers_is_a_whole_number_from_one_to_the_bound() {
    let Ok(Command::Run { workers, .. }) = args(&["--workers", "3"]) else {
        panic!("--workers 3 not read");
    };
    assert_eq!(workers.map(NonZeroUsize::get), Some(3));
    // Past the bound, the count once went to an allocation: a panic, or an abort.
    for bad in [
        "0",
        "-1",
        "two",
        "1025",
        "1000000000000",
        "18446744073709551615",
    ] {
        assert_eq!(
            args(&["--workers", bad]),
            Err(format!(
                "option --workers needs a whole number from 1 to 1024, not {bad:?}"
            ))
        );
    }
    assert!(args(&["--workers", "1024"]).is_ok());
}

#[test]
fn a_value_may_follow_an_equals_sign() {
    assert_eq!(
        args(&["--config=g.json", "--listen=127.0.0.1:0", "--workers=2"]),
        Ok(Command::Run {
            config: Some("g.json".into()),
            listen: Some("127.0.0.1:0".into()),
            workers: NonZeroUsize::new(2),
            check: false
        })
    );
    // A path may hold `=` itself: only the first one ends the option's name.
    let Ok(Command::Run { config, .. }) = args(&["--config=a=b.json"]) else {
        panic!("--config=a=b.json not read");
    };
    assert_eq!(config, Some("a=b.json".into()));
    assert_eq!(
        args(&["--config="]),
        Err("option --config needs a value".into())
    );
    assert_eq!(
        args(&["--conifg=x.json"]),
        Err("unknown option \"--conifg\"".into())
    );
    for flag in ["--check", "--help", "--version"] {
        assert_eq!(
            args(&[&format!("{flag}=yes")]),
            Err(format!("option {flag} takes no value"))
        );
    }
    assert_eq!(
        args(&["--config=a.json", "--config", "b.json"]),
        Err("option --config given twice".into())
    );
}
