//! `tasker init`: a project folder whose example template runs where it was made.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use tasker_persistence::testing::on_each_database;

use crate::text;

fn tasker_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tasker"))
        .args(args)
        .current_dir(dir)
        .env_remove("TASKER_DATABASE_URL")
        .env("TASKER_ENGINE__BACKOFF__BASE", "0.05")
        .env("TASKER_ENGINE__BACKOFF__JITTER", "0")
        .output()
        .expect("the tasker binary runs")
}

#[tokio::test]
async fn an_initialised_project_runs_its_example_template() {
    on_each_database(|db| async move {
        let scratch = tempfile::tempdir().unwrap();
        let out = tasker_in(scratch.path(), &["init", "project"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let project = scratch.path().join("project");
        for file in [
            "tasker.toml",
            "README.md",
            "templates/hello_world.yaml",
            "task-template.schema.json",
        ] {
            assert!(project.join(file).is_file(), "{file} missing");
        }
        // The SQLite run uses the database the project's tasker.toml names, beside it.
        let mut args = vec![
            "run",
            "examples/hello_world",
            "--context",
            r#"{"name": "Ada"}"#,
            "--json",
        ];
        if db.backend.as_str() == "postgres" {
            args.extend(["--database", db.url.as_str()]);
        }
        let out = tasker_in(&project, &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["status"], "complete", "{doc}");
        assert_eq!(doc["steps"]["check_tone"]["attempts"], 2);
        assert_eq!(doc["steps"]["report"]["status"], "complete");
        if db.backend.as_str() == "sqlite" {
            assert!(project.join("tasker.db").is_file());
        }
    })
    .await;
}

#[test]
fn init_refuses_a_folder_that_is_not_empty_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let out = tasker_in(dir.path(), &["init"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is not empty; choose an empty or new folder, or pass --force"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("tasker.toml").exists());
    let out = tasker_in(dir.path(), &["init", "--force"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.path().join("templates/hello_world.yaml").is_file());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn a_configured_templates_dir_that_is_missing_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tasker.toml"),
        "[database]\nurl = \"sqlite://t.db?mode=rwc\"\n[templates]\ndir = \"flows\"\n",
    )
    .unwrap();
    let out = tasker_in(dir.path(), &["run", "examples/hello_world"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("templates.dir `flows` is not a folder"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("t.db").exists(), "nothing is stored");
}
