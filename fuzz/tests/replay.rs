//! Replays without libFuzzer: every committed corpus file through its
//! target (so `cargo test` in `fuzz/` re-checks every seed and every
//! regression input), and one file named by the environment for triage:
//! `VIRTNET_FUZZ_REPLAY=<target>:<file> cargo test --test replay -- --nocapture`.

use std::path::Path;

#[test]
fn every_corpus_file_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let mut n = 0;
    virtnet_fuzz::take_checks();
    for target in virtnet_fuzz::TARGETS {
        let Ok(dir) = std::fs::read_dir(root.join(target)) else {
            continue;
        };
        let mut files: Vec<_> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            eprintln!("{target}: {}", f.display());
            assert!(virtnet_fuzz::run_target(target, &bytes));
            n += 1;
        }
    }
    let c = virtnet_fuzz::take_checks();
    eprintln!(
        "{n} corpus files replayed; {} chain hints found a buffer by the one-region path, each compared with plain reads",
        c.hint_buffers
    );
    // I-MEM-6 under the oracle: the corpus reaches RegionMemory's hint
    // fast path (a broken probe, or one never called, gives 0).
    assert!(
        c.hint_buffers > 0,
        "no chain hint reached the one-region path"
    );
}

#[test]
fn replay_one_file_from_the_environment() {
    let Ok(spec) = std::env::var("VIRTNET_FUZZ_REPLAY") else {
        return;
    };
    let (target, file) = spec.split_once(':').expect("<target>:<file>");
    let bytes = std::fs::read(file).unwrap();
    eprintln!("{}", virtnet_fuzz::describe(target, &bytes));
    assert!(virtnet_fuzz::run_target(target, &bytes), "unknown target");
}
