//! Whether a program can be started at all: checked when a configuration is read, so a typo
//! is one clear error at start instead of a failure on every request.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// Which setting is wrong, and why (the message names the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ProgramProblem {
    /// The program cannot be found or run.
    Program(String),
    /// The working directory is not a directory.
    CurrentDir(String),
}

/// Checks that `current_dir` (if any) is a directory and that `program` exists and may be
/// executed: a program with a slash is a path (a relative one counts from `current_dir` when
/// given, as the program will be started there); one without is looked up in `PATH`.
pub(crate) fn check(program: &OsStr, current_dir: Option<&Path>) -> Result<(), ProgramProblem> {
    if let Some(dir) = current_dir {
        if !dir.is_dir() {
            return Err(ProgramProblem::CurrentDir(format!(
                "{:?} is not a directory",
                dir.display().to_string()
            )));
        }
    }
    let shown = program.to_string_lossy().into_owned();
    if shown.trim().is_empty() {
        return Err(ProgramProblem::Program("must name a program".to_string()));
    }
    let path = Path::new(program);
    if path.components().count() > 1 || shown.contains('/') {
        let full = match current_dir {
            // Without its `.` components: `/etc/gw/./backend.sh` reads as `/etc/gw/backend.sh`.
            Some(dir) if path.is_relative() => dir.join(path).components().collect(),
            _ => path.to_path_buf(),
        };
        let named = named_at(&shown, &full);
        executable(&full)
            .map_err(|why| ProgramProblem::Program(format!("program {named} {why}")))?;
        return interpreter(&full)
            .map_err(|why| ProgramProblem::Program(format!("program {named} {why}")));
    }
    match find_in_path(program) {
        Some(found) => interpreter(&found)
            .map_err(|why| ProgramProblem::Program(format!("program {shown:?} {why}"))),
        None => Err(ProgramProblem::Program(format!(
            "program {shown:?} was not found on PATH"
        ))),
    }
}

/// A script's interpreter (its `#!` line), when it names one by its full path: one that does
/// not exist fails every start with "No such file or directory", which reads as if the
/// script itself were missing.
fn interpreter(script: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let read = std::fs::File::open(script).and_then(|mut file| file.read(&mut head));
    let Ok(read) = read else {
        // Unreadable (execute-only, say): the kernel reads it, this check cannot.
        return Ok(());
    };
    let Some(line) = head[..read].strip_prefix(b"#!") else {
        return Ok(());
    };
    let line = line.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let Some(named) = line.split_whitespace().next() else {
        return Ok(());
    };
    let path = Path::new(named);
    if !path.is_absolute() {
        return Ok(());
    }
    executable(path).map_err(|why| format!("names the interpreter {named:?}, which {why}"))
}

/// The first executable file named `program` in a `PATH` directory.
pub(crate) fn find_in_path(program: &OsStr) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate).is_ok())
}

fn executable(path: &Path) -> Result<(), &'static str> {
    let meta = std::fs::metadata(path).map_err(|_| "does not exist")?;
    if !meta.is_file() {
        return Err("is not a file");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o111 == 0 {
            return Err("is not executable");
        }
    }
    Ok(())
}

/// A path as written, and where it resolved to when that differs (a relative path): an error
/// names both, so that an operator sees which folder it was looked for in.
pub(crate) fn named_at(written: &str, resolved: &Path) -> String {
    let resolved = resolved.display().to_string();
    if resolved == written {
        format!("{written:?}")
    } else {
        format!("{written:?} (at {resolved:?})")
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_on_path_and_by_path() {
        assert_eq!(check(OsStr::new("sh"), None), Ok(()));
        assert_eq!(check(OsStr::new("/bin/sh"), None), Ok(()));
        assert_eq!(check(OsStr::new("sh"), Some(Path::new("/"))), Ok(()));
    }

    #[test]
    fn a_script_whose_interpreter_is_missing_is_named() {
        let dir =
            std::env::temp_dir().join(format!("tower-monitor-shebang-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = |name: &str, text: &str| {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let bad = script("bad.sh", "#!/no/such/interpreter -e\necho hi\n");
        let Err(ProgramProblem::Program(why)) = check(bad.as_os_str(), None) else {
            panic!("a script with a missing interpreter passed")
        };
        assert!(
            why.contains("names the interpreter \"/no/such/interpreter\", which does not exist"),
            "{why}"
        );
        let good = script("good.sh", "#!/bin/sh\necho hi\n");
        assert_eq!(check(good.as_os_str(), None), Ok(()));
        let plain = script("plain.sh", "echo hi\n");
        assert_eq!(check(plain.as_os_str(), None), Ok(()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names_what_is_wrong() {
        let Err(ProgramProblem::Program(why)) = check(OsStr::new("no-such-program-xyz"), None)
        else {
            panic!("a missing program passed")
        };
        assert!(
            why.contains("\"no-such-program-xyz\"") && why.contains("PATH"),
            "{why}"
        );
        let Err(ProgramProblem::Program(why)) = check(OsStr::new("/etc/hostname-nope"), None)
        else {
            panic!("a missing path passed")
        };
        assert!(why.contains("does not exist"), "{why}");
        let Err(ProgramProblem::Program(why)) = check(OsStr::new("/"), None) else {
            panic!("a directory passed as a program")
        };
        assert!(why.contains("is not a file"), "{why}");
        let Err(ProgramProblem::Program(why)) = check(OsStr::new("/etc/passwd"), None) else {
            panic!("a file without execute permission passed")
        };
        assert!(why.contains("is not executable"), "{why}");
        assert!(matches!(
            check(OsStr::new("sh"), Some(Path::new("/no/such/dir"))),
            Err(ProgramProblem::CurrentDir(why)) if why.contains("\"/no/such/dir\"")
        ));
    }

    #[test]
    fn a_relative_path_counts_from_the_working_directory() {
        assert_eq!(check(OsStr::new("./sh"), Some(Path::new("/bin"))), Ok(()));
        assert_eq!(
            check(OsStr::new("./sh"), Some(Path::new("/etc"))),
            Err(ProgramProblem::Program(
                "program \"./sh\" (at \"/etc/sh\") does not exist".into()
            ))
        );
    }
}
