//! `cargo xtask bench core`: runs the core's criterion benchmark
//! (`core/benches/datapath.rs`) and prints one table: per case, virtnet's,
//! rust-vmm's and a bare memcpy's nanoseconds per packet, their ratio and
//! difference, and used-buffer notifications per packet
//! (specs/10-performance.md).
//!
//! Figures come from criterion's `target/criterion/<group>/<case>/new/estimates.json`
//! (the median time per round, divided by the batch); notifications and the
//! device footprint come from the benchmark's `VNBENCH` lines. The benchmark
//! runs `VIRTNET_BENCH_RUNS` times (default 2, in separate processes) and each
//! figure is the lowest of the runs: on a shared machine, noise only adds.
//! The runs are pinned to one CPU (`taskset`; the last one, or
//! `VIRTNET_BENCH_CPU`) after the build.
//!
//! Criterion's figures come from wherever the build and the allocator put
//! the buffers, and 4K aliasing between a copy's loads and earlier stores
//! can move a figure by up to 10 ns. So a second table follows: the layout
//! sweep (`VNBENCH_LAYOUTS=1`), for every batch-32 case (the issue's targets:
//! 64 B and 1514 B, TX and RX, each chain shape), with
//! every implementation's buffers placed alike in each of 96 random layouts,
//! and the median and the spread over the layouts.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::ctx::Ctx;
use crate::util::run_streaming;

/// Criterion arguments: no plots, short warm-up and measurement, fewer
/// bootstrap resamples, so a run (about 80 benchmarks) takes about a minute
/// and a half on two cores.
const CRITERION_ARGS: &[&str] = &[
    "--noplot",
    "--warm-up-time",
    "0.2",
    "--measurement-time",
    "0.7",
    "--nresamples",
    "5000",
];

/// Runs when `VIRTNET_BENCH_RUNS` is not set.
const DEFAULT_RUNS: u32 = 2;

/// `(group, case)` → median ns per round, the lowest over the runs.
type Figures = HashMap<(String, String), f64>;

/// What the benchmark printed besides criterion's figures.
#[derive(Default)]
struct Extras {
    /// Case names in the order they ran.
    cases: Vec<String>,
    /// `(implementation, case)` → notifications per packet.
    notif: HashMap<(String, String), f64>,
    /// Footprint lines, as printed.
    footprint: Vec<String>,
    /// Layout sweep: per case (in order), `(virtnet, rust-vmm, memcpy)` ns
    /// per packet in each layout.
    layouts: Vec<(String, Vec<[f64; 3]>)>,
    /// Layout sweep: per case, staging page offset and how many virtnet
    /// measurements staged elsewhere.
    staging: HashMap<String, (u64, u64)>,
    /// Layout sweep: its parameters, as printed (`layouts=96 passes=6 ...`).
    sweep: String,
}

impl Extras {
    fn take(&mut self, line: &str) {
        let mut w = line.split_whitespace();
        if w.next() != Some("VNBENCH") {
            return;
        }
        match w.next() {
            Some("notif") => {
                let (Some(imp), Some(case), Some(v)) = (w.next(), w.next(), w.next()) else {
                    return;
                };
                let Ok(v) = v.parse::<f64>() else { return };
                if imp == "virtnet" {
                    self.cases.push(case.to_string());
                }
                self.notif.insert((imp.to_string(), case.to_string()), v);
            }
            Some("footprint") => self.footprint.push(w.collect::<Vec<_>>().join(" ")),
            Some("layout") => {
                let Some(case) = w.next() else { return };
                let v: Vec<f64> = w.skip(1).filter_map(|x| x.parse().ok()).collect();
                let [v, r, m] = v[..] else { return };
                match self.layouts.last_mut() {
                    Some((c, rows)) if c == case => rows.push([v, r, m]),
                    _ => self.layouts.push((case.to_string(), vec![[v, r, m]])),
                }
            }
            Some("sweep") => self.sweep = w.collect::<Vec<_>>().join(" "),
            Some("staging") => {
                let v: Vec<&str> = w.collect();
                if let [case, at, moved] = v[..] {
                    if let (Ok(at), Ok(moved)) = (at.parse(), moved.parse()) {
                        self.staging.insert(case.to_string(), (at, moved));
                    }
                }
            }
            _ => {}
        }
    }
}

/// The benchmark target's cargo arguments (after `bench` or `test`).
const BENCH_ARGS: &[&str] = &[
    "-p",
    "virtnet",
    "--features",
    "test-utils",
    "--bench",
    "datapath",
];

/// The CPU the measurement runs on: `VIRTNET_BENCH_CPU`, else the
/// highest-numbered one (CPU 0 takes more of the system's interrupts and
/// housekeeping; on this project's VM it is also the one whose timings
/// jump by 2x). `None` on one CPU or without `taskset`.
fn bench_cpu() -> Option<usize> {
    if let Some(c) = std::env::var("VIRTNET_BENCH_CPU")
        .ok()
        .and_then(|c| c.parse().ok())
    {
        return Some(c);
    }
    let n = std::thread::available_parallelism().ok()?.get();
    (n > 1 && crate::util::which("taskset").is_some()).then(|| n - 1)
}

/// `cargo xtask bench core`.
pub fn core(ctx: &Ctx) -> Result<()> {
    // Build with every CPU, then measure on one.
    crate::util::run_ok(ctx.cargo().arg("bench").args(BENCH_ARGS).arg("--no-run"))?;
    let cpu = bench_cpu();
    let pinned = || {
        let mut cmd = match cpu {
            Some(c) => {
                let mut t = Command::new("taskset");
                t.current_dir(&ctx.root)
                    .args(["-c", &c.to_string(), "cargo"]);
                t
            }
            None => ctx.cargo(),
        };
        cmd.arg("bench").args(BENCH_ARGS);
        cmd
    };
    let mut cmd = pinned();
    cmd.arg("--").args(CRITERION_ARGS);
    let runs = std::env::var("VIRTNET_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse::<u32>().ok())
        .unwrap_or(DEFAULT_RUNS)
        .clamp(1, 10);
    let criterion = ctx.target_dir().join("criterion");
    let mut extras = Extras::default();
    let mut figures = Figures::new();
    for run in 1..=runs {
        println!("===== benchmark run {run} of {runs} =====");
        let mut x = Extras::default();
        let status = run_streaming(&mut cmd, |line| x.take(line))?;
        if !status.success() {
            bail!("the benchmark failed ({status})");
        }
        if x.cases.is_empty() {
            bail!("the benchmark printed no case");
        }
        collect(&criterion, &x, &mut figures)?;
        if run == 1 {
            extras = x;
        }
    }
    println!("===== layout sweep =====");
    let mut sweep = Extras::default();
    let status = run_streaming(pinned().env("VNBENCH_LAYOUTS", "1"), |line| {
        sweep.take(line)
    })?;
    if !status.success() {
        bail!("the layout sweep failed ({status})");
    }
    if sweep.layouts.is_empty() {
        bail!("the layout sweep printed no case");
    }
    println!();
    println!("{}", machine());
    match cpu {
        Some(c) => println!("command: cargo xtask bench core (lowest of {runs} runs, on CPU {c})"),
        None => println!("command: cargo xtask bench core (lowest of {runs} runs)"),
    }
    println!();
    print!("{}", table(&figures, &extras)?);
    println!();
    println!(
        "Over buffer layouts (layout sweep, {}: each implementation stages frames at \
         the page offset of virtnet's pool slot; each random layout shifts the guest's frame \
         buffers and places the backend's sink and source; per layout the lowest of the \
         passes; the median and the range over the layouts):",
        sweep.sweep
    );
    println!();
    print!("{}", layout_table(&sweep));
    println!();
    match figure(&figures, "timer", "empty") {
        Ok(t) => println!(
            "timer: an empty timed section costs {t:.1} ns per round (in every figure, \
             divided by the batch; it cancels in virtnet - memcpy)"
        ),
        Err(e) => println!("timer: {e:#}"),
    }
    for f in &extras.footprint {
        println!("footprint: {}", footprint_line(f));
    }
    Ok(())
}

/// What the `unit` suite asks of the benchmark, so that `cargo xtask bench
/// core` cannot break unnoticed (no time is asserted): every case once in
/// criterion's test mode (each first checks that every frame crossed), and
/// one pass of the layout sweep with a few rounds, whose output must name
/// every target case with every layout, a time for every figure, and virtnet
/// staging frames where the sweep placed the others (none moved).
pub fn smoke(ctx: &Ctx, tally: &mut crate::util::Tally) -> Result<()> {
    tally.check_cmd(
        "bench datapath: every case once (criterion test mode)",
        ctx.cargo().arg("test").args(BENCH_ARGS),
    )?;
    let mut x = Extras::default();
    let status = run_streaming(
        ctx.cargo()
            .arg("test")
            .args(BENCH_ARGS)
            .env("VNBENCH_LAYOUTS", "1")
            .env("VNBENCH_PASSES", "1")
            .env("VNBENCH_ROUNDS", "4"),
        |line| x.take(line),
    )?;
    let problems = sweep_problems(&x);
    for p in &problems {
        println!("layout sweep: {p}");
    }
    tally.record(
        "bench datapath: one pass of the layout sweep",
        status.success() && problems.is_empty(),
    );
    Ok(())
}

/// The cases the layout sweep measures: batch 32, 64 B and 1514 B, TX and
/// RX, one descriptor, two and indirect.
const SWEEP_CASES: usize = 12;

/// What is wrong with a layout sweep's output (empty: nothing).
fn sweep_problems(x: &Extras) -> Vec<String> {
    let mut out = Vec::new();
    let layouts: Option<usize> = x
        .sweep
        .split_whitespace()
        .find_map(|w| w.strip_prefix("layouts=").and_then(|n| n.parse().ok()));
    let Some(layouts) = layouts else {
        return vec!["no `VNBENCH sweep layouts=N` line".into()];
    };
    if x.layouts.len() != SWEEP_CASES {
        out.push(format!("{} cases, want {SWEEP_CASES}", x.layouts.len()));
    }
    for (case, rows) in &x.layouts {
        if rows.len() != layouts {
            out.push(format!("{case}: {} layouts, want {layouts}", rows.len()));
        }
        // Positive, and below a second per packet: f64::MAX is the
        // sweep's "never measured".
        if rows.iter().flatten().any(|v| !(*v > 0.0 && *v < 1e9)) {
            out.push(format!("{case}: a figure is not a time"));
        }
        match x.staging.get(case) {
            Some((_, 0)) => {}
            Some((_, moved)) => out.push(format!("{case}: virtnet staged elsewhere {moved} times")),
            None => out.push(format!("{case}: no staging line")),
        }
    }
    out
}

/// `lscpu`'s model name and the CPU count.
pub(crate) fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("machine: {model}, {cpus} CPUs")
}

/// The batch of a case name (`tx-64-b32-1desc` → 32).
fn batch_of(case: &str) -> Option<f64> {
    case.split('-')
        .find_map(|p| p.strip_prefix('b').and_then(|n| n.parse::<f64>().ok()))
}

/// The frame size of a case name (`tx-64-b32-1desc` → 64).
fn size_of_case(case: &str) -> Option<f64> {
    case.split('-').find_map(|p| p.parse::<f64>().ok())
}

/// The memcpy case moving the same bytes (`rx-nomrg-64-b32-1desc` → `rx-64-b32`).
fn memcpy_case(case: &str) -> String {
    let parts: Vec<&str> = case.split('-').filter(|p| *p != "nomrg").collect();
    parts.iter().take(3).copied().collect::<Vec<_>>().join("-")
}

/// Read this run's estimates of every case (and the timer) into `figures`,
/// keeping the lowest of the runs.
fn collect(criterion: &Path, x: &Extras, figures: &mut Figures) -> Result<()> {
    let mut want = vec![("timer".to_string(), "empty".to_string())];
    for case in &x.cases {
        want.push(("virtnet".into(), case.clone()));
        want.push(("rust-vmm".into(), case.clone()));
        want.push(("memcpy".into(), memcpy_case(case)));
    }
    for (group, case) in want {
        let v = median_ns(criterion, &group, &case)?;
        figures
            .entry((group, case))
            .and_modify(|old| *old = old.min(v))
            .or_insert(v);
    }
    Ok(())
}

/// A collected figure.
fn figure(figures: &Figures, group: &str, case: &str) -> Result<f64> {
    figures
        .get(&(group.to_string(), case.to_string()))
        .copied()
        .with_context(|| format!("no figure for {group}/{case}"))
}

/// Criterion's median time per iteration of `group/case`, in ns.
fn median_ns(criterion: &Path, group: &str, case: &str) -> Result<f64> {
    let path = criterion
        .join(group)
        .join(case)
        .join("new")
        .join("estimates.json");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    json_point_estimate(&text, "median")
        .with_context(|| format!("no median point estimate in {}", path.display()))
}

/// `{"<key>": {..., "point_estimate": X, ...}}` → X, without a JSON parser:
/// criterion's estimates file is a flat object of estimate objects.
fn json_point_estimate(text: &str, key: &str) -> Option<f64> {
    let at = text.find(&format!("\"{key}\""))?;
    let rest = &text[at..];
    let pe = rest.find("\"point_estimate\"")?;
    let rest = &rest[pe + "\"point_estimate\"".len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The results as a Markdown table.
fn table(figures: &Figures, x: &Extras) -> Result<String> {
    let mut out = String::new();
    out.push_str(
        "| case | virtnet ns/pkt | rust-vmm ns/pkt | memcpy ns/pkt | virtnet/rust-vmm \
         | virtnet - memcpy | virtnet Mpps | virtnet Gbit/s | notif/pkt virtnet | notif/pkt rust-vmm |\n",
    );
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for case in &x.cases {
        let batch = batch_of(case).with_context(|| format!("no batch in case name {case}"))?;
        let size = size_of_case(case).with_context(|| format!("no size in case name {case}"))?;
        let v = figure(figures, "virtnet", case)? / batch;
        let r = figure(figures, "rust-vmm", case)? / batch;
        let m = figure(figures, "memcpy", &memcpy_case(case))? / batch;
        let nv = x.notif.get(&("virtnet".into(), case.clone())).copied();
        let nr = x.notif.get(&("rust-vmm".into(), case.clone())).copied();
        let show = |n: Option<f64>| n.map_or("?".to_string(), |n| format!("{n:.3}"));
        let mpps = 1000.0 / v;
        let gbps = mpps * size * 8.0 / 1000.0;
        out.push_str(&format!(
            "| {case} | {v:.1} | {r:.1} | {m:.1} | {:.2} | {:.1} | {mpps:.2} | {gbps:.2} | {} | {} |\n",
            v / r,
            v - m,
            show(nv),
            show(nr),
        ));
    }
    Ok(out)
}

/// The median of some figures (the mean of the middle two for an even
/// count); NaN when there are none.
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The layout sweep as a Markdown table: per case, each implementation's
/// median ns per packet over the layouts (with the range for virtnet and
/// rust-vmm), the ratio of the medians, and virtnet - memcpy at each
/// layout (median and worst).
fn layout_table(x: &Extras) -> String {
    let mut out = String::new();
    out.push_str(
        "| case | layouts | virtnet ns/pkt (range) | rust-vmm ns/pkt (range) | memcpy ns/pkt \
         | virtnet/rust-vmm | virtnet - memcpy (worst) | staged at |\n",
    );
    out.push_str("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (case, rows) in &x.layouts {
        let col = |i: usize| rows.iter().map(|r| r[i]).collect::<Vec<_>>();
        let (v, r, m) = (col(0), col(1), col(2));
        let lo = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let gap: Vec<f64> = rows.iter().map(|r| r[0] - r[2]).collect();
        let (mv, mr) = (median(&v), median(&r));
        let staged = match x.staging.get(case) {
            Some((at, 0)) => format!("{at}"),
            Some((at, moved)) => format!("{at} ({moved} moved)"),
            None => "?".into(),
        };
        out.push_str(&format!(
            "| {case} | {} | {:.1} ({:.1}-{:.1}) | {:.1} ({:.1}-{:.1}) | {:.1} | {:.3} | {:.1} ({:.1}) | {staged} |\n",
            rows.len(),
            mv,
            lo(&v),
            hi(&v),
            mr,
            lo(&r),
            hi(&r),
            median(&m),
            mv / mr,
            median(&gap),
            hi(&gap),
        ));
    }
    out
}

/// A footprint line made readable: sizes in KiB/MiB.
fn footprint_line(raw: &str) -> String {
    let field = |k: &str| {
        raw.split_whitespace()
            .find_map(|w| w.strip_prefix(k).and_then(|v| v.parse::<u64>().ok()))
    };
    match (
        field("slot="),
        field("count="),
        field("device="),
        field("pool="),
        field("total="),
    ) {
        (Some(slot), Some(count), Some(dev), Some(pool), Some(total)) => format!(
            "one device with two pools of {count} x {slot} B slots: NetDevice {dev} B + \
             2 x FramePool {} = {}",
            human(pool),
            human(total)
        ),
        _ => raw.to_string(),
    }
}

/// Bytes as B, KiB or MiB.
fn human(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB ({b} B)", b as f64 / f64::from(1u32 << 20))
    } else if b >= 1 << 10 {
        format!("{:.1} KiB ({b} B)", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_names_parse() {
        assert_eq!(batch_of("tx-64-b32-1desc"), Some(32.0));
        assert_eq!(size_of_case("rx-nomrg-1514-b256-indirect"), Some(1514.0));
        assert_eq!(memcpy_case("rx-nomrg-1514-b32-1desc"), "rx-1514-b32");
        assert_eq!(memcpy_case("tx-64-b1-2desc"), "tx-64-b1");
    }

    #[test]
    fn point_estimate_is_read_from_the_named_estimate() {
        let text = r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":1.0,"upper_bound":3.0},"point_estimate":2.0,"standard_error":0.1},"median":{"confidence_interval":{"confidence_level":0.95,"lower_bound":4.0,"upper_bound":6.0},"point_estimate":5.25e3,"standard_error":0.2}}"#;
        assert_eq!(json_point_estimate(text, "mean"), Some(2.0));
        assert_eq!(json_point_estimate(text, "median"), Some(5250.0));
        assert_eq!(json_point_estimate(text, "slope"), None);
    }

    #[test]
    fn collect_keeps_the_lowest_figure_of_the_runs() {
        let dir = std::env::temp_dir().join(format!("vnbench-test-{}", std::process::id()));
        let write = |group: &str, case: &str, v: f64| {
            let d = dir.join(group).join(case).join("new");
            fs::create_dir_all(&d).unwrap();
            let json =
                format!(r#"{{"mean":{{"point_estimate":1.0}},"median":{{"point_estimate":{v}}}}}"#);
            fs::write(d.join("estimates.json"), json).unwrap();
        };
        let mut x = Extras::default();
        x.take("VNBENCH notif virtnet tx-64-b32-1desc 0.0312");
        let mut figures = Figures::new();
        for (run, v) in [(1, 3200.0), (2, 1600.0), (3, 2400.0)] {
            write("timer", "empty", 30.0 + f64::from(run));
            write("virtnet", "tx-64-b32-1desc", v);
            write("rust-vmm", "tx-64-b32-1desc", 6400.0);
            write("memcpy", "tx-64-b32", 320.0);
            collect(&dir, &x, &mut figures).unwrap();
        }
        assert_eq!(
            figure(&figures, "virtnet", "tx-64-b32-1desc").unwrap(),
            1600.0
        );
        assert_eq!(figure(&figures, "timer", "empty").unwrap(), 31.0);
        let t = table(&figures, &x).unwrap();
        assert!(
            t.contains("| tx-64-b32-1desc | 50.0 | 200.0 | 10.0 | 0.25 | 40.0 |"),
            "{t}"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn layout_sweep_is_summarised_per_case() {
        let mut x = Extras::default();
        x.take("VNBENCH layout tx-64-b32-1desc 0:0 30.00 90.00 5.00");
        x.take("VNBENCH layout tx-64-b32-1desc 16:64 20.00 80.00 4.00");
        x.take("VNBENCH layout tx-64-b32-1desc 32:128 40.00 60.00 10.00");
        x.take("VNBENCH layout rx-64-b32-1desc 0:0 10.00 20.00 1.00");
        x.take("VNBENCH layout rx-64-b32-1desc 0:64 bad");
        x.take("VNBENCH staging tx-64-b32-1desc 3496 0");
        x.take("VNBENCH staging rx-64-b32-1desc 2960 2");
        x.take("VNBENCH sweep layouts=96 passes=6 rounds=1000");
        assert_eq!(x.sweep, "layouts=96 passes=6 rounds=1000");
        assert_eq!(x.layouts.len(), 2);
        assert_eq!(x.layouts[1].1.len(), 1, "a malformed line is skipped");
        let t = layout_table(&x);
        // Medians 30 / 80 / 5, ratio 0.375, gaps 25, 16, 30.
        assert!(
            t.contains("| tx-64-b32-1desc | 3 | 30.0 (20.0-40.0) | 80.0 (60.0-90.0) | 5.0 | 0.375 | 25.0 (30.0) | 3496 |"),
            "{t}"
        );
        assert!(t.contains("| 2960 (2 moved) |"), "{t}");
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn a_sweep_missing_layouts_or_moving_its_staging_is_a_problem() {
        let mut x = Extras::default();
        x.take("VNBENCH sweep layouts=2 passes=1 rounds=4");
        for case in ["tx-64-b32-1desc", "tx-1514-b32-1desc", "rx-64-b32-1desc"] {
            x.take(&format!("VNBENCH layout {case} 0:0 30.00 90.00 5.00"));
            x.take(&format!("VNBENCH layout {case} 16:32 31.00 91.00 5.10"));
            x.take(&format!("VNBENCH staging {case} 1208 0"));
        }
        x.take("VNBENCH layout rx-1514-b32-1desc 0:0 30.00 90.00 5.00");
        assert_eq!(
            sweep_problems(&x),
            vec![
                "4 cases, want 12",
                "rx-1514-b32-1desc: 1 layouts, want 2",
                "rx-1514-b32-1desc: no staging line"
            ]
        );
        x.take("VNBENCH layout rx-1514-b32-1desc 16:32 179769313486231570000000000000000000000.00 90.00 0.00");
        x.take("VNBENCH staging rx-1514-b32-1desc 672 3");
        assert_eq!(
            sweep_problems(&x),
            vec![
                "4 cases, want 12",
                "rx-1514-b32-1desc: a figure is not a time",
                "rx-1514-b32-1desc: virtnet staged elsewhere 3 times"
            ]
        );
        let mut ok = Extras::default();
        ok.take("VNBENCH sweep layouts=1 passes=1 rounds=4");
        for i in 0..SWEEP_CASES {
            let case = format!("case{i}");
            ok.take(&format!("VNBENCH layout {case} 0:0 30.00 90.00 5.00"));
            ok.take(&format!("VNBENCH staging {case} 8 0"));
        }
        assert!(sweep_problems(&ok).is_empty());
        assert_eq!(sweep_problems(&Extras::default()).len(), 1);
    }

    #[test]
    fn extras_collect_cases_in_order() {
        let mut x = Extras::default();
        x.take("VNBENCH notif virtnet tx-64-b1-1desc 1.0000");
        x.take("VNBENCH notif rust-vmm tx-64-b1-1desc 0.5000");
        x.take("virtnet/tx-64-b1-1desc time: [1 ns 2 ns 3 ns]");
        x.take("VNBENCH footprint default slot=1536 count=256 device=480 pool=393752 total=787984");
        assert_eq!(x.cases, vec!["tx-64-b1-1desc".to_string()]);
        assert_eq!(
            x.notif.get(&("rust-vmm".into(), "tx-64-b1-1desc".into())),
            Some(&0.5)
        );
        assert!(footprint_line(&x.footprint[0]).contains("769.5 KiB"));
    }
}
