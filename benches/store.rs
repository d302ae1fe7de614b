//! Store write benchmark: three replicas on loopback with fsync on, 256-byte values, 1 and 64
//! concurrent writers; prints writes/s and p50/p99 latency as a table.
//!
//! `cargo bench --bench store -- [--seconds N] [--writers 1,64] [--snapshot-interval N]
//! [--etcd URL,URL,URL]`
//! With `--etcd` the same workload also runs against that etcd cluster (see
//! `benches/compare-etcd.sh`), and the last line compares the two at the highest writer count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff::store::{LocalCluster, StoreClient};

const VALUE_SIZE: usize = 256;
/// Upper bound on writes per run, whatever the duration.
const MAX_WRITES: usize = 500_000;

struct Args {
    seconds: u64,
    snapshot_interval: Option<u64>,
    writers: Vec<usize>,
    etcd: Option<Vec<String>>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 10,
        snapshot_interval: None,
        writers: vec![1, 64],
        etcd: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--seconds" => {
                args.seconds = value("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?
            }
            "--writers" => {
                args.writers = value("--writers")?
                    .split(',')
                    .map(|w| w.parse().map_err(|e| format!("--writers: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--snapshot-interval" => {
                let v = value("--snapshot-interval")?;
                args.snapshot_interval =
                    Some(v.parse().map_err(|e| format!("--snapshot-interval: {e}"))?)
            }
            "--etcd" => args.etcd = Some(value("--etcd")?.split(',').map(String::from).collect()),
            "--bench" => {} // passed by `cargo bench`
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[derive(Clone)]
enum Target {
    Skiff(StoreClient),
    Etcd(etcd_client::KvClient),
}

impl Target {
    async fn write(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        match self {
            Target::Skiff(c) => c
                .create(&key, value)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Target::Etcd(c) => c
                .put(key, value, None)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }
}

struct Row {
    store: &'static str,
    writers: usize,
    writes: usize,
    errors: usize,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Row {
    fn rate(&self) -> f64 {
        self.writes as f64 / self.seconds
    }
}

/// `writers` tasks write unique keys for `seconds` (or MAX_WRITES in all).
async fn run(store: &'static str, target: Target, writers: usize, seconds: u64, tag: &str) -> Row {
    let value = Arc::new(vec![b'x'; VALUE_SIZE]);
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let per_writer = MAX_WRITES / writers;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (mut target, value, tag) = (target.clone(), value.clone(), tag.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let mut errors = 0;
            for n in 0..per_writer {
                if Instant::now() >= end {
                    break;
                }
                let t0 = Instant::now();
                match target
                    .write(format!("/bench/{tag}/{w}/{n}"), value.to_vec())
                    .await
                {
                    Ok(()) => lat.push(t0.elapsed().as_micros() as u64),
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            lat.extend(l);
            errors += e;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |us| *us as f64 / 1000.0)
    };
    Row {
        store,
        writers,
        writes: lat.len(),
        errors,
        seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

/// A client connected to the etcd leader only, as the Skiff writers talk to the Raft leader.
async fn etcd_leader(endpoints: &[String]) -> Result<etcd_client::KvClient, String> {
    let mut c = etcd_client::Client::connect(endpoints, None)
        .await
        .map_err(|e| e.to_string())?;
    let leader = c.status().await.map_err(|e| e.to_string())?.leader();
    let members = c.member_list().await.map_err(|e| e.to_string())?;
    let url = members
        .members()
        .iter()
        .find(|m| m.id() == leader)
        .and_then(|m| m.client_urls().first().cloned())
        .ok_or("etcd leader has no client URL")?;
    let c = etcd_client::Client::connect([url], None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(c.kv_client())
}

fn print_row(r: &Row) {
    println!(
        "{:<6} {:>7} {:>8} {:>6} {:>8.1} {:>10.0} {:>8.2} {:>8.2}",
        r.store,
        r.writers,
        r.writes,
        r.errors,
        r.seconds,
        r.rate(),
        r.p50_ms,
        r.p99_ms
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("store bench: {e}");
            std::process::exit(2);
        }
    };
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("store bench: tempdir: {e}");
            std::process::exit(1);
        }
    };
    let interval = args.snapshot_interval;
    let cluster = match LocalCluster::start(3, dir.path(), |o| {
        if let Some(i) = interval {
            o.snapshot_interval = i;
        }
    }) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("store bench: start skiff: {e}");
            std::process::exit(1);
        }
    };
    let Some(leader) = cluster.leader(Duration::from_secs(10)).await else {
        eprintln!("store bench: no skiff leader");
        std::process::exit(1);
    };
    let skiff = Target::Skiff(cluster.client(leader));
    let etcd = match &args.etcd {
        Some(eps) => match etcd_leader(eps).await {
            Ok(c) => Some(Target::Etcd(c)),
            Err(e) => {
                eprintln!("store bench: etcd: {e}");
                std::process::exit(1);
            }
        },
        None => None,
    };

    println!(
        "3 replicas on loopback, fsync on, {VALUE_SIZE}-byte values, writes to the leader, {} s per run",
        args.seconds
    );
    println!(
        "{:<6} {:>7} {:>8} {:>6} {:>8} {:>10} {:>8} {:>8}",
        "store", "writers", "writes", "errors", "seconds", "writes/s", "p50 ms", "p99 ms"
    );
    let mut last = None;
    for &w in &args.writers {
        let s = run("skiff", skiff.clone(), w, args.seconds, &format!("s{w}")).await;
        print_row(&s);
        let e = match &etcd {
            Some(t) => {
                let e = run("etcd", t.clone(), w, args.seconds, &format!("e{w}")).await;
                print_row(&e);
                Some(e)
            }
            None => None,
        };
        last = e.map(|e| (s, e));
    }
    if let Some((s, e)) = last {
        println!(
            "skiff/etcd writes/s ratio: {:.2}  p99 ratio: {:.2}",
            s.rate() / e.rate().max(f64::MIN_POSITIVE),
            s.p99_ms / e.p99_ms.max(f64::MIN_POSITIVE)
        );
    }
}
