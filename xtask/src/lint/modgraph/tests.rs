//! Cycles the module graph must find, and references it must not count.

use super::*;

fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

fn cycles_of(files: &[(&str, &str)]) -> Vec<String> {
    let dir = tempdir();
    write(&dir, files);
    let g = Graph::read(&dir.join("lib.rs")).unwrap();
    let c = g.cycles();
    std::fs::remove_dir_all(&dir).unwrap();
    c
}

fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "xtask-modgraph-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn a_direct_cycle_is_found_with_its_sites() {
    let c = cycles_of(&[
        ("lib.rs", "mod a; mod b;"),
        ("a.rs", "use crate::b::X;"),
        ("b.rs", "pub struct X; fn f() { crate::a::g(); }"),
    ]);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].contains("a <-> b"), "{}", c[0]);
    assert!(c[0].contains("a.rs:1"), "{}", c[0]);
}

#[test]
fn a_cycle_through_a_third_module_and_nested_modules_is_found() {
    let c = cycles_of(&[
        ("lib.rs", "mod a; mod b; mod c;"),
        ("a/mod.rs", "mod inner;"),
        ("a/inner.rs", "use crate::b::Y;"),
        ("b.rs", "use crate::c::{self, Z};"),
        (
            "c.rs",
            "fn f() { tracing::info!(\"{}\", crate::a::inner::name()); }",
        ),
    ]);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].contains("a <-> b <-> c"), "{}", c[0]);
}

#[test]
fn re_exports_are_followed_to_the_defining_module() {
    // x::one uses the parent's re-export of x::two, which uses x::one.
    let c = cycles_of(&[
        ("lib.rs", "mod x;"),
        ("x/mod.rs", "mod one; mod two; pub use two::T;"),
        ("x/one.rs", "pub struct O; fn f(_: super::T) {}"),
        ("x/two.rs", "pub struct T; fn g(_: super::one::O) {}"),
    ]);
    assert_eq!(c.len(), 1, "{c:?}");
    assert!(c[0].contains("under x: one <-> two"), "{}", c[0]);
}

#[test]
fn parents_children_and_one_way_references_are_not_cycles() {
    let c = cycles_of(&[
        ("lib.rs", "mod a; mod b; pub use a::A;"),
        ("a/mod.rs", "mod k; pub struct A; use self::k::K;"),
        ("a/k.rs", "pub struct K; use super::A; use crate::b::B;"),
        (
            "b.rs",
            "pub struct B; #[cfg(test)] mod tests { use super::*; }",
        ),
    ]);
    assert!(c.is_empty(), "{c:?}");
}
