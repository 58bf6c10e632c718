//! The benchmark harness itself, cheaply and without the peer: a quick run
//! of the connection set-up and idle-memory cases through the real daemons
//! gives figures and a report, and `mpbridge paths` (the path manager
//! alone, which the peer runs on) sets the links up and takes them down.

use std::path::Path;
use std::time::Duration;

use mpbridge_lab::bench::{self, peer::PathsOnly, BenchReport, Case, Options, Subject};
use mpbridge_lab::measure::{Progress, ProgressMode};
use mpbridge_lab::{LinkSpec, Node, Topology, TopologySpec};

/// A quick run of `cases` with this build's mpbridge and no peer.
fn quick(cases: Vec<Case>, idle_connections: usize) -> Options {
    Options {
        cases,
        quick: true,
        rounds: 1,
        mpbridge: env!("CARGO_BIN_EXE_mpbridge").into(),
        idle_connections,
        ..Options::default()
    }
}

#[test]
fn a_quick_bench_measures_set_up_and_idle_memory_and_writes_the_report() {
    let options = quick(vec![Case::Setup, Case::Idle], 50);
    let mut report = BenchReport::new(&options, "test".into());
    bench::run(&options, &Progress::new(ProgressMode::Silent), &mut report)
        .unwrap_or_else(|e| panic!("{e:#}"));

    let setup = report.setup.as_ref().expect("case 4 ran");
    for subject in [Subject::Limit, Subject::Mpbridge] {
        let row = setup
            .rows
            .iter()
            .find(|r| r.subject == subject)
            .unwrap_or_else(|| panic!("no {subject:?} row"));
        assert!(row.per_sec.median() > 10.0, "{subject:?}: {row:?}");
        assert_eq!(row.failed, 0, "{subject:?}: {row:?}");
    }
    let idle = report.idle.as_ref().expect("case 5 ran");
    let names: Vec<&str> = idle.rows.iter().map(|r| r.process.as_str()).collect();
    assert_eq!(names, ["mpbridge local", "mpbridge remote"]);
    for row in &idle.rows {
        assert!(row.rss_kib.median() > 1000.0, "{row:?}");
        assert!(row.pss_kib.median() > 0.0, "{row:?}");
    }
    let md = bench::doc::markdown(&report, None, "");
    assert!(md.contains("| direct (plain routing) |"), "{md}");
    assert!(md.contains("## 5. Memory with 50 idle connections"), "{md}");
    assert!(md.contains("| mpbridge remote |"), "{md}");
}

/// Case 11's first row (2 × 50 Mbit/s, equal) quickly, each way: beside
/// the limit and mpbridge, one MPTCP connection between the routers with
/// no proxy, over the paths mpbridge sets up, which must use both links
/// (one TCP connection would be held to the best link alone).
#[test]
fn a_quick_one_flow_case_measures_mptcp_alone_over_both_links() {
    let options = Options {
        unequal: vec![1],
        ..quick(vec![Case::Unequal], 0)
    };
    let mut report = BenchReport::new(&options, "test".into());
    bench::run(&options, &Progress::new(ProgressMode::Silent), &mut report)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let unequal = report.unequal.as_ref().expect("case 11 ran");
    assert_eq!(unequal.rows.len(), 2, "one row each way: {unequal:?}");
    for row in &unequal.rows {
        let subjects: Vec<&str> = row.flows.iter().map(|f| f.subject.as_str()).collect();
        assert_eq!(subjects, ["mpbridge", bench::unequal::MPTCP_ALONE]);
        let alone = &row.flows[1];
        let mbit = alone.mbit.median();
        let best = row.best_link();
        // Both links at 50 Mbit/s: about 1.9 times the best link alone.
        assert!(
            mbit > 1.3 * best,
            "{:?}: MPTCP alone {mbit:.1} Mbit/s, best link alone {best:.1}",
            row.direction
        );
        for (link, share) in alone.split.iter().enumerate() {
            assert!(
                share.median() > 25.0,
                "{:?}: link {link} carried {:.0} % of MPTCP alone's bytes",
                row.direction,
                share.median()
            );
        }
        assert!(row.flows[0].mbit.median() > 0.0, "{row:?}");
    }
    let md = bench::doc::markdown(&report, None, "");
    assert!(md.contains("| mpbridge / MPTCP alone |"), "{md}");
}

fn ns_output(topo: &Topology, node: Node, args: &[&str]) -> String {
    topo.run(node, args).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn the_path_manager_alone_sets_the_links_up_and_removes_them_on_exit() {
    let topo = Topology::build(&TopologySpec {
        links: vec![LinkSpec::UNSHAPED; 2],
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let mpbridge = Path::new(env!("CARGO_BIN_EXE_mpbridge"));
    let paths = PathsOnly::start(&topo, mpbridge, false).unwrap_or_else(|e| panic!("{e:#}"));

    // Router A: one subflow endpoint per link address, a rule per address,
    // the limits; router B: the limits only.
    let endpoints = ns_output(&topo, Node::RouterA, &["ip", "mptcp", "endpoint", "show"]);
    for link in 0..2 {
        let addr = topo.ra_link_addr(link, false).to_string();
        assert!(
            endpoints
                .lines()
                .any(|l| l.contains(&addr) && l.contains("subflow")),
            "no endpoint for {addr}:\n{endpoints}"
        );
    }
    let rules = ns_output(&topo, Node::RouterA, &["ip", "rule", "show"]);
    assert!(
        rules.contains(&format!("from {}", topo.ra_link_addr(1, false))),
        "{rules}"
    );
    for node in [Node::RouterA, Node::RouterB] {
        let limits = ns_output(&topo, node, &["ip", "mptcp", "limits", "show"]);
        assert!(limits.contains("subflows 8"), "{node:?}: {limits}");
    }

    paths.stop(Duration::from_secs(5));
    let endpoints = ns_output(&topo, Node::RouterA, &["ip", "mptcp", "endpoint", "show"]);
    assert!(endpoints.trim().is_empty(), "left behind:\n{endpoints}");
    let rules = ns_output(&topo, Node::RouterA, &["ip", "rule", "show"]);
    assert!(
        !rules.contains(&format!("from {}", topo.ra_link_addr(1, false))),
        "{rules}"
    );
}

#[test]
fn a_thousand_connections_held_through_the_bridge_are_none_refused_or_reset() {
    let options = quick(vec![Case::Held], 0);
    let mut report = BenchReport::new(&options, "test".into());
    bench::run(&options, &Progress::new(ProgressMode::Silent), &mut report)
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let held = &report.conns.as_ref().expect("the case ran").held;
    let steps: Vec<usize> = held.iter().map(|r| r.connections).collect();
    assert_eq!(steps, bench::conns::HELD_QUICK, "{held:?}");
    for row in held {
        assert_eq!(row.subject, Subject::Mpbridge);
        assert_eq!((row.refused, row.reset), (0, 0), "{row:?}");
        let names: Vec<&str> = row.memory.iter().map(|m| m.process.as_str()).collect();
        assert_eq!(names, ["mpbridge local", "mpbridge remote"]);
        for m in &row.memory {
            assert!(m.rss_kib.median() >= m.rss_start_kib.median(), "{m:?}");
        }
    }
    let md = bench::doc::markdown(&report, None, "");
    assert!(md.contains("## 9. Connections held open"), "{md}");
}
