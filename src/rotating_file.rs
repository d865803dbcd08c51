//! The agent's log file (`log_file`), rotated as Consul rotates it: by size
//! (`log_rotate_bytes`), by age (`log_rotate_duration`), keeping `log_rotate_max_files` of the
//! rotated files (docs/configuration.md, Logging).
//!
//! Our own small writer: tracing-appender rotates by time only, and file-rotate by size or by
//! time but not both at once, nor with Consul's names. The active file keeps its name; on
//! rotation it is renamed `<stem>-<unix nanoseconds><ext>` beside it (`.log` when the name has
//! no extension), which sorts oldest first, and a new active file is opened.
//!
//! Files are created 0640, whatever the agent's umask (0077): logs hold no secrets
//! (docs/security.md, Secrets), and a log shipper in the agent's group may read them.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The mode of every log file.
pub const LOG_FILE_MODE: u32 = 0o640;

/// How many rotated files to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    All,
    None,
    Newest(usize),
}

/// When and how to rotate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// Rotate once the active file holds this many bytes (`None`: no size limit).
    pub max_bytes: Option<u64>,
    /// Rotate once the active file is this old.
    pub max_age: Duration,
    pub keep: Keep,
}

/// An append-only log file that rotates itself before a write once it is due.
#[derive(Debug)]
pub struct RotatingFile {
    dir: PathBuf,
    name: String,
    rotation: Rotation,
    file: File,
    written: u64,
    opened: Instant,
}

impl RotatingFile {
    /// Opens (appending to) `dir/name`.
    pub fn open(dir: &Path, name: &str, rotation: Rotation) -> io::Result<RotatingFile> {
        let file = open_active(&dir.join(name))?;
        let written = file.metadata()?.len();
        Ok(RotatingFile {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            rotation,
            file,
            written,
            opened: Instant::now(),
        })
    }

    /// The active file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    fn due(&self, now: Instant) -> bool {
        let full = self
            .rotation
            .max_bytes
            .is_some_and(|max| self.written >= max);
        full || now.duration_since(self.opened) >= self.rotation.max_age
    }

    /// `stem-` and `ext` of the rotated files' names.
    fn pattern(&self) -> (String, String) {
        let p = Path::new(&self.name);
        let ext = p
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_else(|| ".log".into());
        let stem = if p.extension().is_some() {
            p.file_stem()
                .map_or(self.name.clone(), |s| s.to_string_lossy().into_owned())
        } else {
            self.name.clone()
        };
        (format!("{stem}-"), ext)
    }

    /// Renames the active file aside, opens a new one, and deletes what `keep` does not keep.
    pub fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let (prefix, ext) = self.pattern();
        let mut nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut aside = self.dir.join(format!("{prefix}{nanos}{ext}"));
        while aside.exists() {
            nanos += 1;
            aside = self.dir.join(format!("{prefix}{nanos}{ext}"));
        }
        std::fs::rename(self.path(), &aside)?;
        self.file = open_active(&self.path())?;
        self.written = 0;
        self.opened = Instant::now();
        self.prune()
    }

    /// The rotated files, oldest first.
    pub fn rotated(&self) -> io::Result<Vec<PathBuf>> {
        let (prefix, ext) = self.pattern();
        let mut found: Vec<PathBuf> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(&ext))
                    .is_some_and(|ts| !ts.is_empty() && ts.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|e| e.path())
            .collect();
        found.sort();
        Ok(found)
    }

    fn prune(&self) -> io::Result<()> {
        let rotated = self.rotated()?;
        let drop = match self.rotation.keep {
            Keep::All => 0,
            Keep::None => rotated.len(),
            Keep::Newest(n) => rotated.len().saturating_sub(n),
        };
        for old in &rotated[..drop] {
            std::fs::remove_file(old)?;
        }
        Ok(())
    }
}

fn open_active(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_FILE_MODE)
        .open(path)?;
    // The mode given at creation passes through the umask; set it as meant.
    file.set_permissions(std::fs::Permissions::from_mode(LOG_FILE_MODE))?;
    Ok(file)
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.due(Instant::now()) {
            self.rotate()?;
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotation(max_bytes: Option<u64>, keep: Keep) -> Rotation {
        Rotation {
            max_bytes,
            max_age: Duration::from_secs(3600),
            keep,
        }
    }

    #[test]
    fn rotates_by_size_with_consuls_names_and_keeps_the_newest() {
        let d = tempfile::tempdir().unwrap();
        let mut f = RotatingFile::open(d.path(), "muster.log", rotation(Some(10), Keep::Newest(2)))
            .unwrap();
        for i in 0..5 {
            // Each line fills the file past the limit, so the next write rotates first.
            writeln!(f, "line {i} of the log").unwrap();
        }
        let rotated = f.rotated().unwrap();
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        for r in &rotated {
            let n = r.file_name().unwrap().to_string_lossy().into_owned();
            assert!(n.starts_with("muster-") && n.ends_with(".log"), "{n}");
        }
        // The newest two kept, in order; the active file holds the last line.
        assert!(std::fs::read_to_string(&rotated[0])
            .unwrap()
            .contains("line 2"));
        assert!(std::fs::read_to_string(&rotated[1])
            .unwrap()
            .contains("line 3"));
        assert!(std::fs::read_to_string(f.path())
            .unwrap()
            .contains("line 4"));
        let mode = std::fs::metadata(f.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, LOG_FILE_MODE);
    }

    #[test]
    fn keep_none_deletes_at_once_and_keep_all_keeps_everything() {
        let d = tempfile::tempdir().unwrap();
        let mut f = RotatingFile::open(d.path(), "agent", rotation(Some(1), Keep::None)).unwrap();
        for _ in 0..3 {
            writeln!(f, "x").unwrap();
        }
        assert!(f.rotated().unwrap().is_empty());
        let mut g = RotatingFile::open(d.path(), "all.log", rotation(Some(1), Keep::All)).unwrap();
        for _ in 0..4 {
            writeln!(g, "x").unwrap();
        }
        assert_eq!(g.rotated().unwrap().len(), 3);
        // Without an extension the rotated files get `.log`, as in Consul.
        let e = tempfile::tempdir().unwrap();
        let mut h = RotatingFile::open(e.path(), "agent", rotation(Some(1), Keep::All)).unwrap();
        writeln!(h, "a").unwrap();
        writeln!(h, "b").unwrap();
        let names: Vec<String> = h
            .rotated()
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.len() == 1 && names[0].starts_with("agent-") && names[0].ends_with(".log"));
    }

    #[test]
    fn age_makes_it_due_and_appending_counts_what_was_there() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("m.log"), "0123456789").unwrap();
        let f = RotatingFile::open(d.path(), "m.log", rotation(Some(10), Keep::All)).unwrap();
        assert!(
            f.due(Instant::now()),
            "an existing full file is rotated before a write"
        );
        let g = RotatingFile::open(d.path(), "n.log", rotation(None, Keep::All)).unwrap();
        assert!(!g.due(Instant::now()));
        assert!(g.due(Instant::now() + Duration::from_secs(3600)));
    }
}
