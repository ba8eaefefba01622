//! Broken policy files: each must be rejected with the expected problems, by line. The expectations live next
//! to each fixture as `<name>.expected`, one `line: message` per problem; `UPDATE_EXPECT=1` rewrites them
//! (review the diff before committing).
// Helpers outside `#[test]` functions unwrap too: a panic is a test failure here.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};

fn check(path: &Path) {
    let text = fs::read_to_string(path).unwrap();
    let errors = match concordat_policy::load(path, &text) {
        Ok(_) => panic!("{} loaded but should be rejected", path.display()),
        Err(errors) => errors,
    };
    let actual: String = errors.iter().map(|error| format!("{}: {}\n", error.line, error.problem)).collect();
    let expected_path = path.with_extension("expected");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        fs::write(&expected_path, &actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(&expected_path)
        .unwrap_or_else(|_| panic!("missing {}; run with UPDATE_EXPECT=1", expected_path.display()));
    assert_eq!(actual, expected, "{}", path.display());
    // The full message names the file and the line, as `concordat policy check` prints it.
    for error in &errors {
        assert!(error.to_string().starts_with(&format!("{}:{}:", path.display(), error.line)), "{error}");
        assert!(!error.to_string().ends_with('.'), "{error}");
    }
}

#[test]
fn every_broken_policy_is_rejected_with_its_expected_problems() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken");
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "only {} broken fixtures", paths.len());
    for path in paths {
        check(&path);
    }
}

#[test]
fn a_report_lists_every_problem_and_counts_them() {
    let path = Path::new("tests/fixtures/broken/several-problems.yaml");
    let errors = concordat_policy::load(
        path,
        &fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap(),
    )
    .unwrap_err();
    let report = concordat_policy::problems_report(&errors);
    assert_eq!(report.lines().count(), errors.len() + 1);
    assert!(report.ends_with(&format!("{} problems found\n", errors.len())));
}
