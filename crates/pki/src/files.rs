//! Crash-safe file output: a file is either absent or complete, never half
//! written. Data goes to a temporary file in the same directory, is fsynced,
//! then renamed over the destination, and the directory is fsynced.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::PkiError;

/// Private keys: owner read/write only.
pub const PRIVATE: u32 = 0o600;
/// Certificates, CRLs and config.
pub const PUBLIC: u32 = 0o644;

/// A file written and synced under a temporary name, waiting to be put in
/// place. Dropping it without [`StagedFile::commit`] removes it.
#[derive(Debug)]
pub struct StagedFile {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |error| PkiError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Writes `bytes` to a temporary sibling of `dest` with `mode`, synced.
pub fn stage(dest: &Path, bytes: &[u8], mode: u32) -> Result<StagedFile, PkiError> {
    let dir = parent_dir(dest);
    let name = dest
        .file_name()
        .ok_or_else(|| PkiError::bad_input(dest, "not a file path"))?
        .to_string_lossy();
    let mut nonce = [0u8; 6];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| PkiError::Crypto("no randomness".into()))?;
    let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{name}.{nonce}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    let staged = StagedFile {
        tmp,
        dest: dest.to_path_buf(),
        committed: false,
    };
    file.write_all(bytes).map_err(io_err(&staged.tmp))?;
    file.sync_all().map_err(io_err(&staged.tmp))?;
    Ok(staged)
}

impl StagedFile {
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Renames the file into place and syncs the directory entry.
    pub fn commit(mut self) -> Result<(), PkiError> {
        std::fs::rename(&self.tmp, &self.dest).map_err(io_err(&self.dest))?;
        self.committed = true;
        sync_dir(parent_dir(&self.dest))
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Stages several files and commits them together once all were written.
/// If any write fails, none of them appear.
pub fn write_all_atomic(files: &[(&Path, &[u8], u32)]) -> Result<(), PkiError> {
    let staged = files
        .iter()
        .map(|(p, b, m)| stage(p, b, *m))
        .collect::<Result<Vec<_>, _>>()?;
    for s in staged {
        s.commit()?;
    }
    Ok(())
}

pub fn write_atomic(dest: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    stage(dest, bytes, mode)?.commit()
}

fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

pub fn sync_dir(dir: &Path) -> Result<(), PkiError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn staged_files_appear_only_on_commit_with_their_mode() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("key.pem");
        let staged = stage(&dest, b"secret", PRIVATE).unwrap();
        assert!(!dest.exists());
        staged.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"secret");
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let other = dir.path().join("other.pem");
        drop(stage(&other, b"x", PUBLIC).unwrap());
        assert!(!other.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file left behind"
        );
    }
}
