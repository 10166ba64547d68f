//! The shape of `src/` (issue 23), checked by reading the files (nothing else is compiled):
//!
//! 1. imports go down the layers of `LAYERS`, never up, and no module outside `models`/`sae`
//!    reaches for ground-floor code that still lives upstairs (`FLOOR_CODE_UPSTAIRS`);
//! 2. no import circles between files (A uses B, B uses A);
//! 3. no file over 500 lines before its tests, no function over 100 lines, unless a comment line
//!    starting with `size:` says why (at the top of the file / directly above the function).
//!
//! Today's exceptions are in the `KNOWN_*` lists. The lists only shrink: a new problem fails the
//! test, and so does an entry that no longer occurs (delete its line when you fix it).
//!
//! Imports are the paths starting with `crate::`, `super::`, `self::` or `unravel::` (the
//! binary's name for the library), in `use` statements and inline, outside comments, strings and
//! `#[cfg(test)] mod tests { ... }` blocks. Each resolves to the deepest file its segments name
//! (`crate::kernels::matmul::linear` → `src/kernels/matmul.rs`). A module's root file (`mod.rs`, or
//! `x.rs` beside `x/`) and its own children are not a circle: the root declares and re-exports
//! them, and children use the items it defines.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Layers, bottom to top, named by the first path segment under `src/` (a folder, or a file
/// without `.rs`; `*` ends a prefix). A file may import its own layer and the layers below it.
/// `extract` and `trace` fill the store straight from models and corpora, so they sit with
/// `store`. `lib` is the crate root: not checked.
#[rustfmt::skip]
const LAYERS: &[(&str, &[&str])] = &[
    ("foundations", &["kernels", "io", "device", "memory", "folder_lock", "flag_values", "hub", "plot", "sorted_json"]),
    ("models, corpus", &["models", "corpus"]),
    ("store", &["store", "extract", "trace", "import"]),
    ("sae", &["sae"]),
    ("synth, analysis, toy", &["synth", "analysis", "toy"]),
    ("report", &["report"]),
    ("pipeline", &["pipeline"]),
    ("cli", &["main", "cli"]),
];

/// Where ground-floor code (kernels, the hub client) lived inside higher modules before it moved
/// down into `kernels` and `hub`. A use of one of these paths means such code came back up: a
/// module would depend on a model architecture or an SAE just for a kernel.
const FLOOR_CODE_UPSTAIRS: &[&str] = &[
    "models::fused",
    "models::kernels",
    "models::rows",
    "models::load::Hub",
    "sae::model::dot",
];

/// Today's import problems, each with why it is there. Keys as the test prints them:
/// `FROM -> TO` (a climb), `FROM -> CODE` (floor code upstairs), `A <-> B` (a circle).
#[rustfmt::skip] // one entry per line: delete the line when it is fixed
const KNOWN_VIOLATIONS: &[(&str, &str)] = &[
];

/// Files over 500 lines before their tests today. Issue 23 item 4 splits them by concern.
#[rustfmt::skip] // one entry per line: delete the line when it is fixed
const KNOWN_LONG_FILES: &[(&str, &str)] = &[
];

/// Functions over 100 lines today (`FILE: fn NAME`). Issue 23 item 4.
#[rustfmt::skip] // one entry per line: delete the line when it is fixed
const KNOWN_LONG_FUNCTIONS: &[(&str, &str)] = &[
];

const MAX_FILE_LINES: usize = 500;
const MAX_FN_LINES: usize = 100;

// ---------------------------------------------------------------------------------------------
// The checks.

#[test]
fn imports_go_down_the_layers_and_make_no_circles() {
    let files = source_files();
    let mut found: BTreeMap<String, String> = BTreeMap::new();
    let mut edges: BTreeSet<(String, String)> = BTreeSet::new();
    let mut unplaced = BTreeSet::new();
    for f in &files {
        let Some(from_layer) = layer_of(&f.path) else {
            if f.path != "src/lib.rs" {
                unplaced.insert(top_name(&f.path));
            }
            continue;
        };
        for import in &f.imports {
            let Some(to) = resolve(&import.segments) else {
                continue;
            };
            if to == f.path {
                continue;
            }
            edges.insert((f.path.clone(), to.clone()));
            let path = import.segments.join("::");
            if let Some(to_layer) = layer_of(&to) {
                if to_layer > from_layer {
                    found.insert(
                        format!("{} -> {to}", f.path),
                        format!(
                            "{}:{} uses `{path}`, but `{}` is in layer \"{}\", above \"{}\" of `{}`: \
                             imports may only go down the LAYERS table in tests/architecture.rs. \
                             Move what is shared down (into the lower module or a foundation \
                             module such as io/util), or move the code that needs it up.",
                            f.path, import.line, top_name(&to), LAYERS[to_layer].0,
                            LAYERS[from_layer].0, top_name(&f.path)
                        ),
                    );
                }
            }
            for code in FLOOR_CODE_UPSTAIRS {
                let home = code.split("::").next().unwrap();
                if path.starts_with(code) && top_name(&f.path) != home {
                    found.insert(
                        format!("{} -> {code}", f.path),
                        format!(
                            "{}:{} uses `{path}`: ground-floor code that still lives in `{home}` \
                             (FLOOR_CODE_UPSTAIRS in tests/architecture.rs). Import it from its \
                             foundation module (kernels / hub) instead; if it has not moved yet, \
                             move it there first.",
                            f.path, import.line
                        ),
                    );
                }
            }
        }
    }
    for (a, b) in &edges {
        if a < b && edges.contains(&(b.clone(), a.clone())) && !is_root_and_child(a, b) {
            found.insert(
                format!("{a} <-> {b}"),
                format!(
                    "{a} and {b} import each other: move what both need into one of them (so the \
                     other only imports it) or into a third file that both import."
                ),
            );
        }
    }
    let mut problems: Vec<String> = unplaced
        .iter()
        .map(|m| {
            format!(
                "`{m}` (src/{m}.rs or src/{m}/) is in no layer of LAYERS in tests/architecture.rs: \
                 add it to the layer it belongs to (see the comment above LAYERS)."
            )
        })
        .collect();
    problems.extend(circles_longer_than_two(&edges));
    problems.extend(compare_with_known(
        &found,
        KNOWN_VIOLATIONS,
        "KNOWN_VIOLATIONS",
    ));
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n\n"));
}

#[test]
fn files_and_functions_stay_small() {
    let mut long_files = BTreeMap::new();
    let mut long_fns = BTreeMap::new();
    for f in source_files() {
        let file_says_why = f.raw[..f.leading_comment_lines()]
            .iter()
            .any(|l| says_size(l));
        if f.lines() > MAX_FILE_LINES && !file_says_why {
            long_files.insert(
                f.path.clone(),
                format!(
                    "{} has {} lines before its tests (limit {MAX_FILE_LINES}): split it by \
                     concern, one concept per file (a folder with mod.rs when it is a stage). If it \
                     must stay whole, say why in a comment line starting with `size:` at the top \
                     of the file (in its //! block).",
                    f.path,
                    f.lines()
                ),
            );
        }
        for func in f.functions() {
            if func.lines > MAX_FN_LINES && !func.says_why {
                long_fns.insert(
                    format!("{}: fn {}", f.path, func.name),
                    format!(
                        "{}:{} fn {} has {} lines (limit {MAX_FN_LINES}): split it into named \
                         steps (helper functions, or a struct whose methods are the steps). If it \
                         must stay whole, say why in a comment line starting with `size:` \
                         directly above it (e.g. `// size: one match over every flag`).",
                        f.path, func.start, func.name, func.lines
                    ),
                );
            }
        }
    }
    let mut problems = compare_with_known(&long_files, KNOWN_LONG_FILES, "KNOWN_LONG_FILES");
    problems.extend(compare_with_known(
        &long_fns,
        KNOWN_LONG_FUNCTIONS,
        "KNOWN_LONG_FUNCTIONS",
    ));
    assert!(problems.is_empty(), "\n{}\n", problems.join("\n\n"));
}

/// New problems (not in the known list) and known entries that no longer occur.
fn compare_with_known(
    found: &BTreeMap<String, String>,
    known: &[(&str, &str)],
    list: &str,
) -> Vec<String> {
    let known_keys: BTreeSet<&str> = known.iter().map(|(k, _)| *k).collect();
    let mut problems: Vec<String> = found
        .iter()
        .filter(|(key, _)| !known_keys.contains(key.as_str()))
        .map(|(key, why)| {
            format!("[{key}]\n{why}\n(Do not add it to {list}: that list only shrinks.)")
        })
        .collect();
    for key in known_keys {
        if !found.contains_key(key) {
            problems.push(format!(
                "{list} in tests/architecture.rs lists `{key}`, which no longer occurs: well done, \
                 delete that line (the list only shrinks). If you only renamed or moved the \
                 file, the new name is reported above as a new problem: fix it rather than \
                 relisting it."
            ));
        }
    }
    problems
}

/// Cycles through three or more files, once the two-file circles (reported as pairs) are set
/// aside.
fn circles_longer_than_two(edges: &BTreeSet<(String, String)>) -> Vec<String> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        let pair = edges.contains(&(b.clone(), a.clone()));
        if !pair && !is_root_and_child(a, b) {
            next.entry(a.as_str()).or_default().push(b.as_str());
        }
    }
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(x) = todo.pop() {
            for y in next.get(x.as_str()).into_iter().flatten() {
                if seen.insert(y.to_string()) {
                    todo.push(y.to_string());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&str, BTreeSet<String>> = next.keys().map(|a| (*a, reach(a))).collect();
    let mut groups = BTreeSet::new();
    for (a, from_a) in &reachable {
        let group: Vec<&str> = from_a
            .iter()
            .filter(|b| reachable.get(b.as_str()).is_some_and(|r| r.contains(*a)))
            .map(String::as_str)
            .collect();
        if group.len() > 2 {
            groups.insert(group.join(", "));
        }
    }
    groups
        .into_iter()
        .map(|g| {
            format!(
                "these files import each other in a circle: {g}. Find the import that points back \
                 up the chain and move what it needs into a file the others import."
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Reading the tree.

struct SourceFile {
    /// `src/models/fused.rs`
    path: String,
    /// The lines before the `#[cfg(test)] mod tests` block, as written.
    raw: Vec<String>,
    /// The same lines with comments, strings and char literals blanked (structure only).
    code: Vec<String>,
    imports: Vec<Import>,
}

struct Import {
    /// Absolute module path from the crate root, e.g. ["models", "fused", "matmul"].
    segments: Vec<String>,
    /// 1-based line of the import.
    line: usize,
}

struct Function {
    name: String,
    start: usize,
    lines: usize,
    says_why: bool,
}

/// Every `.rs` file under `src/` except test-only files (`#[cfg(test)] mod x;`).
fn source_files() -> Vec<SourceFile> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    collect_rs(&root.join("src"), &mut paths);
    let texts: BTreeMap<String, String> = paths
        .iter()
        .map(|p| {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, fs::read_to_string(p).unwrap())
        })
        .collect();
    let test_only: BTreeSet<String> = texts
        .iter()
        .flat_map(|(path, text)| test_only_children(path, text))
        .collect();
    texts
        .into_iter()
        .filter(|(path, _)| !test_only.contains(path))
        .map(|(path, text)| SourceFile::new(path, &text))
        .collect()
}

fn collect_rs(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            collect_rs(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Files declared `#[cfg(test)] mod NAME;` by `path`.
fn test_only_children(path: &str, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let dir = module_dir(path);
    lines
        .windows(2)
        .filter(|w| w[0].trim() == "#[cfg(test)]")
        .filter_map(|w| {
            w[1].trim()
                .strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .map(|name| format!("{dir}/{name}.rs"))
        .collect()
}

/// The folder holding a file's child modules: `src/a/mod.rs` and `src/a.rs` → `src/a`.
fn module_dir(path: &str) -> String {
    let p = path.trim_end_matches(".rs");
    match p.strip_suffix("/mod") {
        Some(dir) => dir.to_string(),
        None if p == "src/lib" || p == "src/main" => "src".to_string(),
        None => p.to_string(),
    }
}

/// The file's module path: `src/corpus/read.rs` → ["corpus", "read"]; lib/main → [].
fn module_path(path: &str) -> Vec<String> {
    let dir = module_dir(path);
    dir.trim_start_matches("src")
        .split('/')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// `src/models/fused.rs` → `models`, `src/cmd_run.rs` → `cmd_run`.
fn top_name(path: &str) -> String {
    let rest = path.trim_start_matches("src/");
    rest.split('/')
        .next()
        .unwrap()
        .trim_end_matches(".rs")
        .to_string()
}

fn layer_of(path: &str) -> Option<usize> {
    let name = top_name(path);
    LAYERS.iter().position(|(_, members)| {
        members.iter().any(|m| match m.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *m,
        })
    })
}

/// `a` is the root file of the module that holds `b`, or the other way round.
fn is_root_and_child(a: &str, b: &str) -> bool {
    let parent_of = |child: &str| {
        let dir = child.rsplit_once('/').map_or("", |(d, _)| d).to_string();
        [format!("{dir}/mod.rs"), format!("{dir}.rs")]
    };
    parent_of(b).contains(&a.to_string()) || parent_of(a).contains(&b.to_string())
}

/// The deepest file the path names, walking `src/` segment by segment.
fn resolve(segments: &[String]) -> Option<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dir = "src".to_string();
    let mut file = None;
    for seg in segments {
        let as_file = format!("{dir}/{seg}.rs");
        let as_dir = format!("{dir}/{seg}/mod.rs");
        if root.join(&as_file).is_file() {
            file = Some(as_file);
        } else if root.join(&as_dir).is_file() {
            file = Some(as_dir);
        } else {
            break;
        }
        dir = format!("{dir}/{seg}");
    }
    file
}

impl SourceFile {
    fn new(path: String, text: &str) -> SourceFile {
        let all: Vec<&str> = text.lines().collect();
        // Tests come last by convention: stop at `#[cfg(test)]` opening a `mod ... {` block.
        let end = (0..all.len())
            .find(|&i| {
                all[i] == "#[cfg(test)]"
                    && all
                        .get(i + 1)
                        .is_some_and(|n| n.contains("mod ") && n.ends_with('{'))
            })
            .unwrap_or(all.len());
        let raw: Vec<String> = all[..end].iter().map(|s| s.to_string()).collect();
        let code = blank_comments_and_strings(&raw.join("\n"));
        let code: Vec<String> = code.split('\n').map(String::from).collect();
        let imports = imports(&path, &code);
        SourceFile {
            path,
            raw,
            code,
            imports,
        }
    }

    fn lines(&self) -> usize {
        self.raw.len()
    }

    /// Lines of the comment block that opens the file (its `//!` docs, say).
    fn leading_comment_lines(&self) -> usize {
        self.raw
            .iter()
            .take_while(|l| l.trim().is_empty() || l.trim().starts_with("//"))
            .count()
    }

    /// Every `fn` with a body: its first line, length in lines, and whether it says why it is long.
    fn functions(&self) -> Vec<Function> {
        let mut out = Vec::new();
        for (i, line) in self.code.iter().enumerate() {
            let Some(name) = fn_name(line) else { continue };
            let Some(end) = body_end(&self.code, i) else {
                continue;
            };
            let above = self.raw[..i]
                .iter()
                .rev()
                .take_while(|l| {
                    let t = l.trim();
                    t.starts_with("//") || t.starts_with("#[") || t.starts_with("#!")
                })
                .any(|l| says_size(l));
            let inside = self.raw[i..=end].iter().any(|l| says_size(l));
            out.push(Function {
                name,
                start: i + 1,
                lines: end - i + 1,
                says_why: above || inside,
            });
        }
        out
    }
}

/// A comment line whose text starts with `size:` (`// size: ...`, `/// size: ...`, `//! size: ...`).
fn says_size(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("//")
        && t.trim_start_matches('/')
            .trim_start_matches('!')
            .trim_start()
            .starts_with("size:")
}

/// The name after the keyword `fn` on this line, if it declares a function (not `fn(` types).
fn fn_name(code_line: &str) -> Option<String> {
    let bytes = code_line.as_bytes();
    let mut from = 0;
    while let Some(k) = code_line[from..].find("fn ") {
        let at = from + k;
        let word_start =
            at == 0 || !(bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_');
        let name: String = code_line[at + 3..]
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if word_start && !name.is_empty() {
            return Some(name);
        }
        from = at + 3;
    }
    None
}

/// Line index of the `}` closing the body of the fn declared on line `start` (None: no body).
fn body_end(code: &[String], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut opened = false;
    for (i, line) in code.iter().enumerate().skip(start) {
        for c in line.chars() {
            match c {
                ';' if !opened && depth == 0 => return None,
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => {
                    depth = depth.saturating_sub(1);
                    if opened && depth == 0 {
                        return Some(i);
                    }
                }
                _ => {}
            }
        }
    }
    None
}

/// Comments, string literals and char literals replaced by spaces; newlines kept.
fn blank_comments_and_strings(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let at = |j: usize| c.get(j).copied().unwrap_or('\0');
    let mut out: Vec<char> = c.clone();
    // Blank c[from..to], keeping newlines.
    let mut blank = |from: usize, to: usize| {
        for ch in &mut out[from..to.min(c.len())] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
    };
    let mut i = 0;
    while i < c.len() {
        let start = i;
        if at(i) == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if at(i) == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if at(i) == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if at(i) == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if at(i) == 'r'
            && (at(i + 1) == '"' || (at(i + 1) == '#' && matches!(at(i + 2), '"' | '#')))
            && (i == 0 || !(at(i - 1).is_alphanumeric() || at(i - 1) == '_'))
        {
            // A raw string r"..." or r#"..."#: it ends at a quote followed by as many #.
            i += 1;
            let mut hashes = 0;
            while at(i) == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1;
            while i < c.len() && !(at(i) == '"' && (1..=hashes).all(|h| at(i + h) == '#')) {
                i += 1;
            }
            i += 1 + hashes;
        } else if at(i) == '"' {
            i += 1;
            while i < c.len() && at(i) != '"' {
                i += if at(i) == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if at(i) == '\'' && (at(i + 1) == '\\' || at(i + 2) == '\'') {
            // A char literal ('{', '\n', '\u{7f}'); a lifetime ('a) has no closing quote.
            i += 2;
            while i < c.len() && at(i) != '\'' {
                i += 1;
            }
            i += 1;
        } else {
            i += 1;
            continue;
        }
        blank(start, i);
    }
    out.into_iter().collect()
}

/// The crate-internal paths a file uses: `use` trees expanded, then inline paths.
fn imports(path: &str, code: &[String]) -> Vec<Import> {
    let here = module_path(path);
    let text = code.join("\n");
    let line_of = |pos: usize| text[..pos].matches('\n').count() + 1;
    let mut out = Vec::new();
    let mut rest = text.clone();
    // `use` statements: from the keyword to its `;`, braces expanded; then blanked from `rest`.
    let mut search = 0;
    while let Some(k) = text[search..].find("use ") {
        let at = search + k;
        search = at + 4;
        let before = text[..at].chars().last().unwrap_or(' ');
        if before.is_alphanumeric() || before == '_' {
            continue;
        }
        let Some(len) = text[at..].find(';') else {
            break;
        };
        let tree = &text[at + 4..at + len];
        for p in expand_use_tree(tree) {
            if let Some(segments) = absolute(&p, &here) {
                out.push(Import {
                    segments,
                    line: line_of(at),
                });
            }
        }
        rest.replace_range(at..at + len, &" ".repeat(len));
    }
    // Inline paths such as `crate::models::fused::matmul(...)`.
    for start in ["crate::", "super::", "unravel::", "self::"] {
        let mut from = 0;
        while let Some(k) = rest[from..].find(start) {
            let at = from + k;
            from = at + start.len();
            let before = rest[..at].chars().last().unwrap_or(' ');
            if before.is_alphanumeric() || before == '_' || before == ':' {
                continue;
            }
            let p: String = rest[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            if let Some(segments) = absolute(p.trim_end_matches(':'), &here) {
                out.push(Import {
                    segments,
                    line: line_of(at),
                });
            }
        }
    }
    out
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e` (`self` in a group names the prefix).
fn expand_use_tree(tree: &str) -> Vec<String> {
    let mut tree = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    for (from, to) in [
        (":: ", "::"),
        (" ::", "::"),
        ("{ ", "{"),
        (" {", "{"),
        (" }", "}"),
        ("} ", "}"),
        (", ", ","),
        (" ,", ","),
    ] {
        while tree.contains(from) {
            tree = tree.replace(from, to);
        }
    }
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let prefix = tree[..open].trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.is_empty())
        .flat_map(expand_use_tree)
        .map(|p| match p.as_str() {
            "self" => prefix.to_string(),
            _ if prefix.is_empty() => p,
            _ => format!("{prefix}::{p}"),
        })
        .collect()
}

/// A path made absolute from the crate root; None for external crates and std.
fn absolute(path: &str, here: &[String]) -> Option<Vec<String>> {
    let path = path.trim_start_matches("::");
    let path = path.split(" as ").next().unwrap();
    let mut segs: Vec<&str> = path
        .split("::")
        .filter(|s| !s.is_empty() && *s != "*")
        .collect();
    let mut base: Vec<String> = match segs.first() {
        Some(&"crate") | Some(&"unravel") => {
            segs.remove(0);
            Vec::new()
        }
        Some(&"self") => {
            segs.remove(0);
            here.to_vec()
        }
        Some(&"super") => {
            let mut base = here.to_vec();
            while segs.first() == Some(&"super") {
                segs.remove(0);
                base.pop();
            }
            base
        }
        _ => return None,
    };
    base.extend(segs.into_iter().map(String::from));
    Some(base)
}
