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
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_path_buf(),
        };
        return executable(&full)
            .map_err(|why| ProgramProblem::Program(format!("program {shown:?} {why}")));
    }
    if find_in_path(program).is_some() {
        Ok(())
    } else {
        Err(ProgramProblem::Program(format!(
            "program {shown:?} was not found on PATH"
        )))
    }
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
        assert!(check(OsStr::new("./sh"), Some(Path::new("/etc"))).is_err());
    }
}
