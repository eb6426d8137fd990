//! Tests of the soak harness: its command line, its reading of worker output, its kill choice.

use super::*;

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("soak").chain(args.iter().copied())).unwrap()
}

#[test]
fn quick_is_a_short_run_with_a_restart_and_flags_override_it() {
    let quick = Plan::from_cli(&cli(&["--quick"])).unwrap();
    assert_eq!(
        (
            quick.workers,
            quick.duration,
            quick.kill_every,
            quick.pg_restart
        ),
        (
            2,
            Duration::from_secs(75),
            Some(Duration::from_secs(5)),
            true
        )
    );
    let full = Plan::from_cli(&cli(&["--workers", "3", "--kill-every", "0"])).unwrap();
    assert_eq!(
        (
            full.workers,
            full.duration,
            full.kill_every,
            full.pg_restart
        ),
        (3, Duration::from_secs(600), None, false)
    );
    assert_eq!(quick.long_ms(), 6500);
}

#[test]
fn bad_numbers_are_refused_by_name() {
    let error = Plan::from_cli(&cli(&["--workers", "0"])).unwrap_err();
    assert_eq!(error.to_string(), "--workers must be at least 1");
    let error = Plan::from_cli(&cli(&["--kill-every=-1"])).unwrap_err();
    assert!(
        error.to_string().starts_with("--kill-every must be"),
        "{error}"
    );
    let error = Plan::from_cli(&cli(&["--pg-outage", "601"])).unwrap_err();
    assert!(
        error.to_string().starts_with("--pg-outage must be"),
        "{error}"
    );
    let error = Plan::from_cli(&cli(&["--rate", "0"])).unwrap_err();
    assert!(error.to_string().starts_with("--rate must be"), "{error}");
}

#[test]
fn only_a_worker_that_stopped_before_running_is_a_start_failure() {
    assert!(is_start_failure(
        "error: cannot open database `postgres://postgres@127.0.0.1:1/x`: Connection refused"
    ));
    assert!(is_start_failure(
        "Error: database error: Connection Error: Connection reset by peer (os error 104)"
    ));
    // Once running, any exit is a failure of the run.
    assert!(!is_start_failure(
        "worker w1 running (namespaces soak); SIGTERM or Ctrl-C drains and stops\nerror: database error"
    ));
    assert!(!is_start_failure(
        "thread 'main' panicked at src/engine.rs:1:1"
    ));
    assert!(!is_start_failure(""));
}

#[test]
fn the_kill_choice_stays_in_range_and_follows_the_seed() {
    let mut a = Rng(7);
    let mut b = Rng(7);
    for n in 1..50 {
        let pick = a.below(n);
        assert!(pick < n);
        assert_eq!(pick, b.below(n));
    }
}
