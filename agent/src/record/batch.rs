//! Records on their way from the pipeline to the delivery thread: the
//! lines, and where each record's top-level members lie in them. The
//! builder knows the member boundaries as it writes them; handing them
//! over spares the delivery thread a second parse of every line, which
//! was its largest cost after its writes (a storm profile put the split
//! of each line and its actor at a fifth of that thread).

use std::ops::Range;

use crate::event::Kind;

/// One top-level member of a record: its key and the range of its value
/// in [`Batch::bytes`].
pub type MemberAt = (&'static str, Range<usize>);

/// One record in a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The record's line in [`Batch::bytes`], without its newline.
    pub line: Range<usize>,
    /// Its members in [`Batch::members`], in canonical (key) order.
    pub members: Range<usize>,
    pub kind: Kind,
    /// The pipeline asked the redactor and it would change nothing in the
    /// actor's argv (or there is no actor); `false` also when no redactor
    /// was asked, so that the delivery thread looks itself.
    pub argv_clean: bool,
}

/// Records built since the last hand-over, one per line.
///
/// Either every line has its [`Built`] entry, or there are none (a batch
/// made from bare lines, [`Batch::from_lines`]): the delivery thread then
/// parses each line as it would any other.
#[derive(Debug, Default)]
pub struct Batch {
    pub bytes: Vec<u8>,
    pub members: Vec<MemberAt>,
    pub records: Vec<Built>,
}

impl Batch {
    /// An empty batch with room for a busy read's records.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            members: Vec::with_capacity(bytes / 128),
            records: Vec::with_capacity(bytes / 1024),
        }
    }

    /// Lines alone, without member boundaries.
    pub fn from_lines(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            ..Self::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The members of `r`, with their values as bytes.
    pub fn members_of<'a>(
        &'a self,
        r: &Built,
    ) -> impl Iterator<Item = (&'static str, &'a [u8])> + use<'a> {
        self.members[r.members.clone()]
            .iter()
            .map(|(k, v)| (*k, &self.bytes[v.clone()]))
    }
}

impl From<Vec<u8>> for Batch {
    fn from(bytes: Vec<u8>) -> Self {
        Self::from_lines(bytes)
    }
}
