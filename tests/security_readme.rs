//! The README's Security example, exactly as printed: the certificate script, the TOML
//! file, `agentlog serve --config`, then the user and client commands, on the example's
//! fixed ports (9092 and 9093 must be free).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// The body of the fenced block that follows `marker` in the README's Security section.
fn block_after(readme: &str, marker: &str) -> String {
    let section = &readme[readme.find("## Security").expect("Security section")..];
    let start = section.find(marker).expect("marker") + marker.len();
    let rest = &section[start..];
    let body = &rest[rest.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_string()
}

#[test]
fn the_readme_security_example_runs_verbatim() {
    let readme = include_str!("../README.md");
    let toml = block_after(readme, "```toml\n# agentlog-secure.toml");
    let toml = format!("# agentlog-secure.toml\n{toml}");
    let sh_blocks: Vec<&str> = readme[readme.find("## Security").unwrap()..]
        .split("```sh\n")
        .skip(1)
        .take(2)
        .map(|b| &b[..b.find("```").unwrap()])
        .collect();
    let (start, clients) = (sh_blocks[0], sh_blocks[1]);

    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        concat!(env!("CARGO_MANIFEST_DIR"), "/scripts"),
        dir.path().join("scripts"),
    )
    .unwrap();
    std::fs::write(dir.path().join("agentlog-secure.toml"), toml).unwrap();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_agentlog"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    // The first block: the script, then the broker (run here so the test can stop it).
    let mut lines = start.lines();
    let script = lines.next().unwrap();
    let status = Command::new("bash")
        .args(["-c", script])
        .current_dir(dir.path())
        .env("PATH", &path)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
    let serve = lines.next().unwrap();
    let mut broker = Command::new("bash")
        .args(["-c", &format!("exec {serve}")])
        .current_dir(dir.path())
        .env("PATH", &path)
        .env_remove("AGENTLOG_CONFIG")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(broker.stdout.take().unwrap()).lines();
    let mut listening = Vec::new();
    while listening.len() < 2 {
        let line = stdout
            .next()
            .expect("broker exits early (ports 9092/9093 busy?)")
            .unwrap();
        if line.starts_with("agentlog listening on ") {
            listening.push(line);
        }
    }
    assert_eq!(
        listening[1],
        "agentlog listening on SASL_SSL://127.0.0.1:9093"
    );

    let output = Command::new("bash")
        .args(["-euc", clients])
        .current_dir(dir.path())
        .env("PATH", &path)
        .output()
        .unwrap();
    // The record arrived over SASL_SSL: read it back over the PLAINTEXT listener.
    let consumed = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args(["consume", "greetings", "-b", "127.0.0.1:9092", "--exit"])
        .output()
        .unwrap();
    let _ = Command::new("kill").arg(broker.id().to_string()).status();
    let _ = broker.wait();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&consumed.stdout).contains("hello"),
        "{consumed:?}"
    );
}
