//! Rows of `scripts/bench-vs-reference.sh`: a bench that times our code against a peer in the
//! same run appends one JSON object per row to the file named by `SSC_BENCH_JSON` (nothing
//! happens when it is unset), so the script gathers every bench's rows into one table.

use std::io::Write;

/// One measured pair: our median time and the peer's, on the same inputs in the same run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchRow {
    /// What was timed (the table's row label).
    pub row: String,
    /// Our median seconds.
    pub ours_s: f64,
    /// The peer's name (`PyTorch 2.x CSR`, `pydensecrf2`, …).
    pub peer: String,
    /// The peer's median seconds, `None` when it could not run here.
    pub peer_s: Option<f64>,
    /// Peer time / our time (`> 1`: we are faster).
    pub ratio: Option<f64>,
    /// Threads each side was given.
    pub threads: usize,
}

impl BenchRow {
    pub fn new(row: &str, ours_s: f64, peer: &str, peer_s: Option<f64>, threads: usize) -> Self {
        BenchRow {
            row: row.into(),
            ours_s,
            peer: peer.into(),
            peer_s,
            ratio: peer_s.map(|p| p / ours_s),
            threads,
        }
    }

    /// Appends the row to `$SSC_BENCH_JSON` (one JSON object per line) and prints it.
    pub fn record(&self) {
        let line = serde_json::to_string(self).expect("a bench row serialises");
        println!("BENCH-ROW {line}");
        let Some(path) = std::env::var_os("SSC_BENCH_JSON") else {
            return;
        };
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            eprintln!("cannot append to {}: {e}", path.to_string_lossy());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_is_peer_over_ours() {
        let r = BenchRow::new("x", 0.5, "peer", Some(2.0), 2);
        assert_eq!(r.ratio, Some(4.0));
        assert_eq!(BenchRow::new("x", 0.5, "peer", None, 1).ratio, None);
        let json = serde_json::to_value(&r).unwrap();
        for key in ["row", "ours_s", "peer", "peer_s", "ratio", "threads"] {
            assert!(json.get(key).is_some(), "{key}");
        }
    }
}
