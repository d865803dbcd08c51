//! `log_file` and Consul's rotation keys (`log_rotate_bytes`, `log_rotate_duration`,
//! `log_rotate_max_files`), checked into a [`LogFileConfig`] (docs/configuration.md, Logging).
//!
//! Consul's naming: a path ending in a separator is a directory, and the file in it is named
//! after the program (`muster.log`). The active file keeps its name; a rotated one is renamed
//! `<stem>-<unix nanoseconds><ext>` beside it (`.log` when the name has no extension).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::PartialConfig;
use crate::duration::parse_go_duration;
use crate::rotating_file::{Keep, Rotation};

/// The file's name when `log_file` names a directory (Consul's is `consul.log`).
pub const DEFAULT_LOG_FILE_NAME: &str = "muster.log";
/// Consul's default `log_rotate_duration`.
pub const DEFAULT_ROTATE_DURATION: Duration = Duration::from_secs(24 * 3600);
/// The shortest `log_rotate_duration` taken: anything shorter makes a file per few lines.
pub const MIN_ROTATE_DURATION: Duration = Duration::from_secs(1);

/// Where the agent writes its log file, and when it rotates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFileConfig {
    /// The directory of the active file and the rotated ones.
    pub dir: PathBuf,
    /// The active file's name.
    pub name: String,
    /// `log_rotate_bytes` (`0`, the default: no size limit), `log_rotate_duration` and
    /// `log_rotate_max_files` (`0`: keep all, `-1`: keep none).
    pub rotation: Rotation,
}

impl LogFileConfig {
    /// The active file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }
}

/// Checks `log_file` and the rotation keys; `None` when there is no `log_file`.
pub(super) fn finish_log_file(
    p: &PartialConfig,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Option<LogFileConfig> {
    let Some(path) = &p.log_file else {
        if p.log_rotate_bytes.is_some()
            || p.log_rotate_duration.is_some()
            || p.log_rotate_max_files.is_some()
        {
            warnings.push(
                "log_rotate_bytes, log_rotate_duration and log_rotate_max_files do nothing \
                 without log_file; set log_file (or -log-file) to write a log file"
                    .into(),
            );
        }
        return None;
    };
    let shown = path.display().to_string();
    let (dir, name) = split(path);
    let mut ok = true;
    if shown.is_empty() {
        errors.push("log_file is empty: give a file, or a directory ending in /".into());
        ok = false;
    } else if !dir.is_dir() {
        errors.push(format!(
            "log_file {shown:?}: the directory {} does not exist (or is not a directory); \
             create it first",
            dir.display()
        ));
        ok = false;
    } else if dir.join(&name).is_dir() {
        errors.push(format!(
            "log_file {shown:?} is a directory: end it with / to write {DEFAULT_LOG_FILE_NAME} in it"
        ));
        ok = false;
    }
    let rotate_bytes = match p.log_rotate_bytes {
        None | Some(0) => None,
        Some(n) if n < 0 => {
            errors.push(format!(
                "log_rotate_bytes = {n}: give a number of bytes, or 0 for no size limit"
            ));
            ok = false;
            None
        }
        Some(n) => Some(n as u64),
    };
    let rotate_duration = match p.log_rotate_duration.as_deref() {
        None => DEFAULT_ROTATE_DURATION,
        Some(s) => match parse_go_duration(s) {
            // Consul's meaning of 0: the default.
            Ok(d) if d.is_zero() => DEFAULT_ROTATE_DURATION,
            Ok(d) if d < MIN_ROTATE_DURATION => {
                errors.push(format!(
                    "log_rotate_duration {s:?} is too short: use at least 1s (the default is 24h)"
                ));
                ok = false;
                DEFAULT_ROTATE_DURATION
            }
            Ok(d) => d,
            Err(why) => {
                errors.push(format!("log_rotate_duration: {why}"));
                ok = false;
                DEFAULT_ROTATE_DURATION
            }
        },
    };
    let keep = match p.log_rotate_max_files {
        None | Some(0) => Keep::All,
        Some(-1) => Keep::None,
        Some(n) if n > 0 => Keep::Newest(n as usize),
        Some(n) => {
            errors.push(format!(
                "log_rotate_max_files = {n}: give N > 0 to keep N rotated files, 0 to keep all, \
                 -1 to keep none"
            ));
            ok = false;
            Keep::All
        }
    };
    ok.then_some(LogFileConfig {
        dir,
        name,
        rotation: Rotation {
            max_bytes: rotate_bytes,
            max_age: rotate_duration,
            keep,
        },
    })
}

/// Consul's reading of the path: ending in a separator, a directory holding the default name.
fn split(path: &Path) -> (PathBuf, String) {
    let text = path.to_string_lossy();
    if text.ends_with('/') {
        return (path.to_path_buf(), DEFAULT_LOG_FILE_NAME.into());
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| DEFAULT_LOG_FILE_NAME.into());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    (dir, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(p: PartialConfig) -> (Option<LogFileConfig>, Vec<String>, Vec<String>) {
        let (mut e, mut w) = (Vec::new(), Vec::new());
        let c = finish_log_file(&p, &mut e, &mut w);
        (c, e, w)
    }

    #[test]
    fn a_trailing_separator_names_a_directory_and_defaults_apply() {
        let d = tempfile::tempdir().unwrap();
        let (c, e, _) = check(PartialConfig {
            log_file: Some(PathBuf::from(format!("{}/", d.path().display()))),
            ..Default::default()
        });
        let c = c.unwrap_or_else(|| panic!("{e:?}"));
        assert_eq!(c.name, "muster.log");
        assert_eq!(c.rotation.max_age, DEFAULT_ROTATE_DURATION);
        assert_eq!((c.rotation.max_bytes, c.rotation.keep), (None, Keep::All));
        let (c, _, _) = check(PartialConfig {
            log_file: Some(d.path().join("agent")),
            log_rotate_bytes: Some(100),
            log_rotate_max_files: Some(-1),
            ..Default::default()
        });
        let c = c.unwrap();
        assert_eq!(
            (c.name.as_str(), c.rotation.max_bytes),
            ("agent", Some(100))
        );
        assert_eq!(c.rotation.keep, Keep::None);
    }

    #[test]
    fn bad_values_name_the_key() {
        let d = tempfile::tempdir().unwrap();
        let (_, e, _) = check(PartialConfig {
            log_file: Some(d.path().join("no/such/dir/x.log")),
            log_rotate_bytes: Some(-5),
            log_rotate_duration: Some("10ms".into()),
            log_rotate_max_files: Some(-2),
            ..Default::default()
        });
        let all = e.join("\n");
        for want in [
            "does not exist",
            "log_rotate_bytes = -5",
            "log_rotate_duration \"10ms\"",
            "log_rotate_max_files = -2",
        ] {
            assert!(all.contains(want), "no {want:?} in {all}");
        }
        let (_, e, _) = check(PartialConfig {
            log_file: Some(d.path().to_path_buf()),
            ..Default::default()
        });
        assert!(e[0].contains("is a directory: end it with /"), "{e:?}");
        let (c, e, w) = check(PartialConfig {
            log_rotate_bytes: Some(5),
            ..Default::default()
        });
        assert!(c.is_none() && e.is_empty() && w[0].contains("without log_file"));
    }
}
