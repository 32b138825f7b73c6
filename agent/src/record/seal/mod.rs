//! Tamper evidence: every record gets `seq`, `prev_hash` and `hash`; alerts,
//! denials, `agent` records, a restart's first record and the last record
//! of a group the caller wants signed also get `sig`.
//!
//! - `hash` = hex SHA-256 of the [canonical](super::canonical) encoding of
//!   the record without `hash` and `sig`;
//! - `sig` = standard base64 (padded) of the Ed25519 signature of the 32 raw
//!   bytes of that digest, with the host key. Through the `prev_hash`
//!   links it vouches for every record before it as well, so a record
//!   without `sig` is proven by the next signed record it links to. A
//!   signature costs more than all else about a record: the delivery stage
//!   asks for one per group at most every [`crate::sink::SIGN_INTERVAL`].
//!   Alerts and denials are always signed so that the alert stream
//!   verifies record by record;
//! - `prev_hash` = `hash` of the record before (64 zeros before seq 1);
//! - the emitted line is the canonical encoding of the whole record, `\n`.
//!
//! `seq` continues across restarts and is never reused once a record was
//! released. Two files in the state directory make that cheap:
//!
//! - `seal.state` (JSON, written atomically and fsync'd): the highest seq
//!   *reserved* plus the tip known at that moment. Seqs are reserved in
//!   blocks, so the fsync is paid once per [`RESERVE_BLOCK`] records.
//! - `seal.tip` (44 bytes, overwritten in place by [`Sealer::persist_tip`]
//!   once per delivered group, not fsync'd): the exact tip. It survives
//!   `kill -9` (the page cache does).
//!
//! On open the tip is, in order of preference: the tip of the log the
//! caller releases records through (the spool: [`Sealer::open_with_tip`]),
//! the `seal.tip` file, or nothing. Neither is trusted after an unclean
//! stop followed by a reboot (`seal.state` keeps the boot id): the page
//! cache may have lost records that were already released. Then, and when
//! neither is usable (lost state), the chain restarts after the reserved
//! block and the first record says so in a signed `chain` member
//! (`start: "skipped"`, `prev_seq` and the range `skipped`): the new record
//! links back to `prev_seq`, and records of the range that had been
//! released before the loss stay valid, so a verifier can tell a declared
//! restart from a deleted record. The first record after every open
//! carries `chain.start` (`genesis`, `clean`, `recovered` or `skipped`):
//! the chain notes restarts.

use std::{
    borrow::Cow,
    fs::{self, File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{FileExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use thiserror::Error;

mod key;
mod line;

mod grants_file;

pub use self::key::load_or_create_key;
use self::{
    key::sync_parent,
    line::{quoted, splice_members},
};
pub use super::alert::{alert_severity, severity_of};
use super::canonical;

/// Seqs reserved per fsync of `seal.state`.
pub const RESERVE_BLOCK: u64 = 4096;
/// `prev_hash` of the first record of a chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Members the sealer owns; a record handed to [`Sealer::seal`] must not have them.
pub const SEAL_FIELDS: [&str; 5] = ["seq", "prev_hash", "hash", "sig", "chain"];

const STATE_FILE: &str = "seal.state";
const TIP_FILE: &str = "seal.tip";
const TIP_LEN: usize = 8 + 32 + 4;

#[derive(Debug, Error)]
pub enum SealError {
    #[error("creating the host key {path}")]
    CreateKey {
        path: PathBuf,
        #[source]
        io_error: io::Error,
    },
    #[error("reading the host key {path}")]
    ReadKey {
        path: PathBuf,
        #[source]
        io_error: io::Error,
    },
    #[error(
        "host key {path} is readable by group or others (mode {mode:o}): refusing it; chmod 600 it"
    )]
    KeyPermissions { path: PathBuf, mode: u32 },
    #[error("host key {path} holds {len} bytes, expected a 32-byte Ed25519 seed")]
    KeyLength { path: PathBuf, len: usize },
    #[error("drawing random bytes for a new host key")]
    Random(#[source] getrandom::Error),
    #[error("seal state {path}")]
    State {
        path: PathBuf,
        #[source]
        io_error: io::Error,
    },
    #[error("seal state {path} is corrupt: {reason}")]
    CorruptState { path: PathBuf, reason: String },
    #[error("the record already has the sealer's member `{0}`")]
    ReservedField(&'static str),
    #[error("the record has no string member `kind`")]
    NoKind,
    #[error("the line to seal is not a JSON object")]
    NotJson(#[source] serde_json::Error),
    #[error("seq space exhausted")]
    SeqExhausted,
}

/// The last released record of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTip {
    pub seq: u64,
    /// Hex SHA-256, as in the record's `hash`.
    pub hash: String,
}

/// A sealed record, ready for the sinks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub seq: u64,
    pub hash: String,
    pub kind: String,
    /// Set when the record is an alert or a denial (it also goes to
    /// `<prefix>.alert.<host>.<severity>`): `decision.severity`, or
    /// `"unspecified"` for an alert/deny decision without one.
    pub severity: Option<String>,
    /// Canonical JSON of the whole record, then `\n`.
    pub line: Vec<u8>,
    /// The record carries `sig`.
    pub signed: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    version: u32,
    /// Highest seq that may have been used.
    reserved: u64,
    /// Tip when this state was written (exact when `clean`).
    seq: u64,
    hash: String,
    /// Written by [`Sealer::close`]: no record was sealed after it.
    clean: bool,
    /// Boot the state was written in (empty in states from before it was
    /// kept: treated as another boot).
    #[serde(default)]
    boot_id: String,
    /// Seq of the record `hash` belongs to, when that is not `seq`: after
    /// a declared skip, until the first new record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hash_seq: Option<u64>,
}

/// Owns the host key and the chain state.
pub struct Sealer {
    key: SigningKey,
    state_path: PathBuf,
    tip_file: File,
    next_seq: u64,
    prev_hash: String,
    /// Seq of the record `prev_hash` belongs to (below `next_seq - 1`
    /// after a declared skip).
    prev_seq: u64,
    reserved: u64,
    /// `chain` member for the first record after open.
    note: Option<Value>,
    boot_id: String,
    /// The tip `seal.tip` holds, to skip rewriting it unchanged.
    persisted: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Sealer")
            .field("next_seq", &self.next_seq)
            .field("reserved", &self.reserved)
            .finish_non_exhaustive()
    }
}

fn read_tip(f: &File) -> Option<ChainTip> {
    let mut buf = [0u8; TIP_LEN];
    f.read_exact_at(&mut buf, 0).ok()?;
    let crc = u32::from_le_bytes(buf[40..44].try_into().ok()?);
    if crc32fast::hash(&buf[..40]) != crc {
        return None;
    }
    Some(ChainTip {
        seq: u64::from_le_bytes(buf[..8].try_into().ok()?),
        hash: hex::encode(&buf[8..40]),
    })
}

impl Sealer {
    /// Opens the chain from its own state (use when records are released
    /// right after sealing, without a spool).
    pub fn open(state_dir: &Path, key_path: &Path) -> Result<Self, SealError> {
        Self::open_with_tip(state_dir, key_path, None)
    }

    /// Opens the chain; `released` is the last record of the durable log
    /// every sealed record is appended to before release (the spool's
    /// `Spool::last_appended` in `crate::spool`). It wins over `seal.tip`:
    /// records sealed but never appended were never released, so their
    /// seqs may be used again.
    pub fn open_with_tip(
        state_dir: &Path,
        key_path: &Path,
        released: Option<ChainTip>,
    ) -> Result<Self, SealError> {
        let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        Self::open_in_boot(state_dir, key_path, released, boot_id)
    }

    /// [`Self::open_with_tip`] as if running in boot `boot_id` (an empty
    /// id never matches, so the tips are not trusted).
    pub fn open_in_boot(
        state_dir: &Path,
        key_path: &Path,
        released: Option<ChainTip>,
        boot_id: String,
    ) -> Result<Self, SealError> {
        let key = load_or_create_key(key_path)?;
        let state_err = |path: &Path| {
            let path = path.to_owned();
            move |io_error| SealError::State { path, io_error }
        };
        fs::create_dir_all(state_dir).map_err(state_err(state_dir))?;
        let state_path = state_dir.join(STATE_FILE);
        let tip_path = state_dir.join(TIP_FILE);
        let state = match fs::read(&state_path) {
            Ok(bytes) => Some(serde_json::from_slice::<State>(&bytes).map_err(|e| {
                SealError::CorruptState {
                    path: state_path.clone(),
                    reason: e.to_string(),
                }
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(state_err(&state_path)(e)),
        };
        let tip_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&tip_path)
            .map_err(state_err(&tip_path))?;
        let own_tip = read_tip(&tip_file);

        // (numbering continues after `tip.seq`, linking to record `link`)
        let (tip, link, note) = match state {
            None => match released.or(own_tip) {
                // State lost but a log survived: continue it.
                Some(t) => {
                    let link = t.seq;
                    (t, link, json_note("recovered", None))
                }
                None => (
                    ChainTip {
                        seq: 0,
                        hash: GENESIS_HASH.to_owned(),
                    },
                    0,
                    json_note("genesis", None),
                ),
            },
            Some(s) if !s.clean && (boot_id.is_empty() || s.boot_id != boot_id) => {
                // Killed, then a reboot (power loss?): released records
                // may be missing from the spool and seal.tip, so no seq up
                // to the reserved bound may be used again. The new record
                // links back to the *oldest* tip that survived: every copy
                // of the chain (NATS, a file sink, the spool) holds at
                // least that far, so the link can always be checked.
                let state_tip = ChainTip {
                    seq: s.hash_seq.unwrap_or(s.seq),
                    hash: s.hash.clone(),
                };
                let last = [released, own_tip, Some(state_tip)]
                    .into_iter()
                    .flatten()
                    .filter(|t| t.seq <= s.reserved)
                    .min_by_key(|t| t.seq)
                    .expect("invariant: the state's own tip is a candidate");
                let skipped =
                    (last.seq < s.reserved).then_some((last.seq, last.seq + 1, s.reserved));
                (
                    ChainTip {
                        seq: s.reserved,
                        hash: last.hash,
                    },
                    last.seq,
                    json_note("skipped", skipped),
                )
            }
            Some(s) => {
                let fits = |t: &ChainTip| t.seq <= s.reserved && t.seq >= s.seq;
                if let Some(t) = released.filter(fits) {
                    let how = if s.clean && t.seq == s.seq {
                        "clean"
                    } else {
                        "recovered"
                    };
                    let link = t.seq;
                    (t, link, json_note(how, None))
                } else if let Some(t) = own_tip.filter(fits) {
                    let how = if s.clean && t.seq == s.seq {
                        "clean"
                    } else {
                        "recovered"
                    };
                    let link = t.seq;
                    (t, link, json_note(how, None))
                } else if s.clean {
                    (
                        ChainTip {
                            seq: s.seq,
                            hash: s.hash.clone(),
                        },
                        s.hash_seq.unwrap_or(s.seq),
                        json_note("clean", None),
                    )
                } else {
                    // The exact tip is gone: skip the whole reserved block
                    // so no seq that may have been released is reused.
                    let link = s.hash_seq.unwrap_or(s.seq);
                    let from = link + 1;
                    let to = s.reserved;
                    let skipped = (from <= to).then_some((link, from, to));
                    (
                        ChainTip {
                            seq: s.reserved,
                            hash: s.hash.clone(),
                        },
                        link,
                        json_note("skipped", skipped),
                    )
                }
            }
        };
        let mut sealer = Self {
            key,
            state_path,
            tip_file,
            next_seq: tip.seq + 1,
            prev_hash: tip.hash,
            prev_seq: link,
            reserved: tip.seq,
            note: Some(note),
            boot_id,
            persisted: tip.seq,
        };
        // Persist "open, not clean" with a fresh block before anything is sealed.
        sealer.reserve()?;
        Ok(sealer)
    }

    /// Hex of the 32-byte Ed25519 public key (publish it in the `agent`
    /// started record as `detail.public_key`).
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Seq the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The last sealed record.
    pub fn tip(&self) -> ChainTip {
        ChainTip {
            seq: self.next_seq - 1,
            hash: self.prev_hash.clone(),
        }
    }

    fn write_state(&self, clean: bool) -> Result<(), SealError> {
        let state = State {
            version: 1,
            reserved: self.reserved,
            seq: self.next_seq - 1,
            hash: self.prev_hash.clone(),
            clean,
            boot_id: self.boot_id.clone(),
            hash_seq: (self.prev_seq != self.next_seq - 1).then_some(self.prev_seq),
        };
        let err = |io_error| SealError::State {
            path: self.state_path.clone(),
            io_error,
        };
        let tmp = self.state_path.with_extension("tmp");
        let bytes = serde_json::to_vec(&state).map_err(|e| err(io::Error::other(e)))?;
        let mut f = File::create(&tmp).map_err(err)?;
        f.write_all(&bytes).map_err(err)?;
        f.sync_all().map_err(err)?;
        fs::rename(&tmp, &self.state_path).map_err(err)?;
        sync_parent(&self.state_path).map_err(err)
    }

    fn reserve(&mut self) -> Result<(), SealError> {
        self.reserved = self
            .next_seq
            .checked_add(RESERVE_BLOCK - 1)
            .ok_or(SealError::SeqExhausted)?;
        self.write_state(false)
    }

    /// Seals one record. `record` must not contain [`SEAL_FIELDS`] and must
    /// have a string `kind`.
    pub fn seal(&mut self, record: Map<String, Value>) -> Result<Sealed, SealError> {
        self.seal_with(Unsealed::Map(record), true)
    }

    /// Seals records that are released together: the last one is signed
    /// when `sign_last` (and alerts, denials, `agent` records and a
    /// restart's first record are signed wherever they are).
    pub fn seal_group(
        &mut self,
        records: Vec<Unsealed<'_>>,
        sign_last: bool,
    ) -> Result<Vec<Sealed>, SealError> {
        let n = records.len();
        let mut out = Vec::with_capacity(n);
        for (i, r) in records.into_iter().enumerate() {
            out.push(self.seal_with(r, sign_last && i + 1 == n)?);
        }
        Ok(out)
    }

    fn seal_with(&mut self, record: Unsealed<'_>, sign: bool) -> Result<Sealed, SealError> {
        let (mut members, kind, severity) = match record {
            Unsealed::Canonical {
                members,
                kind,
                severity,
            } => (members, kind, severity),
            Unsealed::Map(record) => {
                let kind = record
                    .get("kind")
                    .and_then(Value::as_str)
                    .ok_or(SealError::NoKind)?
                    .to_owned();
                let severity = alert_severity(&record);
                let members: Vec<(Cow<'_, str>, Cow<'_, [u8]>)> = record
                    .into_iter()
                    .map(|(k, v)| (Cow::Owned(k), Cow::Owned(canonical::to_vec(&v))))
                    .collect();
                (members, kind, severity)
            }
        };
        if let Some(f) = SEAL_FIELDS
            .iter()
            .find(|f| members.iter().any(|(k, _)| k == *f))
        {
            return Err(SealError::ReservedField(f));
        }
        let sign = sign || severity.is_some() || kind == "agent" || self.note.is_some();
        if self.next_seq > self.reserved {
            self.reserve()?;
        }
        let seq = self.next_seq;
        members.push((
            Cow::Borrowed("seq"),
            Cow::Owned(seq.to_string().into_bytes()),
        ));
        members.push((
            Cow::Borrowed("prev_hash"),
            Cow::Owned(quoted(&self.prev_hash)),
        ));
        if let Some(note) = self.note.take() {
            members.push((Cow::Borrowed("chain"), Cow::Owned(canonical::to_vec(&note))));
        }
        let mut buf =
            Vec::with_capacity(members.iter().map(|(_, v)| v.len() + 16).sum::<usize>() + 256);
        let mut starts = Vec::with_capacity(members.len());
        canonical::write_object_marked(
            &mut members,
            |(k, _)| k,
            |(_, v), out| out.extend_from_slice(v),
            &mut buf,
            |at| starts.push(at),
        );
        let digest: [u8; 32] = Sha256::digest(&buf).into();
        let hash = hex::encode(digest);
        let sig = sign.then(|| {
            let sig = self.key.sign(&digest);
            base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())
        });
        let mut added = vec![("hash", quoted(&hash))];
        if let Some(sig) = &sig {
            added.push(("sig", quoted(sig)));
        }
        let buf = splice_members(&buf, &members, &starts, &added);

        self.next_seq += 1;
        self.prev_seq = seq;
        self.prev_hash.clone_from(&hash);
        Ok(Sealed {
            seq,
            hash,
            kind,
            severity,
            line: buf,
            signed: sign,
        })
    }

    /// Writes the tip to `seal.tip`. Call once per group of sealed records,
    /// before any of them is released: a restart after `kill -9` then
    /// continues from it, and records sealed after it were never released.
    pub fn persist_tip(&mut self) -> Result<(), SealError> {
        let seq = self.next_seq - 1;
        if seq == self.persisted {
            return Ok(());
        }
        let mut tip = [0u8; TIP_LEN];
        tip[..8].copy_from_slice(&seq.to_le_bytes());
        let digest = hex::decode(&self.prev_hash)
            .ok()
            .filter(|d| d.len() == 32)
            .ok_or_else(|| SealError::CorruptState {
                path: self.state_path.clone(),
                reason: format!("chain tip hash {:?} is not 32 bytes of hex", self.prev_hash),
            })?;
        tip[8..40].copy_from_slice(&digest);
        let crc = crc32fast::hash(&tip[..40]);
        tip[40..].copy_from_slice(&crc.to_le_bytes());
        // Not fsync'd on purpose (see the module doc); a failure here would
        // let a restart reuse seqs, so it is an error.
        self.tip_file
            .write_all_at(&tip, 0)
            .map_err(|io_error| SealError::State {
                path: self.state_path.with_file_name(TIP_FILE),
                io_error,
            })?;
        self.persisted = seq;
        Ok(())
    }

    /// Seals one line written by [`crate::record::RecordBuilder`]: its
    /// provisional `seq` (a per-run counter) gives way to the chain's.
    pub fn seal_builder_line(&mut self, line: &[u8]) -> Result<Sealed, SealError> {
        let mut m: Map<String, Value> = serde_json::from_slice(line).map_err(SealError::NotJson)?;
        m.remove("seq");
        self.seal(m)
    }

    /// Records a clean stop: the next open continues without a gap and
    /// notes `chain.start = "clean"`.
    pub fn close(self) -> Result<ChainTip, SealError> {
        self.write_state(true)?;
        Ok(self.tip())
    }
}

/// A record on its way into the chain.
pub enum Unsealed<'a> {
    /// Any JSON object (encoded canonically here).
    Map(Map<String, Value>),
    /// An object already in canonical form, as its members (see
    /// [`canonical::split_members`]): hashed as it is, no parse.
    Canonical {
        members: Vec<(Cow<'a, str>, Cow<'a, [u8]>)>,
        kind: String,
        severity: Option<String>,
    },
}

fn json_note(start: &str, skipped: Option<(u64, u64, u64)>) -> Value {
    let mut m = Map::new();
    m.insert("start".into(), Value::from(start));
    if let Some((prev_seq, from, to)) = skipped {
        m.insert("prev_seq".into(), Value::from(prev_seq));
        m.insert("skipped".into(), Value::from(vec![from, to]));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests;
