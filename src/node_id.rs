//! The node ID: a UUID created on first start and kept in `<data_dir>/node-id`, so that a node
//! keeps its identity across restarts and address changes (Raft membership is keyed by it).

use std::io::Write;
use std::path::Path;

use uuid::Uuid;

/// Why the node id could not be had.
#[derive(Debug, thiserror::Error)]
pub enum NodeIdError {
    /// `-node-id` contradicts the kept id: a configuration mistake (exit 1).
    #[error("{0}")]
    Mismatch(String),
    /// The file is unreadable, corrupt or cannot be written (exit 2).
    #[error("{0}")]
    Storage(String),
}

/// Reads the node id kept in `data_dir`, or creates it (written to a temp file, fsynced, renamed).
/// An operator-given id must match a kept one: two ids for one data_dir is a mistake to stop on.
pub fn load_or_create(data_dir: &Path, given: Option<Uuid>) -> Result<Uuid, NodeIdError> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let kept = Uuid::parse_str(text.trim()).map_err(|_| {
                NodeIdError::Storage(format!(
                    "{} does not hold a UUID; fix or delete it (a new id is then created)",
                    path.display()
                ))
            })?;
            if let Some(g) = given {
                if g != kept {
                    return Err(NodeIdError::Mismatch(format!(
                        "-node-id {g} differs from the id {kept} kept in {}; drop -node-id or delete that file",
                        path.display()
                    )));
                }
            }
            Ok(kept)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = given.unwrap_or_else(Uuid::new_v4);
            std::fs::create_dir_all(data_dir).map_err(|e| {
                NodeIdError::Storage(format!(
                    "cannot create data_dir {}: {e}",
                    data_dir.display()
                ))
            })?;
            let tmp = data_dir.join("node-id.tmp");
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(id.to_string().as_bytes())?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(data_dir)?.sync_all()
            };
            write().map_err(|e| {
                NodeIdError::Storage(format!("cannot write {}: {e}", path.display()))
            })?;
            Ok(id)
        }
        Err(e) => Err(NodeIdError::Storage(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path(), None).unwrap();
        let b = load_or_create(dir.path(), None).unwrap();
        assert_eq!(a, b);
        let e = load_or_create(dir.path(), Some(Uuid::new_v4())).unwrap_err();
        assert!(
            matches!(&e, NodeIdError::Mismatch(m) if m.contains("differs")),
            "{e}"
        );
    }
}
