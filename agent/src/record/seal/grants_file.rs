//! The host key as the signer of the grants file ([`crate::grants::seal`]):
//! Ed25519 over a context line and the grants' canonical JSON, the same
//! key and encoding the records are sealed with.

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _};

use crate::{
    grants::{Grant, GrantSigner},
    record::canonical,
};

/// Put before the canonical grants in what is signed, so a grants
/// signature can never be taken for a record's (or anything else's).
const CONTEXT: &[u8] = b"debugmon grants.json v2\n";

/// The bytes signed for `grants`: the context, then their canonical JSON.
fn signed_bytes(grants: &[Grant]) -> Vec<u8> {
    let value = serde_json::to_value(grants).expect("invariant: grants always serialize");
    let mut out = CONTEXT.to_vec();
    out.extend(canonical::to_vec(&value));
    out
}

impl GrantSigner for SigningKey {
    fn sign_grants(&self, grants: &[Grant]) -> String {
        let sig = self.sign(&signed_bytes(grants));
        base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
    }

    fn verifies(&self, grants: &[Grant], sig: &str) -> bool {
        let Some(sig) = base64::engine::general_purpose::STANDARD
            .decode(sig)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
        else {
            return false;
        };
        self.verifying_key()
            .verify(&signed_bytes(grants), &Signature::from_bytes(&sig))
            .is_ok()
    }

    fn public_key_hex(&self) -> String {
        hex::encode(self.verifying_key().as_bytes())
    }
}
