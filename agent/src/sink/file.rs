//! Appends records (JSON lines) to a file and rotates it by size, keeping
//! `keep` old files: `records.jsonl`, `records.jsonl.1` (newest) ...
//! `records.jsonl.<keep>` (oldest). Batches are written whole, so a file
//! never ends in the middle of a record; rotation happens between batches.
//! Synchronous on purpose: the caller runs it on the delivery stage's
//! writer thread.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum FileSinkError {
    #[error("record file {path}")]
    Io {
        path: PathBuf,
        #[source]
        io_error: io::Error,
    },
    #[error("record file settings: {0}")]
    Config(String),
}

/// Settings (config file section `[file]`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSinkConfig {
    pub path: PathBuf,
    /// Rotate when the next batch would take the file past this size.
    pub max_bytes: u64,
    /// Rotated files kept (0: the file is truncated instead).
    pub keep: usize,
}

impl Default for FileSinkConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/var/log/debugmon/records.jsonl"),
            max_bytes: 100 << 20,
            keep: 5,
        }
    }
}

#[derive(Debug)]
pub struct RotatingFile {
    cfg: FileSinkConfig,
    file: File,
    size: u64,
    rotations: u64,
}

fn rotated(path: &Path, n: usize) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl RotatingFile {
    pub fn open(cfg: FileSinkConfig) -> Result<Self, FileSinkError> {
        if cfg.max_bytes == 0 {
            return Err(FileSinkError::Config("max_bytes must be above 0".into()));
        }
        let err = |io_error| FileSinkError::Io {
            path: cfg.path.clone(),
            io_error,
        };
        if let Some(dir) = cfg.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(err)?;
        }
        let file = Self::open_file(&cfg.path).map_err(err)?;
        let size = file.metadata().map_err(err)?.len();
        Ok(Self {
            cfg,
            file,
            size,
            rotations: 0,
        })
    }

    fn open_file(path: &Path) -> io::Result<File> {
        // Records may hold who ran what: not for every local user.
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
    }

    fn err(&self, path: &Path) -> impl FnOnce(io::Error) -> FileSinkError {
        let path = path.to_owned();
        move |io_error| FileSinkError::Io { path, io_error }
    }

    /// Writes a batch of whole lines, rotating first when it would not fit.
    pub fn write_batch(&mut self, batch: &[u8]) -> Result<(), FileSinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        if self.size > 0 && self.size + batch.len() as u64 > self.cfg.max_bytes {
            self.rotate()?;
        }
        self.file
            .write_all(batch)
            .map_err(self.err(&self.cfg.path))?;
        self.size += batch.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), FileSinkError> {
        let path = self.cfg.path.clone();
        self.file.sync_data().map_err(self.err(&path))?;
        if self.cfg.keep == 0 {
            self.file.set_len(0).map_err(self.err(&path))?;
        } else {
            let oldest = rotated(&path, self.cfg.keep);
            match fs::remove_file(&oldest) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(self.err(&oldest)(e)),
                _ => {}
            }
            for n in (1..self.cfg.keep).rev() {
                let from = rotated(&path, n);
                match fs::rename(&from, rotated(&path, n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(self.err(&from)(e));
                    }
                    _ => {}
                }
            }
            fs::rename(&path, rotated(&path, 1)).map_err(self.err(&path))?;
            self.file = Self::open_file(&path).map_err(self.err(&path))?;
        }
        self.size = 0;
        self.rotations += 1;
        Ok(())
    }

    /// fsyncs the current file.
    pub fn sync(&mut self) -> Result<(), FileSinkError> {
        self.file.sync_data().map_err(self.err(&self.cfg.path))
    }

    /// Rotations since open.
    pub fn rotations(&self) -> u64 {
        self.rotations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn rotates_by_size_keeping_n_files_of_whole_lines() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("logs/records.jsonl");
        let mut f = RotatingFile::open(FileSinkConfig {
            path: path.clone(),
            max_bytes: 30,
            keep: 2,
        })
        .unwrap();
        for i in 0..10 {
            f.write_batch(format!("{{\"seq\":{i:02}}}\n").as_bytes())
                .unwrap();
        }
        f.sync().unwrap();
        // 11-byte lines, 2 per file: 0-1, 2-3, ..., 8-9.
        assert_eq!(f.rotations(), 4);
        assert_eq!(lines(&path), ["{\"seq\":08}", "{\"seq\":09}"]);
        assert_eq!(lines(&rotated(&path, 1)), ["{\"seq\":06}", "{\"seq\":07}"]);
        assert_eq!(lines(&rotated(&path, 2)), ["{\"seq\":04}", "{\"seq\":05}"]);
        assert!(!rotated(&path, 3).exists());
    }

    #[test]
    fn reopening_appends_and_counts_the_existing_size() {
        let d = tempfile::tempdir().unwrap();
        let cfg = FileSinkConfig {
            path: d.path().join("r.jsonl"),
            max_bytes: 20,
            keep: 1,
        };
        RotatingFile::open(cfg.clone())
            .unwrap()
            .write_batch(b"aaaaaaaaaaaa\n")
            .unwrap();
        let mut f = RotatingFile::open(cfg.clone()).unwrap();
        f.write_batch(b"bbbbbbbbbbbb\n").unwrap();
        assert_eq!(f.rotations(), 1);
        assert_eq!(lines(&cfg.path), ["bbbbbbbbbbbb"]);
        assert_eq!(lines(&rotated(&cfg.path, 1)), ["aaaaaaaaaaaa"]);
        // An oversized batch still lands whole in a fresh file.
        f.write_batch(&[b'c'; 50]).unwrap();
        assert_eq!(fs::read(&cfg.path).unwrap().len(), 50);
        assert!(
            RotatingFile::open(FileSinkConfig {
                max_bytes: 0,
                ..cfg
            })
            .is_err()
        );
    }
}
