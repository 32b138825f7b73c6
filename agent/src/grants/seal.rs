//! The seal on the grants file: the grants are signed with the host key
//! over their canonical JSON, so a grant added, stretched or changed by
//! someone who can write the file (but cannot read the key) is refused on
//! load instead of used. The store is given a [`GrantSigner`] by whoever
//! holds the key; it never reaches for the key itself.

use serde::{Deserialize, Serialize};

use super::Grant;

/// Signs and checks the grants with the host key. Implemented by the
/// holder of the key ([`crate::record::seal`], for the Ed25519 key over
/// the grants' canonical JSON), so the store needs neither the key nor
/// the encoding.
pub trait GrantSigner: Send + Sync {
    /// Standard base64 of the signature of `grants`.
    fn sign_grants(&self, grants: &[Grant]) -> String;
    /// Whether `sig` (as [`Self::sign_grants`] gives it) signs `grants`
    /// with this key.
    fn verifies(&self, grants: &[Grant], sig: &str) -> bool;
    /// Hex of the public key, written beside the signature.
    fn public_key_hex(&self) -> String;
}

/// Version of the sealed format (1 was the unsigned file).
pub const SEALED_VERSION: u32 = 2;

/// The file as written: the grants, the signature and the signer's key.
#[derive(Serialize, Deserialize)]
pub struct SealedFile {
    pub version: u32,
    pub grants: Vec<Grant>,
    /// Standard base64 of the signature; absent in an unsigned file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
    /// Hex of the public key that signed (informative: the check uses
    /// this host's key, never the one the file names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Why a grants file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealFault {
    #[error(
        "it is unsigned (written before grants were sealed, or its signature was removed); re-issue the grants with `debugmon grant`"
    )]
    Unsigned,
    #[error("it was signed by key {found}, not by this host's key {ours}")]
    OtherKey { found: String, ours: String },
    #[error("its signature does not match its grants: the file was edited after it was written")]
    Mismatch,
    #[error("its version {0} is not one this agent reads")]
    Version(u32),
    /// Not a grants file at all: refused like a bad seal, so whoever can
    /// write the file cannot keep the agent from starting.
    #[error("it is not a grants file ({0})")]
    Unreadable(String),
}

/// The file for `grants`, signed by `signer`.
pub fn seal(grants: Vec<Grant>, signer: &dyn GrantSigner) -> SealedFile {
    SealedFile {
        version: SEALED_VERSION,
        sig: Some(signer.sign_grants(&grants)),
        key: Some(signer.public_key_hex()),
        grants,
    }
}

/// The grants of `file` when its signature verifies with `signer`'s key.
pub fn open(file: SealedFile, signer: &dyn GrantSigner) -> Result<Vec<Grant>, SealFault> {
    let Some(sig) = file.sig.as_deref() else {
        return Err(SealFault::Unsigned);
    };
    if file.version != SEALED_VERSION {
        return Err(SealFault::Version(file.version));
    }
    let ours = signer.public_key_hex();
    if let Some(found) = file.key.as_deref().filter(|k| *k != ours) {
        return Err(SealFault::OtherKey {
            found: found.to_owned(),
            ours,
        });
    }
    if !signer.verifies(&file.grants, sig) {
        return Err(SealFault::Mismatch);
    }
    Ok(file.grants)
}
