//! The Raft-replicated store: single-replica semantics, watches, and three replicas over
//! loopback TCP with real data dirs (failover, catch-up, partition, restart).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, Cluster};
use skiff::store::{Consistency, EventKind, Op, StoreClient, StoreError};

const LOCAL: Consistency = Consistency::Local;
const LINEAR: Consistency = Consistency::Linearizable;

/// The cluster tests measure failover time; running them one at a time keeps the two cores
/// of a CI machine from deciding the result.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

/// (value, create revision, mod revision, version) of an existing key.
async fn revisions_of(s: &StoreClient, key: &str) -> (Vec<u8>, u64, u64, u64) {
    let kv = s.get(key, LINEAR).await.expect("get").expect("key exists");
    (kv.value, kv.create_revision, kv.mod_revision, kv.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_replica_create_update_delete_get_list() {
    let c = Cluster::start(1, |_| {});
    c.leader().await;
    let s = c.client(0);

    let r1 = s
        .create("/registry/pods/default/a", v("a1"))
        .await
        .expect("create a");
    let r2 = s
        .create("/registry/pods/default/b", v("b1"))
        .await
        .expect("create b");
    assert!(r2 > r1, "revision increases per write");
    assert_eq!(
        s.create("/registry/pods/default/a", v("again")).await,
        Err(StoreError::AlreadyExists {
            key: "/registry/pods/default/a".into()
        })
    );

    let a = revisions_of(&s, "/registry/pods/default/a").await;
    assert_eq!(a, (v("a1"), r1, r1, 1));

    let r3 = s
        .update("/registry/pods/default/a", v("a2"), Some(r1))
        .await
        .expect("update at current revision");
    let stale = s
        .update("/registry/pods/default/a", v("a3"), Some(r1))
        .await;
    assert!(
        matches!(stale, Err(StoreError::Conflict { expected, actual, .. }) if expected == r1 && actual == r3)
    );
    let a = revisions_of(&s, "/registry/pods/default/a").await;
    assert_eq!(a, (v("a2"), r1, r3, 2));
    assert!(matches!(
        s.update("/registry/pods/default/zz", v("x"), None).await,
        Err(StoreError::NotFound { .. })
    ));

    // Listing is by prefix, in key order; a sibling prefix is not included.
    s.create("/registry/pods/other/c", v("c1"))
        .await
        .expect("create c");
    s.create("/registry/podsx/default/d", v("d1"))
        .await
        .expect("create d");
    let all = s
        .list("/registry/pods/", None, 0, LINEAR)
        .await
        .expect("list");
    let keys: Vec<&str> = all.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "/registry/pods/default/a",
            "/registry/pods/default/b",
            "/registry/pods/other/c"
        ]
    );
    assert_eq!(all.continue_after, None);
    let page1 = s
        .list("/registry/pods/", None, 2, LINEAR)
        .await
        .expect("page 1");
    assert_eq!(page1.kvs.len(), 2);
    let page2 = s
        .list("/registry/pods/", page1.continue_after.clone(), 2, LINEAR)
        .await
        .expect("page 2");
    assert_eq!(
        page2
            .kvs
            .iter()
            .map(|kv| kv.key.as_str())
            .collect::<Vec<_>>(),
        ["/registry/pods/other/c"]
    );
    assert_eq!(page2.continue_after, None);

    let stale_delete = s.delete("/registry/pods/default/b", Some(r1)).await;
    assert!(matches!(stale_delete, Err(StoreError::Conflict { .. })));
    let gone = s
        .delete("/registry/pods/default/b", Some(r2))
        .await
        .expect("delete at current revision");
    assert_eq!(gone.value, v("b1"));
    assert!(gone.mod_revision > r3, "a delete gets its own revision");
    assert_eq!(
        s.get("/registry/pods/default/b", LINEAR)
            .await
            .expect("get"),
        None
    );
    assert!(matches!(
        s.delete("/registry/pods/default/b", None).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        s.revision(LINEAR).await.expect("revision"),
        gone.mod_revision
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_replica_txn_is_all_or_nothing() {
    let c = Cluster::start(1, |_| {});
    c.leader().await;
    let s = c.client(0);
    let base = s.create("/k/existing", v("0")).await.expect("create");

    let failing = vec![
        Op::Create {
            key: "/k/new1".into(),
            value: v("1"),
        },
        Op::Update {
            key: "/k/existing".into(),
            value: v("1"),
            expected_mod_revision: Some(base),
        },
        Op::Create {
            key: "/k/existing".into(),
            value: v("dup"),
        },
    ];
    assert!(matches!(
        s.txn(failing).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(
        s.get("/k/new1", LINEAR).await.expect("get"),
        None,
        "no op of a failed txn applies"
    );
    assert_eq!(
        s.get("/k/existing", LINEAR)
            .await
            .expect("get")
            .map(|kv| kv.value),
        Some(v("0"))
    );
    assert_eq!(
        s.revision(LINEAR).await.expect("revision"),
        base,
        "a failed txn makes no revision"
    );

    let ok = vec![
        Op::Create {
            key: "/k/new1".into(),
            value: v("1"),
        },
        Op::Update {
            key: "/k/existing".into(),
            value: v("2"),
            expected_mod_revision: Some(base),
        },
        Op::Delete {
            key: "/k/new1".into(),
            expected_mod_revision: None,
        },
        Op::Create {
            key: "/k/new2".into(),
            value: v("3"),
        },
    ];
    let r = s.txn(ok).await.expect("txn applies");
    assert_eq!(r.revision, base + 1, "one revision for the whole txn");
    assert_eq!(s.get("/k/new1", LINEAR).await.expect("get"), None);
    let e = s
        .get("/k/existing", LINEAR)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!((e.value, e.mod_revision), (v("2"), base + 1));
    assert_eq!(
        s.get("/k/new2", LINEAR)
            .await
            .expect("get")
            .map(|kv| kv.mod_revision),
        Some(base + 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_past_revision_delivers_every_later_event_in_order() {
    let c = Cluster::start(1, |_| {});
    c.leader().await;
    let s = c.client(0);
    let start = s.create("/w/a", v("1")).await.expect("create");
    s.update("/w/a", v("2"), None).await.expect("update");
    s.create("/other/x", v("x"))
        .await
        .expect("create outside prefix");
    s.create("/w/b", v("1")).await.expect("create");
    s.delete("/w/a", None).await.expect("delete");

    let mut w = s
        .watch("/w/", Some(start))
        .await
        .expect("watch from the first write");
    // Live events after the watch started arrive after the replayed ones.
    s.create("/w/c", v("live")).await.expect("create");
    let mut got = Vec::new();
    for _ in 0..4 {
        let e = tokio::time::timeout(Duration::from_secs(5), w.next())
            .await
            .expect("event in time")
            .expect("stream open");
        got.push((e.kind, e.kv.key.clone(), e.kv.mod_revision));
    }
    let revs: Vec<u64> = got.iter().map(|g| g.2).collect();
    assert!(
        revs.windows(2).all(|p| p[0] < p[1]),
        "revision order: {revs:?}"
    );
    let kinds: Vec<(EventKind, &str)> = got.iter().map(|g| (g.0.clone(), g.1.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (EventKind::Put, "/w/a"),
            (EventKind::Put, "/w/b"),
            (EventKind::Delete, "/w/a"),
            (EventKind::Put, "/w/c"),
        ]
    );
    assert_eq!(revs[0], start + 1, "starts right after the given revision");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_compacted_revision_fails_with_expired() {
    let c = Cluster::start(1, |o| o.watch_history = 8);
    c.leader().await;
    let s = c.client(0);
    let first = s.create("/w/0", v("0")).await.expect("create");
    for i in 1..30 {
        s.create(&format!("/w/{i}"), v("x")).await.expect("create");
    }
    let err = s.watch("/w/", Some(first)).await.err();
    assert!(
        matches!(err, Some(StoreError::Expired { requested, .. }) if requested == first),
        "{err:?}"
    );
    // The recent past is still served.
    let now = s.revision(LINEAR).await.expect("revision");
    let mut w = s.watch("/w/", Some(now - 3)).await.expect("recent watch");
    let e = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .expect("event")
        .expect("open");
    assert_eq!(e.kv.mod_revision, now - 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_on_a_follower_is_visible_on_all_three() {
    let _serial = SERIAL.lock().await;
    let c = Cluster::start(3, |_| {});
    let leader = c.leader().await;
    let follower = (leader + 1) % 3;
    let rev = c
        .client(follower)
        .create("/f/key", v("from follower"))
        .await
        .expect("write via follower");
    for i in 0..3 {
        // Linearizable on every replica, and locally applied too.
        let kv = c
            .client(i)
            .get("/f/key", LINEAR)
            .await
            .expect("get")
            .expect("present");
        assert_eq!(
            (kv.value.as_slice(), kv.mod_revision),
            (&b"from follower"[..], rev),
            "replica {i}"
        );
        let client = c.client(i);
        assert!(
            eventually(Duration::from_secs(5), || {
                let client = client.clone();
                async move { client.get("/f/key", LOCAL).await.ok().flatten().is_some() }
            })
            .await,
            "replica {i} applied the write"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_stop_under_16_writers_loses_no_acknowledged_write() {
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start(3, |_| {});
    let leader = c.leader().await;
    let clients: Vec<_> = (0..3).map(|i| c.client(i)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    type Acked = Arc<Mutex<Vec<(String, Vec<u8>)>>>;
    let acked: Acked = Arc::default();
    let mut writers = Vec::new();
    for w in 0..16 {
        let (clients, stop, acked) = (clients.clone(), stop.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            let mut target = w % 3;
            let mut n = 0u64;
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 100_000 {
                n += 1;
                let key = format!("/load/{w}/{n}");
                let value = format!("writer {w} write {n}").into_bytes();
                match clients[target].create(&key, value.clone()).await {
                    Ok(_) => acked.lock().expect("lock").push((key, value)),
                    Err(e) => {
                        assert!(e.is_retryable(), "unexpected error {e}");
                        errors += 1;
                        target = (target + 1) % 3;
                    }
                }
            }
            errors
        }));
    }
    let count = || acked.lock().expect("lock").len();
    assert!(
        eventually(Duration::from_secs(10), || async { count() >= 200 }).await,
        "writes flow"
    );

    let stopped_at = Instant::now();
    let before = count();
    tokio::task::block_in_place(|| c.stop_replica(leader));
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = c.leader_among(&others, Duration::from_secs(3)).await;
    let failover = stopped_at.elapsed();
    assert!(new_leader.is_some(), "no new leader within 3 s");
    assert!(
        failover < Duration::from_secs(3),
        "failover took {failover:?}"
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            count() >= before + 200
        })
        .await,
        "writing continues after the failover"
    );
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer task");
    }

    assert!(
        c.converged(Duration::from_secs(10)).await,
        "survivors converge"
    );
    let acked = acked.lock().expect("lock").clone();
    for i in others {
        let listed = c
            .client(i)
            .list("/load/", None, 0, LOCAL)
            .await
            .expect("list");
        let stored: BTreeMap<String, Vec<u8>> = listed
            .kvs
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect();
        for (key, value) in &acked {
            assert_eq!(
                stored.get(key),
                Some(value),
                "acknowledged write {key} missing on replica {i}"
            );
        }
    }
    eprintln!(
        "{} acknowledged writes checked; failover in {failover:?}",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_follower_catches_up_by_log_replay() {
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start(3, |_| {});
    let leader = c.leader().await;
    let f = (leader + 1) % 3;
    c.client(leader)
        .create("/r/before", v("0"))
        .await
        .expect("write");
    tokio::task::block_in_place(|| c.stop_replica(f));
    for i in 0..100 {
        c.client(leader)
            .create(&format!("/r/{i:03}"), v("x"))
            .await
            .expect("write while follower down");
    }
    tokio::task::block_in_place(|| c.start_replica(f));
    assert!(
        c.converged(Duration::from_secs(10)).await,
        "follower catches up"
    );
    let st = c.status(f).await;
    assert_eq!(
        st.snapshots_installed, 0,
        "caught up from the log, not a snapshot"
    );
    let keys = c
        .client(f)
        .list("/r/", None, 0, LOCAL)
        .await
        .expect("list")
        .kvs
        .len();
    assert_eq!(keys, 101);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_behind_the_compacted_log_catches_up_by_snapshot() {
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start(3, |o| {
        o.snapshot_interval = 20;
        o.snapshot_catchup_entries = 5;
    });
    let leader = c.leader().await;
    let f = (leader + 1) % 3;
    c.client(leader)
        .create("/s/before", v("0"))
        .await
        .expect("write");
    assert!(c.converged(Duration::from_secs(5)).await);
    let f_last = c.status(f).await.last_index;
    tokio::task::block_in_place(|| c.stop_replica(f));
    for i in 0..120 {
        c.client(leader)
            .create(&format!("/s/{i:03}"), v("x"))
            .await
            .expect("write while follower down");
    }
    // Snapshots are written in the background; the log is compacted once one is durable.
    let compacted = eventually(Duration::from_secs(10), || async {
        c.status(leader).await.first_index > f_last + 1
    })
    .await;
    assert!(
        compacted,
        "leader compacted past the follower's last index {f_last}"
    );
    let ls = c.status(leader).await;
    tokio::task::block_in_place(|| c.start_replica(f));
    assert!(
        c.converged(Duration::from_secs(10)).await,
        "follower catches up"
    );
    let st = c.status(f).await;
    assert!(st.snapshots_installed >= 1, "caught up by snapshot: {st:?}");
    assert_eq!(st.revision, ls.revision);
    let listed = c.client(f).list("/s/", None, 0, LOCAL).await.expect("list");
    assert_eq!(listed.kvs.len(), 121);
    // It keeps following the log afterwards.
    let rev = c
        .client(leader)
        .create("/s/after", v("y"))
        .await
        .expect("write");
    let client = c.client(f);
    assert!(
        eventually(Duration::from_secs(5), || {
            let client = client.clone();
            async move {
                client
                    .get("/s/after", LOCAL)
                    .await
                    .ok()
                    .flatten()
                    .map(|kv| kv.mod_revision)
                    == Some(rev)
            }
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_replica_commits_nothing_then_converges_after_healing() {
    let _serial = SERIAL.lock().await;
    let timeout = Duration::from_secs(2);
    let c = Cluster::start(3, |o| o.request_timeout = timeout);
    let cut = c.leader().await;
    c.client(cut)
        .create("/p/before", v("0"))
        .await
        .expect("write");
    assert!(c.converged(Duration::from_secs(5)).await);
    let commit_before = c.status(cut).await.commit_index;

    c.replica(cut).set_isolated(true);
    let started = Instant::now();
    let err = c
        .client(cut)
        .create("/p/lost", v("x"))
        .await
        .expect_err("an isolated replica cannot commit");
    assert!(err.is_retryable(), "retryable error expected, got {err}");
    assert!(
        started.elapsed() < timeout + Duration::from_millis(500),
        "failed within the timeout"
    );
    let read = c.client(cut).get("/p/before", LINEAR).await;
    assert!(
        matches!(read, Err(ref e) if e.is_retryable()),
        "no linearizable read either: {read:?}"
    );

    let others: Vec<usize> = (0..3).filter(|&i| i != cut).collect();
    let new_leader = c
        .leader_among(&others, Duration::from_secs(5))
        .await
        .expect("majority elects a leader");
    for i in 0..20 {
        c.client(new_leader)
            .create(&format!("/p/{i}"), v("y"))
            .await
            .expect("majority keeps writing");
    }
    assert_eq!(
        c.status(cut).await.commit_index,
        commit_before,
        "the isolated replica committed nothing"
    );

    c.replica(cut).set_isolated(false);
    assert!(
        c.converged(Duration::from_secs(10)).await,
        "converges after healing"
    );
    let reference = c
        .client(new_leader)
        .list("/p/", None, 0, LINEAR)
        .await
        .expect("list");
    assert_eq!(reference.kvs.len(), 21);
    assert!(
        reference.kvs.iter().all(|kv| kv.key != "/p/lost"),
        "the failed write never applied"
    );
    let healed = c
        .client(cut)
        .list("/p/", None, 0, LOCAL)
        .await
        .expect("list");
    assert_eq!(healed.kvs, reference.kvs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_of_all_three_keeps_every_key_and_the_revision() {
    let _serial = SERIAL.lock().await;
    let mut c = Cluster::start(3, |o| o.snapshot_interval = 64);
    let leader = c.leader().await;
    for i in 0..150 {
        c.client(leader)
            .create(&format!("/all/{i:03}"), format!("v{i}").into_bytes())
            .await
            .expect("write");
    }
    c.client(leader)
        .delete("/all/000", None)
        .await
        .expect("delete");
    let rev = c.client(leader).revision(LINEAR).await.expect("revision");
    let before = c
        .client(leader)
        .list("/all/", None, 0, LINEAR)
        .await
        .expect("list")
        .kvs;
    assert!(c.converged(Duration::from_secs(5)).await);
    tokio::task::block_in_place(|| {
        for i in 0..3 {
            c.stop_replica(i);
        }
        for i in 0..3 {
            c.start_replica(i);
        }
    });
    c.leader().await;
    for i in 0..3 {
        let after = c
            .client(i)
            .list("/all/", None, 0, LINEAR)
            .await
            .expect("list after restart");
        assert_eq!(after.revision, rev, "revision kept on replica {i}");
        assert_eq!(after.kvs, before, "keys kept on replica {i}");
    }
    let next = c
        .client(0)
        .create("/all/next", v("n"))
        .await
        .expect("write after restart");
    assert_eq!(next, rev + 1);
}
