//! The host's Ed25519 signing key: a 32-byte seed file, mode 0600,
//! created on first use and refused when others can read it.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::Path,
};

use ed25519_dalek::SigningKey;

use super::SealError;

/// Loads the host key, creating it (mode 0600) on first use.
pub fn load_or_create_key(path: &Path) -> Result<SigningKey, SealError> {
    let read_err = |io_error| SealError::ReadKey {
        path: path.to_owned(),
        io_error,
    };
    match fs::metadata(path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SealError::KeyPermissions {
                    path: path.to_owned(),
                    mode,
                });
            }
            let bytes = fs::read(path).map_err(read_err)?;
            let seed: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| SealError::KeyLength {
                    path: path.to_owned(),
                    len: bytes.len(),
                })?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let create_err = |io_error| SealError::CreateKey {
                path: path.to_owned(),
                io_error,
            };
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(create_err)?;
            }
            let mut seed = [0u8; 32];
            getrandom::fill(&mut seed).map_err(SealError::Random)?;
            // create_new: never overwrite a key another process just made.
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(create_err)?;
            f.write_all(&seed).map_err(create_err)?;
            f.sync_all().map_err(create_err)?;
            sync_parent(path).map_err(create_err)?;
            Ok(SigningKey::from_bytes(&seed))
        }
        Err(e) => Err(read_err(e)),
    }
}

pub(super) fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}
