//! The OpenAPI document says exactly what is served: schemathesis (`st run ... --checks all`, every
//! check it has: server errors, status codes and content types each operation documents, response
//! schemas, schema-valid requests accepted and schema-invalid ones refused, 405 with `Allow`,
//! authentication, stateful links) against a real pgmon-api, as an admin and as a viewer, a few
//! thousand cases each. The rules the document cannot state are in the repository's
//! `schemathesis.toml`.
//!
//! The fuzzer registers servers with hosts it invents and pgmon connects to them, so the run happens
//! in a network namespace of its own (`tests/schemathesis-isolated.sh` under `unshare -n`): nothing
//! leaves the machine. `scripts/test.sh` installs schemathesis into `target/st-venv`;
//! `PGMON_TEST_SCHEMATHESIS` names another `st`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Cases per operation and phase.
const EXAMPLES: &str = "60";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn schemathesis_finds_nothing_as_admin_or_viewer() {
    let st = std::env::var_os("PGMON_TEST_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/st-venv/bin/st"));
    assert!(
        st.exists(),
        "{} not found: ./scripts/test.sh installs schemathesis (or set PGMON_TEST_SCHEMATHESIS)",
        st.display()
    );
    let work = tempfile::Builder::new()
        .prefix("pgmon-st-")
        .tempdir()
        .expect("tempdir");
    let out = Command::new("unshare")
        .arg("-n")
        .arg("bash")
        .arg(workspace().join("tests/schemathesis-isolated.sh"))
        .arg(pgmon_tests::bin_dir())
        .arg(pgmon_tests::cluster::pg_bin_dir())
        .arg(&st)
        .arg(EXAMPLES)
        .arg(work.path())
        .output()
        .expect("run unshare");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for part in report.split("=== schemathesis as ").skip(1) {
        let role = part.split_whitespace().next().unwrap_or("?");
        let summary = part.rsplit("SUMMARY").next().unwrap_or(part);
        println!("schemathesis as {role}:{summary}");
    }
    assert!(out.status.success(), "schemathesis found failures:\n{report}");
    assert_eq!(
        report.matches("Test cases:").count(),
        2,
        "both runs generated cases: {report}"
    );
    assert!(!report.contains("Schema Error"), "{report}");
}
