//! The seed corpus: written from `virtnet_fuzz::seeds` and checked.
//!
//! `cargo test --test seeds` checks that every seed decodes back to the
//! structure it was written from, runs clean, reaches the oracle it was
//! written for, and that `corpus/<target>/<name>` holds exactly its bytes.
//! `VIRTNET_FUZZ_WRITE_SEEDS=1 cargo test --test seeds` (or
//! `cargo xtask fuzz --seed`) writes the files.

use std::path::Path;

use virtnet_fuzz::seeds::{self, Reaches};

#[test]
fn seeds_round_trip_run_clean_reach_their_oracle_and_are_committed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let write = std::env::var_os("VIRTNET_FUZZ_WRITE_SEEDS").is_some();
    let mut stale = Vec::new();
    for (name, reaches, seed) in seeds::all() {
        let target = seed.target();
        let bytes = seed.encode();
        assert!(
            seed.round_trips(&bytes),
            "{target}/{name} does not decode back"
        );
        assert!(
            bytes.len() <= 8192,
            "{target}/{name} is {} bytes",
            bytes.len()
        );
        virtnet_fuzz::take_checks();
        assert!(virtnet_fuzz::run_target(target, &bytes));
        let c = virtnet_fuzz::take_checks();
        let reached = match reaches {
            Reaches::Runs => true,
            Reaches::Chains => c.chains > 0,
            Reaches::TxFrames => c.tx_frames > 0,
            Reaches::RxFrames => c.rx_frames > 0,
            Reaches::MmioMoves => c.mmio_moves > 0,
        };
        assert!(reached, "{target}/{name} does not reach {reaches:?}: {c:?}");
        eprintln!("{target}/{name}: {} bytes, {c:?}", bytes.len());
        let path = root.join(target).join(name);
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "corpus files missing or stale (regenerate with `cargo xtask fuzz --seed`): {stale:?}"
    );
}
