//! Relative paths in a configuration file count from the file's folder (as docker-compose
//! reads its files), so that a configuration means the same files wherever the program that
//! reads it was started from: by hand in a home folder, or by systemd in `/`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// `path` taken from `base` when it is relative and a base is known; as written otherwise.
pub(crate) fn resolve(base: Option<&Path>, path: &str) -> PathBuf {
    let path = Path::new(path);
    match base {
        Some(base) if path.is_relative() => tidy(&base.join(path)),
        _ => path.to_path_buf(),
    }
}

/// A file a configuration names (`written`, relative to `base`, the configuration file's
/// folder, if there is one), and the words an error names it with: as written, and where it
/// was looked for when that differs, as the file's folder may not be where the operator looks.
#[cfg(feature = "gateway")]
pub(crate) fn locate(base: Option<&Path>, written: &str) -> (PathBuf, String) {
    let base = base.map(absolute);
    let path = resolve(base.as_deref(), written);
    let shown = match path == Path::new(written) {
        true => format!("{written:?}"),
        false => format!("{written:?} (at {:?})", path.display().to_string()),
    };
    (path, shown)
}

/// `base` made absolute (from the current folder; `""`, a file name's parent, is that folder),
/// so that a path resolved from it stays right for a program started in another folder, and
/// reads well in an error (`/etc/gw`, not `/home/me/../../etc/gw`).
pub(crate) fn absolute(base: &Path) -> PathBuf {
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    // A folder that is not there (the configuration was not read from it) stays as it is,
    // made absolute: the paths in it then fail where they are checked, naming it.
    std::fs::canonicalize(base)
        .or_else(|_| std::path::absolute(base).map(|path| tidy(&path)))
        .unwrap_or_else(|_| base.to_path_buf())
}

/// Without its `.` components: `/etc/gw/./backend.sh` is `/etc/gw/backend.sh` (`..` stays:
/// what it means depends on symbolic links).
fn tidy(path: &Path) -> PathBuf {
    path.components().collect()
}

/// The program of a `command` or `process` trigger and the folder it runs in, as its fields
/// say: relative to the configuration's folder when the configuration is a file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Program {
    /// A path (absolute when resolved from a file's folder), or a name without a slash, which
    /// is looked up in `PATH`.
    pub(crate) program: OsString,
    /// `current_dir`, or the configuration file's folder; `None` (the current folder) for a
    /// configuration given as text without `current_dir`.
    pub(crate) working_dir: Option<PathBuf>,
}

impl Program {
    /// A relative `current_dir` counts from `base`; a relative `command` with a slash counts
    /// from the working directory, as a shell started there would take it (and as
    /// [`program::check`](crate::trigger::program::check) checks it). Without a base, both
    /// stay as written, for the program to resolve from the current folder as before.
    pub(crate) fn resolve(base: Option<&Path>, command: &str, current_dir: Option<&str>) -> Self {
        let working_dir = match current_dir {
            Some(dir) => Some(resolve(base, dir)),
            None => base.map(Path::to_path_buf),
        };
        let program = match (&working_dir, base) {
            (Some(dir), Some(_)) if command.contains('/') => resolve(Some(dir), command).into(),
            _ => command.into(),
        };
        Self {
            program,
            working_dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_count_from_the_base() {
        let base = Some(Path::new("/etc/gw"));
        assert_eq!(resolve(base, "page.html"), Path::new("/etc/gw/page.html"));
        assert_eq!(resolve(base, "./a/./b"), Path::new("/etc/gw/a/b"));
        assert_eq!(resolve(base, "/srv/x"), Path::new("/srv/x"));
        assert_eq!(resolve(None, "./x"), Path::new("./x"));
    }

    #[test]
    fn a_program_path_counts_from_its_working_directory_and_a_name_from_path() {
        let base = Some(Path::new("/etc/gw"));
        let resolved = |command, dir| Program::resolve(base, command, dir);
        assert_eq!(
            resolved("./backend.sh", None),
            Program {
                program: "/etc/gw/backend.sh".into(),
                working_dir: Some("/etc/gw".into()),
            }
        );
        assert_eq!(
            resolved("bin/server", Some("app")),
            Program {
                program: "/etc/gw/app/bin/server".into(),
                working_dir: Some("/etc/gw/app".into()),
            }
        );
        assert_eq!(resolved("python3", None).program, "python3");
        assert_eq!(
            resolved("/usr/bin/env", Some("/srv")).program,
            "/usr/bin/env"
        );
        // Without a file, as before: the program resolves them from the current folder.
        assert_eq!(
            Program::resolve(None, "./backend.sh", Some("app")),
            Program {
                program: "./backend.sh".into(),
                working_dir: Some("app".into()),
            }
        );
        assert_eq!(Program::resolve(None, "sh", None).working_dir, None);
    }

    #[test]
    fn a_file_name_alone_is_in_the_current_folder() {
        let here = std::env::current_dir().unwrap().canonicalize().unwrap();
        assert_eq!(absolute(Path::new("")), here);
        assert_eq!(absolute(Path::new("src/../src")), here.join("src"));
        assert_eq!(
            absolute(Path::new("no-such-conf")),
            here.join("no-such-conf")
        );
        assert_eq!(absolute(Path::new("/no/such/gw")), Path::new("/no/such/gw"));
    }
}
