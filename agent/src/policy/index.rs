//! String matching compiled once per load. Every distinct pattern of a field
//! gets a small integer id; an event's value is matched once per field
//! (a hash lookup for literals and for path globs that only fix a directory,
//! one `GlobSet` pass for other globs) and rules then compare sorted id
//! lists. This is what keeps evaluation allocation free and flat in the
//! number of rules.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

/// A word-at-a-time hash for the index maps. The keys are short names and
/// paths from our own policy files, and a lookup with an event's value can
/// only probe among them, so SipHash's flooding resistance buys nothing and
/// costs most of a lookup. FNV (used before) takes a dependent multiply per
/// byte, a third of a match on a 20-byte path; this takes one per 8 bytes:
/// each word is folded in with a full 64x64->128 multiply whose halves are
/// xored, so every input bit reaches both the low bits (hashbrown's bucket)
/// and the top seven (its tag).
#[derive(Default)]
pub(crate) struct WordHasher(u64);

const SEED: u64 = 0x243f_6a88_85a3_08d3;
const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

fn le_u32(b: &[u8]) -> u64 {
    u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn le_u64(b: &[u8]) -> u64 {
    u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

impl Hasher for WordHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        // The length goes in so that the overlapping reads below (which
        // cover every byte of the tail) cannot make two lengths collide.
        let mut h = fold(self.0 ^ SEED ^ n as u64, MUL);
        let mut rest = bytes;
        while rest.len() > 8 {
            h = fold(h ^ le_u64(rest), MUL);
            rest = &rest[8..];
        }
        let m = rest.len();
        let tail = match m {
            8 => le_u64(rest),
            4..=7 => le_u32(rest) | (le_u32(&rest[m - 4..]) << 32),
            1..=3 => {
                u64::from(rest[0]) | (u64::from(rest[m / 2]) << 8) | (u64::from(rest[m - 1]) << 16)
            }
            _ => 0,
        };
        self.0 = fold(h ^ tail, MUL);
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<WordHasher>>;

/// Event fields rules can match strings against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Source {
    ActorUser = 0,
    ActorLoginUser,
    /// The login user if known, else the user: who to exempt or grant.
    Person,
    ActorGroup,
    ActorExe,
    ActorComm,
    ActorUnit,
    ActorDebugger,
    TargetComm,
    TargetExe,
    TargetUser,
    TargetUnit,
    PtraceRequest,
    Via,
    ProgType,
    DebugSwitch,
    Finding,
}

impl Source {
    pub(crate) const COUNT: usize = 17;
    pub(crate) const ALL: [Source; Self::COUNT] = [
        Self::ActorUser,
        Self::ActorLoginUser,
        Self::Person,
        Self::ActorGroup,
        Self::ActorExe,
        Self::ActorComm,
        Self::ActorUnit,
        Self::ActorDebugger,
        Self::TargetComm,
        Self::TargetExe,
        Self::TargetUser,
        Self::TargetUnit,
        Self::PtraceRequest,
        Self::Via,
        Self::ProgType,
        Self::DebugSwitch,
        Self::Finding,
    ];

    /// Exe patterns without a `/` match the basename (`gdb` matches
    /// `/usr/bin/gdb`), and `*` does not cross a `/`.
    pub(crate) fn path_like(self) -> bool {
        matches!(self, Self::ActorExe | Self::TargetExe)
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::ActorUser => "actor.user",
            Self::ActorLoginUser => "actor.login_user",
            Self::Person => "actor (login) user",
            Self::ActorGroup => "actor.groups",
            Self::ActorExe => "actor.exe",
            Self::ActorComm => "actor.comm",
            Self::ActorUnit => "actor.unit",
            Self::ActorDebugger => "actor debugger class",
            Self::TargetComm => "target.comm",
            Self::TargetExe => "target.exe",
            Self::TargetUser => "target.user",
            Self::TargetUnit => "target.unit",
            Self::PtraceRequest => "detail.ptrace_request",
            Self::Via => "detail.via",
            Self::ProgType => "detail.prog_type",
            Self::DebugSwitch => "detail.debug_switches",
            Self::Finding => "detail.findings",
        }
    }
}

fn is_literal(p: &str) -> bool {
    !p.contains(['*', '?', '[', '{', '\\'])
}

/// Text globset reads as itself in any position. Stricter than
/// `is_literal`: a stray `]`, `}` or `,` is left to globset rather than
/// reasoned about here.
fn is_plain(p: &str) -> bool {
    !p.contains(['*', '?', '[', ']', '{', '}', ',', '\\'])
}

/// Path globs (separator-aware) that come down to the value's directory,
/// the commonest shapes in exe lists. A regex set or Aho-Corasick pass over
/// hundreds of them costs more than the rest of an evaluation; a hash
/// lookup of one directory does not.
#[derive(Debug, PartialEq, Eq)]
enum DirShape<'p> {
    /// `DIR/NAME*` (NAME may be empty): globset's regex is
    /// `^DIR/NAME[^/]*$`, so the value's directory is DIR exactly and its
    /// file name starts with NAME.
    In { dir: &'p str, name: &'p str },
    /// `DIR/**`: globset's tokens are DIR then a recursive suffix (`/.*`),
    /// so it matches values that start with `DIR/`.
    Under { dir: &'p str },
}

fn dir_shape(pattern: &str) -> Option<DirShape<'_>> {
    if let Some(dir) = pattern.strip_suffix("/**")
        && is_plain(dir)
    {
        return Some(DirShape::Under { dir });
    }
    let (dir, last) = pattern.rsplit_once('/')?;
    let name = last.strip_suffix('*')?;
    (is_plain(dir) && is_plain(name)).then_some(DirShape::In { dir, name })
}

/// Collects the patterns of one field while compiling.
pub(crate) struct IndexBuilder {
    path_like: bool,
    patterns: Vec<String>,
    ids: HashMap<String, u32>,
    globs: GlobSetBuilder,
    glob_ids: Vec<u32>,
    base_globs: GlobSetBuilder,
    base_glob_ids: Vec<u32>,
}

impl IndexBuilder {
    pub(crate) fn new(path_like: bool) -> Self {
        Self {
            path_like,
            patterns: Vec::new(),
            ids: HashMap::new(),
            globs: GlobSetBuilder::new(),
            glob_ids: Vec::new(),
            base_globs: GlobSetBuilder::new(),
            base_glob_ids: Vec::new(),
        }
    }

    /// The id of `pattern`, or why it is not a valid glob.
    pub(crate) fn add(&mut self, pattern: &str) -> Result<u32, globset::Error> {
        if let Some(&id) = self.ids.get(pattern) {
            return Ok(id);
        }
        let id = u32::try_from(self.patterns.len()).expect("invariant: fewer than 2^32 patterns");
        let by_dir = self.path_like && pattern.contains('/') && dir_shape(pattern).is_some();
        if !is_literal(pattern) && !by_dir {
            let base = self.path_like && !pattern.contains('/');
            // A basename has no `/` to protect, and without
            // literal_separator globset can use its faster prefix and
            // suffix strategies instead of a regex.
            let glob = GlobBuilder::new(pattern)
                .literal_separator(self.path_like && !base)
                .backslash_escape(true)
                .build()?;
            if base {
                self.base_globs.add(glob);
                self.base_glob_ids.push(id);
            } else {
                self.globs.add(glob);
                self.glob_ids.push(id);
            }
        }
        self.patterns.push(pattern.to_owned());
        self.ids.insert(pattern.to_owned(), id);
        Ok(id)
    }

    pub(crate) fn build(self) -> Result<FieldIndex, globset::Error> {
        let mut literals = FastMap::default();
        let mut base_literals = FastMap::default();
        let mut in_dir: FastMap<Box<str>, Vec<(Box<str>, u32)>> = FastMap::default();
        // Patterns are unique, so are the DIRs of their `DIR/**`.
        let mut under = FastMap::default();
        let mut under_depth = Vec::new();
        for (id, p) in self.patterns.iter().enumerate() {
            let id = u32::try_from(id).expect("invariant: fewer than 2^32 patterns");
            if is_literal(p) {
                if self.path_like && !p.contains('/') {
                    base_literals.insert(p.clone().into_boxed_str(), id);
                } else {
                    literals.insert(p.clone().into_boxed_str(), id);
                }
                continue;
            }
            if !self.path_like || !p.contains('/') {
                continue;
            }
            match dir_shape(p) {
                Some(DirShape::In { dir, name }) => {
                    in_dir
                        .entry(dir.into())
                        .or_default()
                        .push((name.into(), id));
                }
                Some(DirShape::Under { dir }) => {
                    let depth = dir.matches('/').count();
                    if under_depth.len() <= depth {
                        under_depth.resize(depth + 1, false);
                    }
                    under_depth[depth] = true;
                    under.insert(dir.into(), id);
                }
                None => {}
            }
        }
        Ok(FieldIndex {
            path_like: self.path_like,
            literals,
            base_literals,
            in_dir,
            under,
            under_depth: under_depth.into_boxed_slice(),
            globs: self.globs.build()?,
            glob_ids: self.glob_ids,
            base_globs: self.base_globs.build()?,
            base_glob_ids: self.base_glob_ids,
            patterns: self
                .patterns
                .into_iter()
                .map(String::into_boxed_str)
                .collect(),
        })
    }
}

/// The compiled patterns of one field.
pub(crate) struct FieldIndex {
    path_like: bool,
    literals: FastMap<Box<str>, u32>,
    base_literals: FastMap<Box<str>, u32>,
    /// `DIR/NAME*` globs: DIR -> (NAME, id).
    in_dir: FastMap<Box<str>, Vec<(Box<str>, u32)>>,
    /// `DIR/**` globs: DIR -> id.
    under: FastMap<Box<str>, u32>,
    /// `under_depth[d]`: some DIR in `under` has `d` slashes. Such a DIR
    /// can only be the part of the value before its slash number `d`
    /// (counting from 0), so a value costs one lookup per depth in use, not
    /// one per slash.
    under_depth: Box<[bool]>,
    globs: GlobSet,
    glob_ids: Vec<u32>,
    base_globs: GlobSet,
    base_glob_ids: Vec<u32>,
    patterns: Box<[Box<str>]>,
}

impl FieldIndex {
    pub(crate) fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.patterns.len()
    }

    pub(crate) fn pattern(&self, id: u32) -> &str {
        &self.patterns[id as usize]
    }

    /// Appends the ids of the patterns `value` matches to `out` (unsorted).
    /// `gbuf` is scratch for globset and keeps its capacity between calls.
    pub(crate) fn matches_into(&self, value: &str, out: &mut Vec<u32>, gbuf: &mut Vec<usize>) {
        if let Some(&id) = self.literals.get(value) {
            out.push(id);
        }
        if !self.globs.is_empty() {
            self.globs
                .matches_candidate_into(&Candidate::from_bytes(value.as_bytes()), gbuf);
            out.extend(gbuf.iter().map(|&i| self.glob_ids[i]));
        }
        if self.path_like {
            // Slashes are found as bytes: a `char` pattern confirms each
            // hit with a memcmp call, several per path.
            let bytes = value.as_bytes();
            let (dir, base) = match bytes.iter().rposition(|&b| b == b'/') {
                Some(i) => (Some(&value[..i]), &value[i + 1..]),
                None => (None, value),
            };
            if let Some(list) = dir.and_then(|d| self.in_dir.get(d)) {
                // `is_empty` first, not for speed of the compare itself: an
                // empty `Box<str>` points at no page, and glibc's AVX-512
                // memcmp still issues a masked load there; the suppressed
                // fault costs a microcode assist (profiled: ~100 ns, most of
                // an exec evaluation), and `DIR/*` is the common shape.
                out.extend(
                    list.iter()
                        .filter(|(name, _)| name.is_empty() || base.starts_with(&**name))
                        .map(|&(_, id)| id),
                );
            }
            if !self.under.is_empty() {
                let slashes = (0..bytes.len()).filter(|&at| bytes[at] == b'/');
                for (&used, at) in self.under_depth.iter().zip(slashes) {
                    if used && let Some(&id) = self.under.get(&value[..at]) {
                        out.push(id);
                    }
                }
            }
            if let Some(&id) = self.base_literals.get(base) {
                out.push(id);
            }
            if !self.base_globs.is_empty() {
                self.base_globs
                    .matches_candidate_into(&Candidate::from_bytes(base.as_bytes()), gbuf);
                out.extend(gbuf.iter().map(|&i| self.base_glob_ids[i]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids_of(ix: &FieldIndex, v: &str) -> Vec<u32> {
        let mut out = Vec::new();
        ix.matches_into(v, &mut out, &mut Vec::new());
        out.sort_unstable();
        out
    }

    /// hashbrown picks the bucket from the low bits and a tag from the top
    /// seven: both must vary across keys that differ in one middle byte.
    #[test]
    fn word_hasher_spreads_similar_keys() {
        use std::hash::BuildHasher;
        let h = BuildHasherDefault::<WordHasher>::default();
        for shape in ["/opt/tool{}/bin", "app-{}.service", "user{}", "{}"] {
            let hashes: Vec<u64> = (0..1000)
                .map(|i| h.hash_one(shape.replace("{}", &i.to_string())))
                .collect();
            let mut low: Vec<u64> = hashes.iter().map(|x| x & 1023).collect();
            low.sort_unstable();
            low.dedup();
            let mut tags: Vec<u64> = hashes.iter().map(|x| x >> 57).collect();
            tags.sort_unstable();
            tags.dedup();
            // 1,000 random keys fill about 632 of 1,024 buckets.
            assert!(low.len() > 560, "{shape}: {} buckets", low.len());
            assert_eq!(tags.len(), 128, "{shape}");
        }
    }

    #[test]
    fn literals_globs_and_basenames() {
        let mut b = IndexBuilder::new(true);
        let gdb = b.add("gdb").unwrap();
        let full = b.add("/usr/bin/gdb").unwrap();
        let star = b.add("/usr/bin/*").unwrap();
        let base_glob = b.add("python3*").unwrap();
        assert_eq!(b.add("gdb").unwrap(), gdb, "patterns are deduplicated");
        let ix = b.build().unwrap();
        assert_eq!(ids_of(&ix, "/usr/bin/gdb"), vec![gdb, full, star]);
        assert_eq!(ids_of(&ix, "/usr/local/bin/gdb"), vec![gdb]);
        assert_eq!(
            ids_of(&ix, "/usr/bin/x/gdb"),
            vec![gdb],
            "* stays in one directory"
        );
        assert_eq!(ids_of(&ix, "/usr/bin/python3.11"), vec![star, base_glob]);
        assert_eq!(ix.pattern(full), "/usr/bin/gdb");
    }

    #[test]
    fn directory_shapes_are_recognised_and_the_rest_left_to_globset() {
        use DirShape::{In, Under};
        for (p, want) in [
            (
                "/usr/bin/*",
                Some(In {
                    dir: "/usr/bin",
                    name: "",
                }),
            ),
            (
                "/usr/lib/x/sd*",
                Some(In {
                    dir: "/usr/lib/x",
                    name: "sd",
                }),
            ),
            ("/*", Some(In { dir: "", name: "" })),
            ("/srv/app/**", Some(Under { dir: "/srv/app" })),
            ("rel/**", Some(Under { dir: "rel" })),
            ("/srv//**", Some(Under { dir: "/srv/" })),
            ("/**", Some(Under { dir: "" })),
            ("/usr/b**", None),
            ("/usr/*/gdb", None),
            ("/usr/bin/g*b", None),
            ("/usr/bin/g?*", None),
            ("/opt/[ab]*", None),
            ("/opt/{a,b}/*", None),
            ("/opt/a\\*", None),
        ] {
            assert_eq!(dir_shape(p), want, "{p}");
        }
    }

    /// The directory lookups must match exactly what the globset they
    /// replace matches, edge cases included.
    #[test]
    fn directory_shapes_match_like_globset() {
        let patterns = [
            "/usr/bin/*",
            "/usr/bin/g*",
            "/usr/bin/gdb*",
            "/usr/lib/systemd/systemd*",
            "/usr//*",
            "/*",
            "rel/*",
            "/srv/app/**",
            "/srv/app/bin/**",
            "/a//b/**",
            "/srv//**",
            "/**",
            "rel/**",
            "/usr/*/gdb",
            "/usr/bin/g*b",
        ];
        let values = [
            "/usr/bin/gdb",
            "/usr/bin/",
            "/usr/bin",
            "/usr/bin/x/gdb",
            "/usr//gdb",
            "/usr/gdb",
            "/usr/lib/systemd/systemd",
            "/usr/lib/systemd/systemd-logind",
            "/usr/lib/systemd/sd",
            "/gdb",
            "/",
            "rel/x",
            "rel/x/y",
            "/rel/x",
            "/srv/app",
            "/srv/app/",
            "/srv/app/x",
            "/srv/app/bin/x/y",
            "/srv/apps/x",
            "/srv//x",
            "/srv/x",
            "/a//b/c",
            "/a/b/c",
            "gdb",
            "",
        ];
        let mut b = IndexBuilder::new(true);
        let ids: Vec<u32> = patterns.iter().map(|p| b.add(p).unwrap()).collect();
        let ix = b.build().unwrap();
        assert!(
            !ix.in_dir.is_empty() && !ix.under.is_empty(),
            "the directory maps are in use"
        );
        for v in values {
            let want: Vec<u32> = patterns
                .iter()
                .zip(&ids)
                .filter(|(p, _)| {
                    GlobBuilder::new(p)
                        .literal_separator(true)
                        .backslash_escape(true)
                        .build()
                        .unwrap()
                        .compile_matcher()
                        .is_match(v)
                })
                .map(|(_, &id)| id)
                .collect();
            assert_eq!(ids_of(&ix, v), want, "{v}");
        }
    }

    #[test]
    fn non_path_fields_match_whole_values() {
        let mut b = IndexBuilder::new(false);
        let p = b.add("PTRACE_POKE*").unwrap();
        let ix = b.build().unwrap();
        assert_eq!(ids_of(&ix, "PTRACE_POKEDATA"), vec![p]);
        assert!(ids_of(&ix, "PTRACE_PEEKDATA").is_empty());
        assert!(IndexBuilder::new(false).add("[a").is_err());
    }
}
