//! A real OpenAI-compatible model server for tests: llama.cpp's server
//! (`llama-cpp-python[server]`) serving SmolLM2-135M-Instruct, both installed by
//! `scripts/models.sh` and linked under `.models/` at the repo root.
//!
//! One server per test binary, started on first use on a free 127.0.0.1 port and
//! shared by its tests (the model loads once). It dies with the test process: the
//! child is spawned from a thread that lives as long as the process, with
//! `PR_SET_PDEATHSIG`, so no server outlives a crashed or finished run.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The model name the server answers to (`--model_alias`).
pub const MODEL: &str = "smollm2";

/// `.models/` at the repo root; panics with the fix when it is missing, so a test that
/// needs real models fails loudly instead of skipping.
pub fn models_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".models");
    assert!(
        dir.join("python").exists() && dir.join("smollm2.gguf").exists(),
        "{} is missing the model files: run `bash scripts/models.sh` (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// A running model server.
#[derive(Debug)]
pub struct ModelServer {
    /// OpenAI base URL, `/v1` included (what async-openai's `api_base` takes).
    pub base_url: String,
    /// The server's port.
    pub port: u16,
}

/// The shared server of this test binary, started (and waited for) on first use.
pub fn shared() -> &'static ModelServer {
    static SERVER: OnceLock<ModelServer> = OnceLock::new();
    SERVER.get_or_init(start)
}

/// A free port on 127.0.0.1 (bound then released: the server binds it right after).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

fn start() -> ModelServer {
    let dir = models_dir();
    let port = free_port();
    let (started, ready) = std::sync::mpsc::channel();
    let model = dir.join("smollm2.gguf");
    let python = dir.join("python");
    // The spawning thread must outlive every test: PR_SET_PDEATHSIG fires when the
    // thread that forked the child exits, not only the process.
    std::thread::Builder::new()
        .name("model-server".to_string())
        .spawn(move || {
            let mut command = Command::new(python);
            command
                .args(["-m", "llama_cpp.server", "--model"])
                .arg(&model)
                .args(["--model_alias", MODEL, "--host", "127.0.0.1", "--port"])
                .arg(port.to_string())
                .args(["--n_ctx", "4096", "--n_threads", "2", "--verbose", "false"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            // SAFETY: prctl is async-signal-safe; nothing else runs in the child before exec.
            unsafe {
                use std::os::unix::process::CommandExt;
                command.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = command.spawn();
            let ok = child.is_ok();
            let _ = started.send(child.map(|_| ()).map_err(|e| e.to_string()));
            if ok {
                loop {
                    std::thread::park();
                }
            }
        })
        .expect("spawn the model-server thread");
    ready
        .recv()
        .expect("model-server thread")
        .expect("starting llama_cpp.server");
    let base_url = format!("http://127.0.0.1:{port}/v1");
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if models_answer(port) {
            return ModelServer { base_url, port };
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("llama_cpp.server did not answer on port {port} within 120 s");
}

/// Whether `GET /v1/models` answers 200 (plain HTTP/1.1 over a socket: no client
/// library needed for a readiness probe).
fn models_answer(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}
