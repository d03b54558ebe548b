//! The RAG vector index at 100k 384-d vectors (all-MiniLM-L6-v2's size): build time,
//! recall@10 against exact search, query latency p50/p99 (one thread), memory, and
//! snapshot save and load times. Two data sets: clustered vectors (1,000 Gaussian
//! clusters on the unit sphere, data and queries around the same centres, closer to
//! what sentence embeddings of a corpus and of questions about it look like) and
//! uniformly random ones (the hardest case for any graph index, where the ten true
//! neighbours are barely nearer than the rest).
//!
//! `cargo bench -p agentlog-agents --bench rag_index` (`RAG_BENCH_N` sets the size).

use std::time::Instant;

use agentlog_agents::rag::{snapshot, Chunk, Filter, VectorIndex};

const DIMS: usize = 384;
const QUERIES: usize = 500;
const K: usize = 10;

/// xorshift64*: reproducible data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        bits as f32 / (1u64 << 24) as f32
    }

    /// Approximately standard normal (sum of uniforms).
    fn gauss(&mut self) -> f32 {
        (0..4).map(|_| self.next()).sum::<f32>() - 2.0
    }
}

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn centres(rng: &mut Rng) -> Vec<Vec<f32>> {
    (0..1000)
        .map(|_| normalised((0..DIMS).map(|_| rng.gauss()).collect()))
        .collect()
}

/// `n` vectors: around the shared `centres` (topics, as in a corpus and the questions
/// asked of it), or uniform on the sphere.
fn data(n: usize, clustered: bool, centres: &[Vec<f32>], rng: &mut Rng) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| {
            if clustered {
                let centre = &centres[(i * 7919) % centres.len()];
                normalised(centre.iter().map(|c| c + 0.03 * rng.gauss()).collect())
            } else {
                normalised((0..DIMS).map(|_| rng.gauss()).collect())
            }
        })
        .collect()
}

fn exact(vectors: &[Vec<f32>], query: &[f32]) -> Vec<usize> {
    let mut scored: Vec<(f32, usize)> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| (v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>(), i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    scored.iter().take(K).map(|(_, i)| *i).collect()
}

fn percentile(sorted_us: &[f64], p: f64) -> f64 {
    sorted_us[((sorted_us.len() as f64 - 1.0) * p).round() as usize]
}

fn run(n: usize, clustered: bool) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let centres = centres(&mut rng);
    let vectors = data(n, clustered, &centres, &mut rng);
    let started = Instant::now();
    let mut index = VectorIndex::new(DIMS).expect("index");
    for (i, v) in vectors.iter().enumerate() {
        let chunk = Chunk {
            doc: format!("doc{i}"),
            no: 0,
            text: format!("chunk {i}"),
            metadata: Default::default(),
        };
        index.upsert(chunk, v).expect("upsert");
    }
    let build = started.elapsed();
    let queries = data(QUERIES, clustered, &centres, &mut Rng(42));
    let mut latencies = Vec::with_capacity(QUERIES);
    let mut found = 0;
    for query in &queries {
        let t = Instant::now();
        let hits = index.search(query, K, &Filter::new()).expect("search");
        latencies.push(t.elapsed().as_secs_f64() * 1e6);
        let truth = exact(&vectors, query);
        found += hits
            .iter()
            .filter(|h| {
                h.chunk
                    .doc
                    .strip_prefix("doc")
                    .and_then(|i| i.parse::<usize>().ok())
                    .is_some_and(|i| truth.contains(&i))
            })
            .count();
    }
    latencies.sort_by(f64::total_cmp);
    let dir = tempfile::tempdir().expect("tempdir");
    let t = Instant::now();
    snapshot::save(dir.path(), &index, &Default::default()).expect("save");
    let save = t.elapsed();
    let t = Instant::now();
    let loaded = snapshot::load(dir.path())
        .expect("load")
        .expect("a snapshot");
    let load = t.elapsed();
    assert_eq!(loaded.index.len(), n);
    println!(
        "{} {n} x {DIMS}: build {:.1} s ({:.0} vectors/s), recall@{K} {:.3}, query p50 {:.0} us p99 {:.0} us, native memory {:.0} MB, snapshot save {:.0} ms, load {:.0} ms",
        if clustered { "clustered" } else { "uniform" },
        build.as_secs_f64(),
        n as f64 / build.as_secs_f64(),
        found as f64 / (QUERIES * K) as f64,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        index.native_memory_bytes() as f64 / 1e6,
        save.as_secs_f64() * 1e3,
        load.as_secs_f64() * 1e3,
    );
}

fn main() {
    let n = std::env::var("RAG_BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    run(n, true);
    run(n, false);
}
