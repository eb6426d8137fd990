//! `tasker init [DIR]`: a project folder with `tasker.toml`, an example template built from
//! the built-in step handlers, the template JSON Schema for editors, and a README.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, bail};

/// The files written, relative to the project folder, with their contents.
const FILES: &[(&str, &str)] = &[
    ("tasker.toml", include_str!("init/tasker.toml")),
    ("README.md", include_str!("init/README.md")),
    (
        "templates/hello_world.yaml",
        include_str!("init/hello.yaml"),
    ),
    (
        "task-template.schema.json",
        include_str!("../../../schemas/task-template.schema.json"),
    ),
];

/// Writes the project into `dir` (created when missing). A folder that holds anything is refused
/// unless `force`, and then only the files above are overwritten.
pub(crate) fn run(dir: &Path, force: bool) -> anyhow::Result<ExitCode> {
    if dir.exists() {
        if !dir.is_dir() {
            bail!("{} exists and is not a folder", dir.display());
        }
        let occupied = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_some();
        if occupied && !force {
            bail!(
                "{} is not empty; choose an empty or new folder, or pass --force to overwrite \
                 tasker.toml, README.md, task-template.schema.json and templates/hello_world.yaml",
                dir.display()
            );
        }
    }
    for (name, contents) in FILES {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("created a Tasker project in {}", dir.display());
    println!("  cd {}", dir.display());
    println!("  tasker run examples/hello_world --context '{{\"name\": \"Ada\"}}'");
    Ok(ExitCode::SUCCESS)
}
