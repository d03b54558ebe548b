//! `agentlog bench` end to end: a real broker process, a small produce run and a
//! consume run reading it back, checking the `--json` report contract that scripts and
//! the benchmark procedure (benches/README.md) rely on.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Kills the broker even when an assertion fails.
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_broker(data_dir: &std::path::Path) -> (Broker, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("AGENTLOG_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start agentlog serve");
    let stdout = child.stdout.take().expect("broker stdout");
    let broker = Broker(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read listening line");
    let address = line
        .trim()
        .strip_prefix("agentlog listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (broker, address)
}

/// Runs `agentlog bench ARGS --json` and parses the last stdout line.
fn bench(args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .env("AGENTLOG_LOG", "warn")
        .output()
        .expect("run agentlog bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("a JSON line on stdout");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("bad JSON {last:?}: {e}"))
}

#[test]
fn produce_then_consume_reports_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_broker, address) = start_broker(dir.path());
    let common = [
        "--bootstrap",
        address.as_str(),
        "--topic",
        "bench-cli",
        "--records",
        "20000",
    ];

    let mut args = vec!["produce"];
    args.extend(common);
    let produced = bench(&args);
    assert_eq!(produced["records"], 20000, "{produced}");
    assert_eq!(produced["errors"], 0, "{produced}");
    assert!(
        produced["records_per_sec"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{produced}"
    );
    assert!(
        produced["mb_per_sec"].as_f64().is_some_and(|r| r > 0.0),
        "{produced}"
    );
    for p in ["p50", "p99", "p999", "max"] {
        assert!(
            produced["latency_ms"][p].as_f64().is_some(),
            "latency {p}: {produced}"
        );
    }

    let mut args = vec!["consume"];
    args.extend(common);
    let consumed = bench(&args);
    assert_eq!(consumed["records"], 20000, "{consumed}");
    assert!(
        consumed["records_per_sec"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{consumed}"
    );
    assert!(consumed["seconds"].as_f64().is_some(), "{consumed}");
}

/// `bench agents` runs the pass-through agent on both backends against its own broker
/// and reports both, their ratio, and the latency phase, as the procedure in
/// benches/README.md reads them.
#[test]
fn agents_compares_both_backends_in_one_report() {
    let report = bench(&[
        "agents",
        "--records",
        "3000",
        "--rate",
        "500",
        "--duration",
        "1",
        "--flush-policy",
        "none",
    ]);
    assert_eq!(report["mode"], "agents", "{report}");
    for backend in ["embedded", "kafka"] {
        let measured = &report["backends"][backend];
        assert_eq!(measured["records"], 3000, "{report}");
        assert!(measured["records_per_sec"].as_f64().unwrap() > 0.0);
        assert!(measured["cpu_seconds_per_million_records"].is_number());
        assert!(
            measured["latency_records"].as_u64().unwrap() > 0,
            "{report}"
        );
        assert!(measured["append_to_handler_ms"]["p99"].as_f64().unwrap() > 0.0);
        assert!(
            measured["handler_to_durable_ms"]["p50"].is_number(),
            "{report}"
        );
    }
    assert!(
        report["embedded_over_kafka"]["records_per_sec"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}
