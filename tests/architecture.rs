//! The layout's rules (docs/design.md §6), checked on the source so that they hold after the next
//! change too: commands on top, engines in the middle, infrastructure and pure knowledge at
//! the bottom, no import cycle, and the safety mechanics reachable only through `db::Session`.
//!
//! These read `src/` as text; they need no database.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Modules that only parse the command line and call engines.
const TOP: &[&str] = &["main", "cli", "commands"];
/// Infrastructure and pure knowledge: they may not reach up into engines or commands.
const BOTTOM: &[&str] = &[
    "db", "catalog", "units", "exit", "refusal", "progress", "report", "output", "journal",
];

struct Source {
    path: PathBuf,
    /// The module directly under `src/` the file belongs to (`db` for `src/db/lock.rs`).
    module: String,
    /// The text without comments and without its `#[cfg(test)]` module.
    code: String,
}

/// Modules `lib.rs` compiles only for tests (e.g. report snapshots built from every report).
fn test_only_modules(root: &Path) -> Vec<String> {
    let lib = fs::read_to_string(root.join("lib.rs")).unwrap();
    let lines: Vec<&str> = lib.lines().collect();
    lines
        .windows(2)
        .filter(|pair| pair[0].trim() == "#[cfg(test)]")
        .filter_map(|pair| pair[1].trim().strip_prefix("mod "))
        .map(|rest| rest.trim_end_matches(';').to_string())
        .collect()
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let test_only = test_only_modules(&root);
    let mut found = Vec::new();
    walk(&root, &mut found);
    found
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&root).unwrap();
            let first = relative.components().next().unwrap();
            let module = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            let text = fs::read_to_string(&path).unwrap();
            let production = text.split("#[cfg(test)]").next().unwrap_or_default();
            let code = production
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            let path = Path::new("src").join(relative);
            Source { path, module, code }
        })
        .filter(|source| !test_only.contains(&source.module))
        .collect()
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The modules under `src/` a piece of code names through `crate::…` (also `crate::{a, b}`).
fn modules_used(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name = part.trim().split("::").next().unwrap_or("").trim();
                if !name.is_empty() {
                    used.insert(name.to_string());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                used.insert(name);
            }
        }
    }
    used
}

fn dependency_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in sources() {
        let entry = graph.entry(source.module.clone()).or_default();
        for used in modules_used(&source.code) {
            if used != source.module {
                entry.insert(used);
            }
        }
    }
    graph
}

/// A path from `from` back to itself through the graph, if there is one.
fn cycle_through(graph: &BTreeMap<String, BTreeSet<String>>, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_string(), vec![from.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == from {
                let mut cycle = path.clone();
                cycle.push(from.to_string());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn the_modules_import_each_other_without_a_cycle() {
    let graph = dependency_graph();
    let cycles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_through(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "import cycles: {cycles:#?}");
}

#[test]
fn infrastructure_and_knowledge_never_reach_up_into_engines_or_commands() {
    let graph = dependency_graph();
    let mut wrong = Vec::new();
    for bottom in BOTTOM {
        for used in graph.get(*bottom).into_iter().flatten() {
            if !BOTTOM.contains(&used.as_str()) {
                wrong.push(format!("{bottom} uses {used}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn nothing_but_the_top_uses_the_commands() {
    let graph = dependency_graph();
    let wrong: Vec<String> = graph
        .iter()
        .filter(|(module, _)| !TOP.contains(&module.as_str()) && module.as_str() != "lib")
        .filter(|(_, used)| used.contains("commands") || used.contains("cli"))
        .map(|(module, _)| module.clone())
        .collect();
    assert!(wrong.is_empty(), "engines using commands or cli: {wrong:?}");
}

/// Every place where a file that `within` selects calls one of `calls`.
fn calls_in(within: impl Fn(&Source) -> bool, calls: &[&str]) -> Vec<String> {
    sources()
        .iter()
        .filter(|s| within(s))
        .flat_map(|s| {
            calls
                .iter()
                .filter(|call| s.code.contains(*call))
                .map(move |call| format!("{} calls {call}…)", s.path.display()))
        })
        .collect()
}

/// The advisory lock, lock_timeout, the retry and the writable-server check are Session's:
/// called anywhere else, a command could change the database without one of them.
#[test]
fn the_safety_mechanics_are_called_only_from_src_db() {
    let wrong = calls_in(
        |s| s.module != "db",
        &[
            "acquire_migration_lock(",
            "set_lock_timeout(",
            "retry_on_lock_timeout(",
            "refuse_unless_writable(",
            "refuse_if_pooled(",
            "release_migration_lock(",
            "mark_pooled(",
            "lift_statement_timeout(",
        ],
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// The rest of a changing command's envelope is the Session's too: waiting for the sessions
/// that would block its table locks (`Session::locking`) and pacing long work for the
/// standbys (`Session::pace`, the session's own throttle). Called anywhere else, a command or
/// an engine could take its table locks without the look, or run ahead of the standbys.
#[test]
fn the_envelope_rituals_are_called_only_from_src_db() {
    let wrong = calls_in(
        |s| s.module != "db",
        &[
            "wait_until_clear(",
            "wait_for_blockers(",
            "between_batches(",
            "ReplicaThrottle",
            "replica_throttle(",
        ],
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Commands and engines name none of the rituals, not even in a comment: they hand the
/// envelope to the Session (docs/design.md §9) and never thread its parts through signatures.
#[test]
fn commands_and_engines_never_name_the_rituals() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut wrong = Vec::new();
    for folder in ["commands", "cleanup", "migrate", "archive", "constraints"] {
        let mut files = Vec::new();
        walk(&root.join(folder), &mut files);
        for path in files {
            let text = fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let named = [
                    "wait_for_blockers",
                    "replica_throttle",
                    "lift_statement_timeout",
                ]
                .iter()
                .any(|ritual| line.contains(ritual));
                if named {
                    wrong.push(format!("{}:{}: {line}", path.display(), n + 1));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// Every statement goes through `db::Query` (src/db/query.rs): an unnamed statement with its
/// parameter types, never a named prepared statement, which a transaction-mode pooler breaks
/// ("prepared statement "s1" does not exist") and which could stay on a backend the
/// application gets next; on a pooled run the wrapper also sets what each transaction needs.
/// Only the pooler check, the application probe and the rehearsal's pooled application speak
/// the simple protocol themselves (on connections that are not ours to set up: before the path
/// is known, or as the application).
#[test]
fn statements_go_through_db_query_only() {
    let allowed = [
        "src/db/query.rs",
        "src/db/pooler.rs",
        "src/db/probe.rs",
        "src/rehearsal/pooled_rollout.rs",
    ];
    let wrong = calls_in(
        |s| !allowed.iter().any(|a| s.path.ends_with(a)),
        &[
            ".query(",
            ".query_one(",
            ".query_opt(",
            ".query_raw(",
            ".execute(",
            ".prepare(",
            ".batch_execute(",
            ".simple_query(",
        ],
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A command parses, calls an engine and reports: it never runs a changing statement itself.
#[test]
fn commands_run_no_statements_of_their_own() {
    let wrong = calls_in(
        |s| s.module == "commands",
        &[
            ".transaction(",
            ".build_transaction(",
            ".execute(",
            ".batch_execute(",
        ],
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn no_function_needs_a_too_many_arguments_exemption() {
    let wrong: Vec<String> = sources()
        .iter()
        .filter(|s| s.code.contains("too_many_arguments"))
        .map(|s| s.path.display().to_string())
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");
}

#[test]
fn the_import_reader_sees_grouped_and_plain_paths() {
    let used = modules_used("use crate::{db::Session, report};\nlet x = crate::units::parse(1);");
    let expected: BTreeSet<String> = ["db", "report", "units"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(used, expected);
}

/// Within one folder, the files (`src/cleanup/plan.rs`, `src/cleanup/statements.rs`, …) form a
/// graph through `super::x` and `crate::folder::x`: a circle there is a type in the wrong file.
fn sibling_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for source in sources() {
        let Some(folder) = source.path.parent() else {
            continue;
        };
        let name = match source.path.file_stem().and_then(|s| s.to_str()) {
            Some("mod") | Some("lib") | Some("main") | None => continue,
            Some(stem) => stem.to_string(),
        };
        // A folder module's own mod.rs is its parent, not a sibling.
        let folder_module: Vec<String> = folder
            .strip_prefix("src")
            .unwrap_or(folder)
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let crate_prefix = format!("crate::{}::", folder_module.join("::"));
        let node = format!("{}/{name}", folder.display());
        let entry = graph.entry(node.clone()).or_default();
        let siblings: Vec<String> = fs::read_dir(folder)
            .unwrap()
            .filter_map(|e| {
                let path = e.ok()?.path();
                let stem = path.file_stem()?.to_str()?.to_string();
                (stem != "mod" && stem != name).then_some(stem)
            })
            .collect();
        for sibling in siblings {
            let plain = [
                format!("super::{sibling}::"),
                format!("super::{sibling};"),
                format!("super::{sibling}}}"),
                format!("{crate_prefix}{sibling}::"),
                format!("{crate_prefix}{sibling};"),
            ];
            let grouped = source
                .code
                .match_indices("super::{")
                .chain(source.code.match_indices(&format!("{crate_prefix}{{")))
                .any(|(at, found)| {
                    let group = &source.code[at + found.len()..];
                    let group = &group[..group.find('}').unwrap_or(group.len())];
                    group
                        .split(',')
                        .any(|part| part.trim().split("::").next() == Some(sibling.as_str()))
                });
            if grouped || plain.iter().any(|p| source.code.contains(p.as_str())) {
                entry.insert(format!("{}/{sibling}", folder.display()));
            }
        }
    }
    graph
}

#[test]
fn the_files_of_one_folder_import_each_other_without_a_circle() {
    let graph = sibling_graph();
    let circles: BTreeSet<String> = graph
        .keys()
        .filter_map(|m| cycle_through(&graph, m))
        .map(|mut c| {
            // One circle, however it is entered.
            c.pop();
            let start = c
                .iter()
                .enumerate()
                .min_by_key(|(_, n)| *n)
                .map_or(0, |(i, _)| i);
            c.rotate_left(start);
            c.join(" -> ")
        })
        .collect();
    assert!(
        circles.is_empty(),
        "circles between the files of one folder: {circles:#?}"
    );
}
