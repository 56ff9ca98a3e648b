//! Rollouts on a fleet: rollout actions ship to ClickHouse and come back for the fold, the
//! fleet's guardrail tallies are the replica's own computed over every replica's events,
//! and replicas sharing a store reach the same step and all apply a rollback.

use super::*;

use cohort_clickhouse::fleet::Fleet;
use cohort_clickhouse::query::Arms;
use cohort_events::{Event, EventRef, Exposure};
use cohort_rollout::tally::Watch;
use cohort_rollout::{Guardrails, RolloutEvent};

const SEC: i64 = 1_000_000_000;

/// Exposures of 400 units, from `base_s` on: each 1–5 requests a second apart, some
/// failed, some aborted, latencies by arm; besides them exposures that must not count
/// (another variant, an override, no unit, before the attempt).
fn exposures(base_s: i64) -> Vec<Exposure> {
    let mut out = Vec::new();
    let mut n = 0u64;
    for u in 0..400u64 {
        let variant = if u % 2 == 0 { "rf" } else { "lr" };
        for r in 0..(1 + u % 5) {
            n += 1;
            let ts = (base_s + (u % 90) as i64 + r as i64) * SEC + (n % 1000) as i64 * 1000;
            let failed = if variant == "lr" {
                n.is_multiple_of(7)
            } else {
                n.is_multiple_of(53)
            };
            out.push(Exposure {
                v: Some(1),
                ts: cohort_events::clock::from_nanos(ts),
                experiment: "iris-model".into(),
                unit: format!("user-{u}"),
                variant: variant.into(),
                request_id: Some(format!("req-{n}")),
                client_request_id: None,
                config_version: Some("v1".into()),
                route: Some("iris".into()),
                status: Some(if failed {
                    503
                } else if n.is_multiple_of(11) {
                    404
                } else {
                    200
                }),
                latency_ms: Some(if variant == "lr" {
                    20.0 + (n % 97) as f64
                } else {
                    10.0 + (n % 89) as f64 / 2.0
                }),
                aborted: variant == "lr" && n.is_multiple_of(31),
                forced: false,
                unit_missing: false,
                phase: Some("iris".into()),
            });
        }
    }
    let mut extra = out[0].clone();
    extra.variant = "xgb".into();
    extra.request_id = Some("req-xgb".into());
    let mut forced = out[1].clone();
    forced.forced = true;
    forced.request_id = Some("req-forced".into());
    let mut missing = out[2].clone();
    missing.unit_missing = true;
    missing.request_id = Some("req-missing".into());
    let mut early = out[3].clone();
    early.ts = cohort_events::clock::from_nanos((base_s - 100) * SEC);
    early.request_id = Some("req-early".into());
    out.extend([extra, forced, missing, early]);
    out
}

fn rollout_event(second: i64, step: usize, kind: cohort_rollout::Kind) -> RolloutEvent {
    RolloutEvent {
        kind_of_line: cohort_rollout::record::RolloutTag::Rollout,
        ts: cohort_events::clock::from_nanos(second * SEC),
        experiment: "iris-model".into(),
        rollout_id: "abc".into(),
        attempt: 0,
        step,
        kind,
        share: [0.1, 0.3][step],
        reason: format!("step {step}"),
        by: "cohort".into(),
        guardrails: Default::default(),
    }
}

/// Ships a spool of exposures and rollout actions into `db` at `url`, then: the actions
/// come back as written; the fleet's tallies equal the local tally's over the same
/// exposures (the p99 within the local histogram's 2%), also when a batch was shipped
/// twice (a retry after a lost answer).
async fn tallies_equal_local(url: &str, db: &str) {
    let c = Client::new(url, "default", None, Duration::from_secs(30)).unwrap();
    ship_tables(db).create(&c).await.unwrap();
    let base_s =
        cohort_events::clock::parse_nanos(&cohort_events::clock::now()).unwrap() / SEC - 200;
    let spool = tempfile::tempdir().unwrap();
    let xs = exposures(base_s);
    let text: String = xs
        .iter()
        .map(|x| serde_json::to_string(&Event::Exposure(x.clone())).unwrap() + "\n")
        .collect();
    std::fs::write(
        spool.path().join("events-20261207T000000Z-000001.jsonl"),
        &text,
    )
    .unwrap();
    let actions = [
        rollout_event(base_s - 10, 0, cohort_rollout::Kind::Start),
        rollout_event(base_s + 40, 1, cohort_rollout::Kind::Advance),
    ];
    let lines: String = actions
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    std::fs::write(spool.path().join("rollouts.jsonl"), &lines).unwrap();
    let mut s = shipper_as(spool.path(), db, url, "replica-0", 1000);
    drain(&mut s).await;
    // Shipped again from the start, as after a lost cursor: copies of every line.
    std::fs::remove_file(spool.path().join(cohort_clickhouse::ship::CURSOR_FILE)).unwrap();
    let mut again = shipper_as(spool.path(), db, url, "replica-0", 1000);
    drain(&mut again).await;
    let copies = query(
        &c,
        &format!("SELECT count() FROM `{db}`.`events` FORMAT TabSeparated"),
    )
    .await;
    assert_eq!(
        copies.trim(),
        (2 * xs.len()).to_string(),
        "every line twice"
    );

    let fleet = Fleet {
        client: c.clone(),
        tables: ship_tables(db),
        timeout: Duration::from_secs(30),
        settings: Vec::new(),
    };
    let mut back = fleet.rollout_events("iris-model").await.unwrap();
    back.dedup();
    assert_eq!(back, actions, "the actions come back as written");
    assert!(fleet.rollout_events("other").await.unwrap().is_empty());

    let (attempt_ns, step_ns) = ((base_s - 10) * SEC, (base_s + 40) * SEC);
    let now_ns = (base_s + 120) * SEC + 500_000_000;
    let local = Guardrails::new();
    local.watch(
        "iris-model",
        Watch {
            control: "rf".into(),
            treatment: "lr".into(),
            attempt_started_ns: attempt_ns,
            step_started_ns: step_ns,
            latency_window_s: 60.0,
        },
    );
    let mut sorted = xs.clone();
    sorted.sort_by_key(|x| cohort_events::clock::parse_nanos(&x.ts));
    local.add(sorted.iter().map(|x| EventRef::Exposure(x.view())));
    let want = local.snapshot("iris-model", now_ns).unwrap();
    let arms = Arms {
        experiment: "iris-model",
        control: "rf",
        treatment: "lr",
    };
    let got = fleet
        .guardrail_arms(&arms, attempt_ns, step_ns, now_ns, 60.0)
        .await
        .unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!(
            w.units > 100 && w.failures > 0 && w.step_units > 0 && w.window_requests > 50,
            "{w:?}"
        );
        assert_eq!(
            (
                g.units,
                g.requests,
                g.failures,
                g.step_units,
                g.window_requests
            ),
            (
                w.units,
                w.requests,
                w.failures,
                w.step_units,
                w.window_requests
            ),
        );
        assert_eq!(g.error_rates.n, w.error_rates.n);
        assert!(
            (g.error_rates.mean - w.error_rates.mean).abs() < 1e-12,
            "{g:?} {w:?}"
        );
        assert!(
            (g.error_rates.m2 - w.error_rates.m2).abs() < 1e-9,
            "{g:?} {w:?}"
        );
        let (gp, wp) = (g.p99_ms.unwrap(), w.p99_ms.unwrap());
        assert!(wp >= gp && wp <= gp * 1.0201, "p99: fleet {gp}, local {wp}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_actions_and_guardrail_tallies_come_from_clickhouse() {
    let db = database("rollout_tallies");
    tallies_equal_local(&server(), &db).await;
    query(&client(), &format!("DROP DATABASE `{db}`")).await;
}

/// The same on a current ClickHouse engine (chdb).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_tallies_are_the_same_on_a_current_clickhouse() {
    let data = tempfile::tempdir().unwrap();
    let shim = super::report::Chdb::start(data.path());
    tallies_equal_local(&shim.url, "cohort").await;
}

/// A replica `r` of a rollout fleet: its own spool and state file, shipping into `db`.
fn fleet_replica(
    dir: &std::path::Path,
    r: usize,
    db: &str,
    rf: std::net::SocketAddr,
    lr: std::net::SocketAddr,
) -> (std::path::PathBuf, u16, u16) {
    use common::process::free_port;
    let (port, admin) = (free_port(), free_port());
    let me = dir.join(format!("replica-{r}"));
    std::fs::create_dir_all(&me).unwrap();
    let yaml = format!(
        "listen: 127.0.0.1:{port}\nadmin: {{ listen: 127.0.0.1:{admin}, state_file: {:?} }}\nshutdown: {{ grace_ms: 20 }}\n\
         events: {{ dir: {:?}, clickhouse: {{ url: {:?}, database: {db}, flush_interval_ms: 50 }} }}\n\
         routes:\n  - {{ name: iris, match: {{ path_prefix: / }}, experiment: iris-model }}\n\
         experiments:\n  - name: iris-model\n    salt: fleet-rollout\n    control: rf\n    variants:\n      \
         - {{ name: rf, weight: 50, upstream: \"http://{rf}\" }}\n      \
         - {{ name: lr, weight: 50, upstream: \"http://{lr}\" }}\n    rollout:\n      treatment: lr\n      \
         steps: [0.2, 0.5]\n      step_min_s: 1\n      step_min_units: 20\n      evaluate_every_s: 0.3\n      \
         guardrails: {{ max_latency_p99_ratio: null, primary_metric: false }}\n",
        me.join("state.json").display().to_string(),
        me.join("events").display().to_string(),
        server(),
    );
    let config = me.join("routes.yaml");
    std::fs::write(&config, yaml).unwrap();
    (config, port, admin)
}

/// Users 0..100 on the replica at `port` are all served by the control, rf.
async fn all_on_control(c: &crate::common::net::HttpClient, port: u16) {
    for u in 0..100 {
        let ans = crate::common::net::send(
            c,
            format!("127.0.0.1:{port}").parse().unwrap(),
            "/invocations",
            &[("x-user-id", &format!("user-{u}"))],
        )
        .await;
        assert_eq!(ans.headers["x-cohort-variant"], "rf", "user-{u} on :{port}");
    }
}

/// Three replicas sharing ClickHouse step one rollout together to its end, each on the
/// fleet's tallies; an abort on one is applied by the others within the convergence time
/// README states (an evaluation interval plus the shipping delay), and a new replica
/// started then serves the rolled-back state before its first request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_reach_the_same_step_and_all_apply_a_rollback() {
    use common::net::{backend, client as http, send};
    use common::process::{admin_call, CohortProcess};
    let db = database("fleet_rollout");
    let (rf, lr) = (backend("rf").await, backend("lr").await);
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Vec::new();
    for r in 0..3 {
        let (config, port, admin) = fleet_replica(dir.path(), r, &db, rf, lr);
        let p = CohortProcess::start(&config, &[("HOSTNAME", &format!("replica-{r}"))]);
        replicas.push((p, port, admin));
    }
    let admin_addr = |a: u16| -> std::net::SocketAddr { format!("127.0.0.1:{a}").parse().unwrap() };
    let view = |a: u16| async move {
        admin_call(
            admin_addr(a),
            "GET",
            "/v1/experiments/iris-model/rollout",
            None,
        )
        .await
        .1
    };
    let c = http();
    let start = std::time::Instant::now();
    let mut user = 0u32;
    let mut served = [
        std::collections::HashSet::new(),
        std::collections::HashSet::new(),
        std::collections::HashSet::new(),
    ];
    loop {
        // Each user on the replica a load balancer happened to pick.
        for _ in 0..60 {
            let r = (user % 3) as usize;
            let port = replicas[r].1;
            let id = format!("user-{}", user % 400);
            let ans = send(
                &c,
                format!("127.0.0.1:{port}").parse().unwrap(),
                "/invocations",
                &[("x-user-id", &id)],
            )
            .await;
            assert_eq!(ans.status, 200);
            served[r].insert(id);
            user += 1;
        }
        let mut states = Vec::new();
        for (_, _, a) in &replicas {
            let v = view(*a).await;
            states.push((v["state"].clone(), v["step"].clone()));
        }
        if states.iter().all(|s| s.0 == "done") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the fleet did not finish its steps: {states:?}"
        );
    }
    // One history for all: copies of each action (every replica records its start) are one.
    for (_, _, a) in &replicas {
        let v = view(*a).await;
        let kinds: Vec<String> = v["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| format!("{}@{}", e["kind"].as_str().unwrap(), e["step"]))
            .collect();
        let mut unique = kinds.clone();
        unique.dedup();
        assert_eq!(unique, ["start@0", "advance@1", "done@1"], "{kinds:?}");
        assert_eq!(v["share"], 0.5);
    }
    // Each replica judged on the fleet's tallies: more units than it served itself.
    for (r, (_, _, a)) in replicas.iter().enumerate() {
        let v = view(*a).await;
        let units = v["arms"]["control"]["units"].as_u64().unwrap()
            + v["arms"]["treatment"]["units"].as_u64().unwrap();
        assert!(
            units > served[r].len() as u64 + 20,
            "replica {r}: {units} units, served {}",
            served[r].len()
        );
    }
    // An abort on replica 0 reaches the others.
    let (status, body) = admin_call(
        admin_addr(replicas[0].2),
        "POST",
        "/v1/experiments/iris-model/rollout/abort",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let aborted = std::time::Instant::now();
    for (_, _, a) in &replicas[1..] {
        while view(*a).await["state"] != "rolled_back" {
            assert!(
                aborted.elapsed() < Duration::from_secs(5),
                "replica on {a} did not apply the rollback"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!(
        "the rollback reached every replica in {:?}",
        aborted.elapsed()
    );
    for (_, port, _) in &replicas[1..] {
        all_on_control(&c, *port).await;
    }
    // A fourth replica, new, with nothing of its own: rolled back from its start.
    let (config, port, admin) = fleet_replica(dir.path(), 3, &db, rf, lr);
    let fourth = CohortProcess::start(&config, &[("HOSTNAME", "replica-3")]);
    assert_eq!(view(admin).await["state"], "rolled_back");
    all_on_control(&c, port).await;
    drop(fourth);
    for (p, _, _) in &mut replicas {
        assert_eq!(p.terminate(), Some(0));
    }
    query(&client(), &format!("DROP DATABASE `{db}`")).await;
}
