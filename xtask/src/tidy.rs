//! `cargo xtask tidy`: checks that keep the repository explaining itself, also run as
//! `#[test]`s.
//!
//! 1. Every Rust source file opens with a `//!` header saying what it is.
//! 2. No file refers readers to planning material that is not in the repository: no paths
//!    outside it, no section or defect numbers of outside documents, no issue numbers of our
//!    own tracker (an upstream project's issue may be cited on a line that says `upstream`).
//! 3. The doctest list in `tests/src/lib.rs` names exactly the documents that hold Rust blocks.
//! 4. Every package opts into the workspace lints (`[lints] workspace = true`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

fn root() -> PathBuf {
    crate::workspace_root()
}

/// The repository's files (tracked, or new and not ignored), relative to `root`.
fn project_files(root: &Path) -> anyhow::Result<Vec<String>> {
    let output = Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard"])
        .current_dir(root)
        .output()
        .context("running git ls-files")?;
    anyhow::ensure!(output.status.success(), "git ls-files failed");
    let mut files: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|path| root.join(path).is_file())
        .map(str::to_owned)
        .collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// Check 1 on one file.
fn header_problem(path: &str, text: &str) -> Option<String> {
    let first = text.lines().find(|line| !line.trim().is_empty())?;
    (!first.starts_with("//!")).then(|| format!("{path}: does not open with a `//!` header"))
}

/// Check 2 on one file: each line that points outside the repository.
fn reference_problems(path: &str, text: &str) -> Vec<String> {
    // Spelled in pieces so this file does not trip its own check.
    let outside: [String; 5] = [
        format!("../{}", "shared"),
        format!("{}.md", "design"),
        format!("design {}", '§'),
        format!("inventory {}", '§'),
        format!("Inventory {}", '§'),
    ];
    let mut problems = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let at = || format!("{path}:{}", number + 1);
        if let Some(found) = outside.iter().find(|needle| line.contains(needle.as_str())) {
            problems.push(format!(
                "{}: refers to `{found}`, outside the repository",
                at()
            ));
        }
        if let Some(defect) = defect_number(line) {
            problems.push(format!(
                "{}: cites defect number `{defect}`; say what the defect was instead",
                at()
            ));
        }
        if !line.to_ascii_lowercase().contains("upstream")
            && let Some(issue) = issue_number(line)
        {
            problems.push(format!(
                "{}: cites `{issue}`; say what it asked for instead",
                at()
            ));
        }
    }
    problems
}

/// A `G` followed by a number from 1 to 21, as a whole word: how planning notes outside the
/// repository number known defects.
fn defect_number(line: &str) -> Option<&str> {
    words(line).find(|word| {
        word.strip_prefix('G')
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| (1..=21).contains(&n) && !word[1..].starts_with('0'))
    })
}

/// `issue 12`, `issue #12`, `Issue 12`.
fn issue_number(line: &str) -> Option<String> {
    let lower = line.to_ascii_lowercase();
    let mut rest = lower.as_str();
    while let Some(at) = rest.find("issue") {
        let after = rest[at + "issue".len()..].trim_start_matches(' ');
        let after = after.strip_prefix('#').unwrap_or(after);
        let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
        let word_start = at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric();
        if word_start && !digits.is_empty() {
            return Some(format!("issue {digits}"));
        }
        rest = &rest[at + "issue".len()..];
    }
    None
}

fn words(line: &str) -> impl Iterator<Item = &str> {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// Check 3: the documents with Rust blocks, and those the doctest crate includes.
fn doctest_problems(root: &Path, files: &[String]) -> anyhow::Result<Vec<String>> {
    let mut with_rust = BTreeSet::new();
    for path in files {
        let is_doc = path == "README.md" || (path.starts_with("docs/") && path.ends_with(".md"));
        if !is_doc {
            continue;
        }
        let text = std::fs::read_to_string(root.join(path))?;
        if text
            .lines()
            .any(|line| line.trim_start().starts_with("```rust"))
        {
            with_rust.insert(path.clone());
        }
    }
    let lib = std::fs::read_to_string(root.join("tests/src/lib.rs"))?;
    let included: BTreeSet<String> = lib
        .lines()
        .filter_map(|line| {
            let rest = line.split("include_str!(\"../../").nth(1)?;
            Some(rest.split('"').next()?.to_owned())
        })
        .collect();
    let mut problems = Vec::new();
    for missing in with_rust.difference(&included) {
        problems.push(format!(
            "{missing} holds Rust blocks but tests/src/lib.rs does not include it as doctests"
        ));
    }
    for extra in included.difference(&with_rust) {
        problems.push(format!(
            "tests/src/lib.rs includes {extra}, which holds no Rust block (or does not exist)"
        ));
    }
    Ok(problems)
}

/// Every problem in the repository, in file order.
fn problems(root: &Path) -> anyhow::Result<Vec<String>> {
    let files = project_files(root)?;
    let mut problems = Vec::new();
    for path in &files {
        if path == "Cargo.lock" || path == "xtask/src/tidy.rs" {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(path)) else {
            continue; // not text
        };
        if path.ends_with(".rs")
            && let Some(problem) = header_problem(path, &text)
        {
            problems.push(problem);
        }
        if path.ends_with("Cargo.toml")
            && path != "Cargo.toml"
            && !text.contains("[lints]\nworkspace = true")
        {
            problems.push(format!(
                "{path}: does not opt into the workspace lints ([lints] workspace = true)"
            ));
        }
        problems.extend(reference_problems(path, &text));
    }
    problems.extend(doctest_problems(root, &files)?);
    Ok(problems)
}

/// `cargo xtask tidy`.
pub(crate) fn run() -> anyhow::Result<()> {
    let problems = problems(&root())?;
    if problems.is_empty() {
        println!("tidy: ok");
        return Ok(());
    }
    for problem in &problems {
        eprintln!("tidy: {problem}");
    }
    bail!("tidy: {} problem(s)", problems.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_is_tidy() {
        let problems = problems(&root()).unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn headers() {
        assert_eq!(header_problem("a.rs", "//! A.\nfn f() {}\n"), None);
        assert_eq!(header_problem("a.rs", "\n//! A.\n"), None);
        assert_eq!(
            header_problem("a.rs", "use x;\n").as_deref(),
            Some("a.rs: does not open with a `//!` header")
        );
    }

    #[test]
    fn outside_references() {
        let text = format!(
            "fine line\nsee ../{}/x\nas the inventory {}3.4 says\nfixes G{} here\nper issue #{}\nupstream sqlx issue 4335\nG0 and G22 and GET\n",
            "shared", '§', 7, 12
        );
        assert_eq!(
            reference_problems("f.md", &text),
            [
                "f.md:2: refers to `../shared`, outside the repository".to_owned(),
                format!(
                    "f.md:3: refers to `inventory {}`, outside the repository",
                    '§'
                ),
                format!(
                    "f.md:4: cites defect number `G{}`; say what the defect was instead",
                    7
                ),
                "f.md:5: cites `issue 12`; say what it asked for instead".to_owned(),
            ]
        );
    }

    #[test]
    fn the_doctest_list_is_compared_with_the_docs() {
        let dir = tempfile_dir();
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        std::fs::create_dir_all(dir.join("tests/src")).unwrap();
        std::fs::write(dir.join("README.md"), "```rust\nfn main() {}\n```\n").unwrap();
        std::fs::write(dir.join("docs/a.md"), "```rust\nlet x = 1;\n```\n").unwrap();
        std::fs::write(dir.join("docs/b.md"), "text only\n").unwrap();
        std::fs::write(
            dir.join("tests/src/lib.rs"),
            "#[doc = include_str!(\"../../README.md\")]\n#[doc = include_str!(\"../../docs/b.md\")]\n",
        )
        .unwrap();
        let files = ["README.md", "docs/a.md", "docs/b.md"].map(String::from);
        assert_eq!(
            doctest_problems(&dir, &files).unwrap(),
            [
                "docs/a.md holds Rust blocks but tests/src/lib.rs does not include it as doctests",
                "tests/src/lib.rs includes docs/b.md, which holds no Rust block (or does not exist)",
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tasker-tidy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }
}
