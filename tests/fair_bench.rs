//! The fair benchmark (`examples/fair_bench.rs`) runs a tiny configuration against the real
//! farm through its delaying relay, and writes well-formed figures. It measures nothing here:
//! no figure is compared with a time.

#[allow(dead_code)]
#[path = "../examples/fair_bench.rs"]
mod fair_bench;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

#[test]
fn a_tiny_run_writes_a_row_for_every_way_with_finite_figures() {
    let out = std::env::temp_dir().join(format!("http-batch-fair-bench-{}", std::process::id()));
    let o = fair_bench::options(args(&[
        "--n",
        "10",
        "--rounds",
        "2",
        "--round-secs",
        "0",
        "--rtts",
        "0,2",
        "--out",
        out.to_str().expect("a UTF-8 temporary directory"),
    ]));
    let table = fair_bench::bench(&o).expect("the tiny run completes");

    // The markdown table: a header, its rule, then 2 kinds of calls × 2 RTTs × 3 ways, each
    // row with as many cells as the header.
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with('|')).collect();
    assert_eq!(rows.len(), 2 + 12, "{table}");
    let cells = |row: &str| row.matches('|').count();
    assert!(rows.iter().all(|r| cells(r) == cells(rows[0])), "{table}");

    let results = std::fs::read_to_string(out.join("results.csv")).expect("results.csv");
    let mut lines = results.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    assert_eq!(
        header,
        [
            "calls",
            "path",
            "rtt_ms",
            "way",
            "calls_per_sec",
            "last_answer_ms",
            "p99_call_ms",
            "calls_per_sec_vs_batch",
            "last_answer_vs_batch",
            "p99_call_vs_batch",
            "rounds"
        ]
    );
    let mut seen = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), header.len(), "{line}");
        let numbers: Vec<f64> = f[4..10]
            .iter()
            .map(|v| v.parse().expect("a number"))
            .collect();
        assert!(
            numbers.iter().all(|n| n.is_finite() && *n > 0.0),
            "every figure is a positive number: {line}"
        );
        if f[3] == "batch" {
            assert_eq!(
                &numbers[3..],
                [1.0, 1.0, 1.0],
                "the batch is its own unit: {line}"
            );
        }
        assert_eq!(f[10], "2", "{line}");
        seen.push((f[0].to_owned(), f[2].to_owned(), f[3].to_owned()));
    }
    for calls in ["mixed", "static"] {
        for rtt in ["0", "2"] {
            for way in ["batch", "http1x6", "http2"] {
                let row = (calls.to_owned(), rtt.to_owned(), way.to_owned());
                assert!(seen.contains(&row), "no row for {row:?} in\n{results}");
            }
        }
    }

    let rounds = std::fs::read_to_string(out.join("rounds.csv")).expect("rounds.csv");
    assert_eq!(rounds.lines().count(), 1 + 12 * 2, "{rounds}");
    let _ = std::fs::remove_dir_all(&out);
}
