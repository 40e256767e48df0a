//! The module graph of each crate, read from its sources, for the hygiene test that no two
//! modules of a crate import each other (docs/design.md, "Layers").
//!
//! A module is a file (`lib.rs` or `main.rs` is the crate root, `a.rs` or `a/mod.rs` is `a`,
//! `a/b.rs` is `a::b`); an inline `mod name { ... }` (`tests`, say) is part of its file, whose
//! paths it resolves from where it is (`super::` in `a::tests` is `a`). Module `m`
//! depends on module `n` when `m` names an item of `n` by a path (`use crate::n::Item;`,
//! `crate::n::f()`, `super::Item`, `child::Item`). A re-export is followed to where the item is
//! defined, so that `crate::Error`, re-exported by the root from `error`, is a dependency on
//! `error` and not on the root: the root of a crate (or any parent module) is a facade, and
//! declaring `mod child;` is no import. Comments and string literals are skipped, so doc links
//! do not count.
//!
//! It reads tokens, not a syntax tree (no `syn` in the build for one test): a name brought in by
//! a glob (`use super::*`) is a dependency on the glob's module but is not followed further, and
//! macros are read as the tokens they are written with.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module's path inside its crate: empty for the root.
pub type ModulePath = Vec<String>;

/// One edge of the graph, with the path that made it (for the message).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub from: ModulePath,
    pub to: ModulePath,
    pub evidence: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

/// `src` without comments and literals: strings (raw ones included) and characters become a
/// space; lifetimes stay.
fn strip(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
            continue;
        }
        // Raw strings: r"..", r#".."#, br#".."#.
        let previous_is_ident = i > 0 && ident(chars[i - 1]);
        if !previous_is_ident && (c == 'r' || (c == 'b' && next == Some('r'))) {
            let mut j = i + if c == 'b' { 2 } else { 1 };
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) == Some(&'"') {
                j += 1;
                loop {
                    if j >= chars.len() {
                        break;
                    }
                    if chars[j] == '"' && (0..hashes).all(|h| chars.get(j + 1 + h) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                i = j;
                out.push(' ');
                continue;
            }
        }
        if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(' ');
            continue;
        }
        if c == '\'' {
            // A character literal ('x', '\n', '\u{1F600}') or a lifetime ('a, 'static).
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push(' ');
                continue;
            }
            if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push(' ');
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

fn tokens(src: &str) -> Vec<Token> {
    let chars: Vec<char> = strip(src).chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            tokens.push(Token::Ident(
                word.strip_prefix("r#").unwrap_or(&word).to_string(),
            ));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push(Token::PathSep);
            i += 2;
        } else {
            tokens.push(Token::Punct(c));
            i += 1;
        }
    }
    tokens
}

/// One `use` tree expanded: each leaf as (path, the name it binds or `None` for a glob).
fn expand_use(tokens: &[Token]) -> Vec<(Vec<String>, Option<String>)> {
    fn tree(
        tokens: &[Token],
        at: &mut usize,
        prefix: &[String],
        out: &mut Vec<(Vec<String>, Option<String>)>,
    ) {
        let mut path = prefix.to_vec();
        loop {
            match tokens.get(*at) {
                Some(Token::Ident(word)) => {
                    path.push(word.clone());
                    *at += 1;
                }
                Some(Token::PathSep) => *at += 1,
                Some(Token::Punct('*')) => {
                    *at += 1;
                    out.push((path, None));
                    return;
                }
                Some(Token::Punct('{')) => {
                    *at += 1;
                    loop {
                        match tokens.get(*at) {
                            Some(Token::Punct('}')) => {
                                *at += 1;
                                return;
                            }
                            Some(Token::Punct(',')) => *at += 1,
                            None => return,
                            _ => tree(tokens, at, &path, out),
                        }
                    }
                }
                _ => break,
            }
        }
        // `a::b as c`: the last two words read as path `a::b::as::c` above; undo that.
        let name = if path.len() >= 2 && path[path.len() - 2] == "as" {
            let alias = path.pop().expect("two words");
            path.pop();
            alias
        } else {
            path.last().cloned().unwrap_or_default()
        };
        // `use a::b::{self, c}`: `self` binds `b`.
        if path.last().is_some_and(|w| w == "self") {
            path.pop();
            let name = if name == "self" {
                path.last().cloned().unwrap_or_default()
            } else {
                name
            };
            out.push((path, Some(name)));
        } else if !path.is_empty() {
            out.push((path, Some(name)));
        }
    }
    let mut out = Vec::new();
    let mut at = 0;
    while at < tokens.len() {
        let before = at;
        tree(tokens, &mut at, &[], &mut out);
        if at == before {
            at += 1;
        }
    }
    out
}

/// What one module's text says: its `use` leaves and the other paths it names.
#[derive(Debug, Default)]
struct Scan {
    /// `use` leaves: (path, bound name; `None` for a glob).
    uses: Vec<(Vec<String>, Option<String>)>,
    /// Paths outside `use` items with at least one `::`.
    paths: Vec<Vec<String>>,
}

/// Scans a file: its own module (`module`) and the inline modules inside it.
fn scan_file(src: &str, module: &ModulePath) -> BTreeMap<ModulePath, Scan> {
    let tokens = tokens(src);
    let mut scans: BTreeMap<ModulePath, Scan> = BTreeMap::new();
    scans.entry(module.clone()).or_default();
    // (module, brace depth at which its block closes)
    let mut stack: Vec<(ModulePath, usize)> = vec![(module.clone(), usize::MAX)];
    let mut depth = 0usize;
    let mut i = 0;
    while i < tokens.len() {
        let current = stack.last().expect("the file's module").0.clone();
        match &tokens[i] {
            Token::Punct('{') => {
                depth += 1;
                i += 1;
            }
            Token::Punct('}') => {
                if stack.last().is_some_and(|(_, close)| *close == depth) {
                    stack.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
            }
            Token::Ident(word) if word == "mod" => {
                if let (Some(Token::Ident(name)), Some(Token::Punct('{'))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    let mut inner = current.clone();
                    inner.push(name.clone());
                    scans.entry(inner.clone()).or_default();
                    depth += 1;
                    stack.push((inner, depth));
                    i += 3;
                } else {
                    i += 1;
                }
            }
            Token::Ident(word) if word == "use" => {
                let end = tokens[i..]
                    .iter()
                    .position(|t| *t == Token::Punct(';'))
                    .map_or(tokens.len(), |p| i + p);
                let leaves = expand_use(&tokens[i + 1..end]);
                scans.entry(current).or_default().uses.extend(leaves);
                i = end + 1;
            }
            Token::Ident(first) => {
                let mut path = vec![first.clone()];
                let mut j = i + 1;
                while let (Some(Token::PathSep), Some(Token::Ident(next))) =
                    (tokens.get(j), tokens.get(j + 1))
                {
                    path.push(next.clone());
                    j += 2;
                }
                // `$crate::x` in a macro is `crate::x`.
                if path.len() > 1 {
                    scans.entry(current).or_default().paths.push(path);
                }
                i = j;
            }
            _ => i += 1,
        }
    }
    scans
}

/// The module of each source file of the crate whose `src/` is `src`.
fn file_modules(src: &Path) -> Vec<(ModulePath, PathBuf)> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "rs") {
                found.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files
        .into_iter()
        .filter_map(|file| {
            let relative = file.strip_prefix(src).ok()?.with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            // `src/bin/` holds other crates.
            if parts.first().is_some_and(|p| p == "bin") {
                return None;
            }
            if parts
                .last()
                .is_some_and(|p| p == "lib" || p == "main" || p == "mod")
            {
                parts.pop();
            }
            Some((parts, file))
        })
        .collect()
}

/// The crate's module graph.
pub struct Graph {
    pub edges: Vec<Edge>,
}

impl Graph {
    /// The graph of the crate whose sources are `src` (its `src/` directory).
    pub fn of_crate(src: &Path) -> Graph {
        let files: Vec<(ModulePath, String)> = file_modules(src)
            .into_iter()
            .map(|(module, file)| {
                let text = std::fs::read_to_string(&file)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                (module, text)
            })
            .collect();
        Graph::of_sources(&files)
    }

    /// The graph of files given as (module, text).
    pub fn of_sources(files: &[(ModulePath, String)]) -> Graph {
        let mut scans = BTreeMap::new();
        for (module, text) in files {
            scans.extend(scan_file(text, module));
        }
        let modules: BTreeSet<ModulePath> = scans.keys().cloned().collect();
        // Per module: the names its `use` items bind.
        let bound: BTreeMap<ModulePath, BTreeMap<String, Vec<String>>> = scans
            .iter()
            .map(|(module, scan)| {
                let names = scan
                    .uses
                    .iter()
                    .filter_map(|(path, name)| Some((name.clone()?, path.clone())))
                    .collect();
                (module.clone(), names)
            })
            .collect();
        let resolver = Resolver {
            modules: &modules,
            bound: &bound,
        };
        // An inline module (`mod tests { .. }`) is part of its file: the graph is of files.
        let file_modules: BTreeSet<&ModulePath> = files.iter().map(|(module, _)| module).collect();
        let file_of = |module: &ModulePath| -> ModulePath {
            (0..=module.len())
                .rev()
                .map(|len| module[..len].to_vec())
                .find(|prefix| file_modules.contains(prefix))
                .unwrap_or_default()
        };
        let mut edges = BTreeSet::new();
        for (module, scan) in &scans {
            let from = file_of(module);
            let all = scan.uses.iter().map(|(path, _)| path).chain(&scan.paths);
            for path in all {
                if let Some(target) = resolver.resolve(module, path, 0) {
                    let to = file_of(&target);
                    if to != from {
                        edges.insert(Edge {
                            from: from.clone(),
                            to,
                            evidence: path.join("::"),
                        });
                    }
                }
            }
        }
        Graph {
            edges: edges.into_iter().collect(),
        }
    }

    /// Groups of two or more modules that reach each other, each with the edges between them.
    pub fn cycles(&self) -> Vec<Vec<Edge>> {
        let mut nodes: BTreeSet<&ModulePath> = BTreeSet::new();
        for edge in &self.edges {
            nodes.insert(&edge.from);
            nodes.insert(&edge.to);
        }
        let next = |from: &ModulePath| -> Vec<&ModulePath> {
            self.edges
                .iter()
                .filter(|e| &e.from == from)
                .map(|e| &e.to)
                .collect()
        };
        // Reachability is small enough to compute by search from every node.
        let reach = |start: &ModulePath| -> BTreeSet<&ModulePath> {
            let mut seen = BTreeSet::new();
            let mut todo = vec![start];
            while let Some(node) = todo.pop() {
                for to in next(node) {
                    if seen.insert(to) {
                        todo.push(to);
                    }
                }
            }
            seen
        };
        let reaches: BTreeMap<&ModulePath, BTreeSet<&ModulePath>> =
            nodes.iter().map(|&n| (n, reach(n))).collect();
        let mut done: BTreeSet<&ModulePath> = BTreeSet::new();
        let mut cycles = Vec::new();
        for &node in &nodes {
            if done.contains(node) || !reaches[node].contains(node) {
                continue;
            }
            let group: BTreeSet<&ModulePath> = reaches[node]
                .iter()
                .copied()
                .filter(|other| reaches[other].contains(node))
                .collect();
            done.extend(group.iter().copied());
            cycles.push(
                self.edges
                    .iter()
                    .filter(|e| group.contains(&e.from) && group.contains(&e.to))
                    .cloned()
                    .collect(),
            );
        }
        cycles
    }
}

struct Resolver<'a> {
    modules: &'a BTreeSet<ModulePath>,
    bound: &'a BTreeMap<ModulePath, BTreeMap<String, Vec<String>>>,
}

impl Resolver<'_> {
    fn child(&self, module: &ModulePath, name: &str) -> Option<ModulePath> {
        let mut child = module.clone();
        child.push(name.to_string());
        self.modules.contains(&child).then_some(child)
    }

    /// The module that defines what `path`, written in `module`, names; `None` for another
    /// crate's item or a local name that is no path.
    fn resolve(&self, module: &ModulePath, path: &[String], depth: usize) -> Option<ModulePath> {
        if depth > 16 || path.is_empty() {
            return None;
        }
        let (mut current, mut rest): (ModulePath, &[String]) = match path[0].as_str() {
            "crate" => (Vec::new(), &path[1..]),
            "self" => (module.clone(), &path[1..]),
            "super" => {
                let mut current = module.clone();
                let mut rest = path;
                while rest.first().is_some_and(|w| w == "super") {
                    current.pop();
                    rest = &rest[1..];
                }
                (current, rest)
            }
            first => {
                if let Some(child) = self.child(module, first) {
                    (child, &path[1..])
                } else if let Some(target) = self.bound.get(module).and_then(|b| b.get(first)) {
                    // A name this module imported: where it comes from, then the rest.
                    let mut full = target.clone();
                    full.extend_from_slice(&path[1..]);
                    if &full[..] == path {
                        return None;
                    }
                    return self.resolve(module, &full, depth + 1);
                } else {
                    return None;
                }
            }
        };
        while let Some(word) = rest.first() {
            if let Some(child) = self.child(&current, word) {
                current = child;
                rest = &rest[1..];
                continue;
            }
            if let Some(target) = self.bound.get(&current).and_then(|b| b.get(word)) {
                let mut full = target.clone();
                full.extend_from_slice(&rest[1..]);
                if let Some(found) = self.resolve(&current, &full, depth + 1) {
                    return Some(found);
                }
            }
            break;
        }
        Some(current)
    }
}

/// `a::b`, or `crate` for the root.
pub fn name(module: &ModulePath) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(files: &[(&str, &str)]) -> Graph {
        let files: Vec<(ModulePath, String)> = files
            .iter()
            .map(|(module, text)| {
                let path = if module.is_empty() {
                    Vec::new()
                } else {
                    module.split("::").map(str::to_string).collect()
                };
                (path, text.to_string())
            })
            .collect();
        Graph::of_sources(&files)
    }

    fn cycle_names(graph: &Graph) -> Vec<Vec<String>> {
        graph
            .cycles()
            .iter()
            .map(|edges| {
                let mut pairs: Vec<String> = edges
                    .iter()
                    .map(|e| format!("{} -> {}", name(&e.from), name(&e.to)))
                    .collect();
                pairs.dedup();
                pairs
            })
            .collect()
    }

    #[test]
    fn two_modules_that_import_each_other_are_a_cycle() {
        let g = graph(&[
            ("", "mod a; mod b;"),
            ("a", "use crate::b::Beta; pub struct Alpha;"),
            ("b", "pub struct Beta; fn f() { let _ = crate::a::Alpha; }"),
        ]);
        assert_eq!(cycle_names(&g), [["a -> b", "b -> a"]]);
        // Through `super` and through a name imported first.
        let g = graph(&[
            ("", "mod a; mod b;"),
            ("a", "use super::b; fn f() { b::g() }"),
            ("b", "use super::a::Alpha as A; pub fn g() {}"),
        ]);
        assert_eq!(cycle_names(&g).len(), 1, "{:?}", g.edges);
        // Three modules in a ring.
        let g = graph(&[
            ("a", "use crate::b::X;"),
            ("b", "use crate::c::{Y, self};"),
            ("c", "use crate::a::*;"),
        ]);
        let ring: BTreeSet<String> = cycle_names(&g)[0].iter().cloned().collect();
        assert_eq!(ring.len(), 3, "{:?}", g.edges);
    }

    #[test]
    fn facades_comments_strings_and_test_modules_are_no_cycle() {
        let g = graph(&[
            // The root re-exports; the modules import through it.
            (
                "",
                "mod error; mod a; pub use error::{Error, Result}; pub use a::Alpha;",
            ),
            ("error", "pub enum Error {}"),
            (
                "a",
                "use crate::{Error, Result};\n\
                 /// See [`crate::b::Beta`] and `crate::b`.\n\
                 pub struct Alpha; const S: &str = \"crate::b::Beta\"; const R: &str = r#\"super::b\"#;\n\
                 #[cfg(test)] mod tests { use super::*; fn t() { let _ = Alpha; } }",
            ),
            (
                "b",
                "use crate::a::Alpha; pub struct Beta; fn f<'a>(c: &'a char) -> char { '\"' }",
            ),
        ]);
        assert!(g.cycles().is_empty(), "{:?}", g.edges);
        assert!(
            g.edges
                .iter()
                .any(|e| name(&e.from) == "a" && name(&e.to) == "error"),
            "{:?}",
            g.edges
        );
        // The test module's `super::*` is its own file.
        assert!(g.edges.iter().all(|e| e.from != e.to), "{:?}", g.edges);
        // An item defined in the root itself, used by a module the root imports from, is one.
        let g = graph(&[
            ("", "mod a; pub use a::Alpha; pub const WIDTH: usize = 64;"),
            ("a", "pub struct Alpha([u8; crate::WIDTH]);"),
        ]);
        assert_eq!(cycle_names(&g), [["crate -> a", "a -> crate"]]);
    }

    /// The rule docs/design.md states: in every crate of the workspace, no two modules import
    /// each other, directly or through others.
    #[test]
    fn no_two_modules_of_a_crate_import_each_other() {
        let root = crate::workspace_root();
        let mut sources: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
            .unwrap()
            .map(|e| e.unwrap().path().join("src"))
            .filter(|p| p.is_dir())
            .collect();
        sources.push(root.join("xtask/src"));
        sources.sort();
        let mut problems = Vec::new();
        let mut modules = 0;
        for src in &sources {
            let graph = Graph::of_crate(src);
            modules += graph.edges.len();
            for cycle in graph.cycles() {
                let edges: Vec<String> = cycle
                    .iter()
                    .map(|e| format!("{} -> {} ({})", name(&e.from), name(&e.to), e.evidence))
                    .collect();
                problems.push(format!("{}: {}", src.display(), edges.join(", ")));
            }
        }
        assert!(sources.len() >= 9 && modules > 100, "{sources:?}");
        assert!(
            problems.is_empty(),
            "modules that import each other:\n{}",
            problems.join("\n")
        );
    }
}
