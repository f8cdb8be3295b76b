//! A process that does known things to its memory, for memwatch's integration tests.
//!
//! `ops FILE`: prints `ready`, waits for a line on stdin, does exactly what `plan.rs` says
//! with raw syscalls (no allocation in between), prints `done`, waits for stdin to close.
//! `hog [STEP_KIB]`: allocates and touches memory until it is killed.
//! `sleep`: waits for stdin to close.
//! `fill MIB`: maps and touches MIB MiB, prints `ready`, holds it until stdin closes.
//! `fill-exit MIB`: the same, then exits at once.
//! `grow STEP_KIB MAX_MIB`: prints `ready`, grows by STEP_KIB every 100 ms up to MAX_MIB.
//! `hover LOW_MIB HIGH_MIB MS SECONDS`: holds HIGH_MIB for MS ms, then LOW_MIB for MS ms, over
//! and over for SECONDS; then frees it all, prints `calm`, and waits for stdin to close.
//! `breathe KIB MS`: every MS ms, maps and touches KIB KiB, then the next time unmaps it, so
//! its cgroup's usage keeps changing (a busy container, for the daemon's benchmark).
//! `churn DIR PER_SECOND SECONDS LIFETIME_MS`: creates cgroups `DIR/c0`, `DIR/c1`, … at
//! PER_SECOND for SECONDS, each with a 64 MiB limit and a short-lived child (forked, moved in, touching 64 KiB),
//! and removes each LIFETIME_MS after its creation (oldest first); prints `at N` whenever
//! cgroups below N have all been removed (every 100) and `done N` at the end.
//! `swarm N`: prints `start`, waits for a line, forks N children that each map and touch
//! 64 KiB (exactly one mmap call each) and then wait for stdin to close; prints `ready` once
//! all have mapped, and exits when stdin closes and the children are gone.
//! `brk-exec MIB MODE ARGS...`: grows the program break by MIB MiB, then execs itself as
//! `memwatch-workload MODE ARGS...` (a new program image, whose break starts elsewhere).
//! `jvm-standin FILE`: stands in for a JVM (run as a copy named `java`, JVM options such as
//! `-Xmx96m` before the mode): copies FILE (a
//! recorded, or deliberately garbled, performance-data file) to `/tmp/hsperfdata_root/<pid>`
//! as HotSpot would, prints `ready`, waits for stdin to close, removes it.
//!
//! Benchmark loops (`cargo xtask bench`), each printing nanoseconds per operation:
//! `bench-faults MIB ROUNDS`: touch MIB MiB of fresh anonymous memory, 4 KiB pages, ROUNDS times;
//! `bench-mmap N`: N times mmap 64 KiB anonymous and munmap it;
//! `bench-getppid N`: N getppid syscalls (one memwatch does not watch).
//! Each prints the median over batches (a round; 1,000 pairs; 10,000 calls).
#[allow(dead_code)]
mod plan {
    include!("plan.rs");
}
use plan::*;
use std::{ffi::CString, ptr};

/// Stands in for a JVM: its performance-data file where HotSpot keeps it, while it runs.
fn jvm_standin(file: &str) {
    let dir = std::path::Path::new("/tmp/hsperfdata_root");
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join(std::process::id().to_string());
    std::fs::copy(file, &path).expect("write the performance-data file");
    say(b"ready\n");
    wait_eof();
    let _ = std::fs::remove_file(&path);
}

fn say(msg: &[u8]) {
    // SAFETY: writing a valid buffer to stdout.
    unsafe { libc::write(1, msg.as_ptr().cast(), msg.len()) };
}

fn wait_line() {
    let mut b = [0u8; 1];
    // SAFETY: reading into a stack buffer.
    while unsafe { libc::read(0, b.as_mut_ptr().cast(), 1) } == 1 && b[0] != b'\n' {}
}

fn wait_eof() {
    let mut b = [0u8; 64];
    // SAFETY: reading into a stack buffer.
    while unsafe { libc::read(0, b.as_mut_ptr().cast(), b.len()) } > 0 {}
}

fn check(ok: bool, what: &str) {
    if !ok {
        eprintln!("workload: {what} failed: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
}

unsafe fn anon(len: u64) -> *mut libc::c_void {
    // SAFETY: a fresh private anonymous mapping; nothing else is touched.
    let p = unsafe {
        libc::mmap(ptr::null_mut(), len as usize, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
    };
    check(p != libc::MAP_FAILED, "mmap anon");
    p
}

fn ops(file: &str) {
    let path = CString::new(file).unwrap();
    // SAFETY: raw syscalls on memory this function owns.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
        check(fd >= 0, "open");
        say(b"ready\n");
        wait_line();

        let mut maps: [(*mut libc::c_void, u64); 8] = [(ptr::null_mut(), 0); 8];
        for (i, len) in ANON_MAPS.iter().enumerate() {
            maps[i] = (anon(*len), *len);
        }
        let (last, last_len) = maps[ANON_MAPS.len() - 1];
        // One fault per touched page, whatever the kernel's transparent huge page setting.
        check(libc::madvise(last, last_len as usize, libc::MADV_NOHUGEPAGE) == 0, "madvise");
        for page in 0..TOUCH_PAGES {
            *(last as *mut u8).add((page * 4096) as usize) = 1;
        }
        for i in 0..FILE_MAPS as usize {
            let p = libc::mmap(ptr::null_mut(), FILE_SIZE as usize, libc::PROT_READ, libc::MAP_PRIVATE, fd, 0);
            check(p != libc::MAP_FAILED, "mmap file");
            maps[ANON_MAPS.len() + i] = (p, FILE_SIZE);
        }
        let small = anon(REMAP_FROM);
        let grown = libc::mremap(small, REMAP_FROM as usize, REMAP_TO as usize, libc::MREMAP_MAYMOVE);
        check(grown != libc::MAP_FAILED, "mremap");
        maps[7] = (grown, REMAP_TO);
        assert_eq!(last_len, ANON_MAPS[3]);
        for (p, len) in maps {
            check(libc::munmap(p, len as usize) == 0, "munmap");
        }
        let base = libc::syscall(libc::SYS_brk, 0usize) as u64;
        let mut cur = base;
        for _ in 0..3 {
            cur += BRK_STEP;
            check(libc::syscall(libc::SYS_brk, cur) as u64 == cur, "brk grow");
        }
        cur -= BRK_STEP;
        check(libc::syscall(libc::SYS_brk, cur) as u64 == cur, "brk shrink");
        say(b"done\n");
        wait_eof();
    }
}

fn hog(step_kib: u64) -> ! {
    let step = step_kib * 1024;
    loop {
        // SAFETY: fresh anonymous mapping, touched within its length.
        unsafe {
            let p = anon(step) as *mut u8;
            for off in (0..step).step_by(4096) {
                *p.add(off as usize) = 1;
            }
        }
    }
}

/// Maps and touches `mib` MiB, says `ready`, then holds it until stdin closes.
fn fill(mib: u64, hold: bool) {
    // SAFETY: fresh anonymous mapping, touched within its length.
    unsafe {
        let len = mib << 20;
        let p = anon(len) as *mut u8;
        for off in (0..len).step_by(4096) {
            *p.add(off as usize) = 1;
        }
    }
    say(b"ready\n");
    if hold {
        wait_eof();
    }
}

/// Grows by `step_kib` every 100 ms up to `max_mib`, then holds until stdin closes.
fn grow(step_kib: u64, max_mib: u64) {
    say(b"ready\n");
    let mut total = 0;
    while total < max_mib << 20 {
        // SAFETY: fresh anonymous mapping, touched within its length.
        unsafe {
            let p = anon(step_kib << 10) as *mut u8;
            for off in (0..step_kib << 10).step_by(4096) {
                *p.add(off as usize) = 1;
            }
        }
        total += step_kib << 10;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    wait_eof();
}

/// Alternates between holding `high` and `low` MiB every `ms` for `seconds`, then frees it.
fn hover(low: u64, high: u64, ms: u64, seconds: u64) {
    let (low, high) = ((low << 20) as usize, (high << 20) as usize);
    // SAFETY: a fresh anonymous mapping, used within its length below.
    let p = unsafe { anon(high as u64) } as *mut u8;
    let touch = |from: usize, to: usize| {
        for off in (from..to).step_by(4096) {
            // SAFETY: within the mapping of `high` bytes.
            unsafe { *p.add(off) = 1 };
        }
    };
    let drop_from = |from: usize| {
        // SAFETY: a range within the mapping: its pages are freed, the mapping stays.
        check(unsafe { libc::madvise(p.add(from).cast(), high - from, libc::MADV_DONTNEED) } == 0, "madvise");
    };
    touch(0, low);
    say(b"ready\n");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::time::Instant::now() < end {
        touch(low, high);
        std::thread::sleep(std::time::Duration::from_millis(ms));
        drop_from(low);
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    drop_from(0);
    say(b"calm\n");
    wait_eof();
}

/// The median of per-batch times, in ns per operation: robust against the odd batch that a
/// host hiccup slowed down, which a plain mean over one long run is not.
fn median_per_op(mut batches: Vec<f64>) -> f64 {
    batches.sort_by(|a, b| a.partial_cmp(b).unwrap());
    batches[batches.len() / 2]
}

/// Nanoseconds per page fault: each round maps MIB MiB, touches every 4 KiB page (timed) and
/// unmaps it (not timed).
fn bench_faults(mib: u64, rounds: u64) -> f64 {
    let len = mib << 20;
    let mut batches = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        // SAFETY: a fresh anonymous mapping, touched within its length, then unmapped.
        unsafe {
            let p = anon(len) as *mut u8;
            // 4 KiB faults on every kernel, whatever its transparent huge page setting.
            check(libc::madvise(p.cast(), len as usize, libc::MADV_NOHUGEPAGE) == 0, "madvise");
            let t = std::time::Instant::now();
            for off in (0..len).step_by(4096) {
                std::ptr::write_volatile(p.add(off as usize), 1);
            }
            batches.push(t.elapsed().as_nanos() as f64 / (len / 4096) as f64);
            check(libc::munmap(p.cast(), len as usize) == 0, "munmap");
        }
    }
    median_per_op(batches)
}

const BATCH: u64 = 1000;

fn bench_mmap(n: u64) -> f64 {
    let batches = (0..n.div_ceil(BATCH))
        .map(|_| {
            let t = std::time::Instant::now();
            for _ in 0..BATCH {
                // SAFETY: map and unmap a fresh anonymous region, never touched.
                unsafe {
                    let p = anon(64 << 10);
                    check(libc::munmap(p, 64 << 10) == 0, "munmap");
                }
            }
            t.elapsed().as_nanos() as f64 / BATCH as f64
        })
        .collect();
    median_per_op(batches)
}

fn bench_getppid(n: u64) -> f64 {
    let per = 10 * BATCH;
    let batches = (0..n.div_ceil(per))
        .map(|_| {
            let t = std::time::Instant::now();
            for _ in 0..per {
                // SAFETY: getppid has no arguments and no side effects.
                std::hint::black_box(unsafe { libc::syscall(libc::SYS_getppid) });
            }
            t.elapsed().as_nanos() as f64 / per as f64
        })
        .collect();
    median_per_op(batches)
}

fn brk_exec(mib: u64, rest: &[String]) -> ! {
    // SAFETY: raw brk calls and an exec of this same binary with valid C strings.
    unsafe {
        let base = libc::syscall(libc::SYS_brk, 0usize) as u64;
        check(libc::syscall(libc::SYS_brk, base + (mib << 20)) as u64 == base + (mib << 20), "brk grow");
        let exe = CString::new("/proc/self/exe").unwrap();
        let argv: Vec<CString> =
            std::iter::once("memwatch-workload".to_string()).chain(rest.iter().cloned()).map(|a| CString::new(a).unwrap()).collect();
        let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        ptrs.push(ptr::null());
        libc::execv(exe.as_ptr(), ptrs.as_ptr());
    }
    check(false, "exec");
    unreachable!()
}

fn breathe(kib: u64, ms: u64) -> ! {
    let len = (kib << 10) as usize;
    loop {
        // SAFETY: a fresh anonymous mapping, touched within its length, then unmapped.
        unsafe {
            let p = anon(len as u64) as *mut u8;
            for off in (0..len).step_by(4096) {
                *p.add(off) = 1;
            }
            std::thread::sleep(std::time::Duration::from_millis(ms));
            check(libc::munmap(p.cast(), len) == 0, "munmap");
        }
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Bytes each churned cgroup's child touches.
const CHURN_TOUCH: usize = 64 * 1024;

fn churn(dir: &str, per_second: u64, seconds: u64, lifetime_ms: u64) {
    let start = std::time::Instant::now();
    let end = std::time::Duration::from_secs(seconds);
    let lifetime = std::time::Duration::from_millis(lifetime_ms);
    let mut live: std::collections::VecDeque<(std::time::Instant, String)> = std::collections::VecDeque::new();
    let (mut n, mut removed): (u64, u64) = (0, 0);
    let remove = |cg: &str| {
        // The cgroup may read as populated for a moment after its only task is reaped.
        let mut tries = 0;
        while std::fs::remove_dir(cg).is_err() {
            tries += 1;
            check(tries < 1000, "rmdir");
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
    };
    while start.elapsed() < end {
        while live.front().is_some_and(|(born, _)| born.elapsed() >= lifetime) {
            let (_, cg) = live.pop_front().unwrap();
            remove(&cg);
            removed += 1;
            if removed % 100 == 0 {
                say(format!("at {removed}\n").as_bytes());
            }
        }
        // Pace: cgroup n is due at n / per_second seconds.
        let due = std::time::Duration::from_micros(n * 1_000_000 / per_second);
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
        let cg = format!("{dir}/c{n}");
        check(std::fs::create_dir(&cg).is_ok(), "mkdir");
        // A limit of its own, as a container has (so the daemon exports it).
        let limit = (64u64 << 20).to_string();
        check(
            std::fs::write(format!("{cg}/memory.max"), &limit).is_ok()
                || std::fs::write(format!("{cg}/memory.limit_in_bytes"), &limit).is_ok(),
            "limit",
        );
        let procs = CString::new(format!("{cg}/cgroup.procs")).unwrap();
        // SAFETY: this program is single-threaded, so the child may run anything; it moves
        // itself into the cgroup, touches fresh memory and exits without returning.
        unsafe {
            let pid = libc::fork();
            check(pid >= 0, "fork");
            if pid == 0 {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                if fd < 0 || libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    libc::_exit(2);
                }
                let p = anon(CHURN_TOUCH as u64) as *mut u8;
                for off in (0..CHURN_TOUCH).step_by(4096) {
                    *p.add(off) = 1;
                }
                libc::_exit(0);
            }
            let mut status = 0;
            check(libc::waitpid(pid, &mut status, 0) == pid, "waitpid");
            check(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child in its cgroup");
        }
        live.push_back((std::time::Instant::now(), cg));
        n += 1;
    }
    for (_, cg) in live {
        remove(&cg);
    }
    say(format!("done {n}\n").as_bytes());
}

fn swarm(n: u64) {
    say(b"start\n");
    wait_line();
    let mut ready = [0i32; 2];
    // SAFETY: a pipe into a two-element array.
    check(unsafe { libc::pipe(ready.as_mut_ptr()) } == 0, "pipe");
    for _ in 0..n {
        // SAFETY: single-threaded: the child maps, touches, says so, waits for stdin to close
        // and exits without returning.
        unsafe {
            let pid = libc::fork();
            check(pid >= 0, "fork");
            if pid == 0 {
                let p = anon(CHURN_TOUCH as u64) as *mut u8;
                for off in (0..CHURN_TOUCH).step_by(4096) {
                    *p.add(off) = 1;
                }
                libc::write(ready[1], b"x".as_ptr().cast(), 1);
                wait_eof();
                libc::_exit(0);
            }
        }
    }
    let mut got = 0u64;
    let mut buf = [0u8; 4096];
    while got < n {
        // SAFETY: reading into a stack buffer.
        let r = unsafe { libc::read(ready[0], buf.as_mut_ptr().cast(), buf.len()) };
        check(r > 0, "read the children's readiness");
        got += r as u64;
    }
    say(b"ready\n");
    wait_eof();
    // SAFETY: reaping our own children.
    while unsafe { libc::wait(ptr::null_mut()) } > 0 {}
}

fn num(args: &[String], i: usize, usage: &str) -> u64 {
    args.get(i).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("usage: {usage}"))
}

fn main() {
    // JVM-style options before the mode are the stand-in's command line (`java -Xmx96m
    // jvm-standin FILE`): memwatch reads them, the workload ignores them.
    let args: Vec<String> = std::env::args().enumerate().filter(|(i, a)| *i == 0 || !a.starts_with("-X")).map(|(_, a)| a).collect();
    match args.get(1).map(String::as_str) {
        Some("ops") => ops(args.get(2).expect("ops FILE")),
        Some("hog") => hog(args.get(2).map(|s| s.parse().expect("STEP_KIB")).unwrap_or(1024)),
        Some("sleep") => wait_eof(),
        Some("fill") => fill(args.get(2).and_then(|s| s.parse().ok()).expect("fill MIB"), true),
        Some("fill-exit") => fill(args.get(2).and_then(|s| s.parse().ok()).expect("fill-exit MIB"), false),
        Some("grow") => grow(
            args.get(2).and_then(|s| s.parse().ok()).expect("grow STEP_KIB MAX_MIB"),
            args.get(3).and_then(|s| s.parse().ok()).expect("grow STEP_KIB MAX_MIB"),
        ),
        Some("swarm") => swarm(num(&args, 2, "swarm N")),
        Some("churn") => churn(
            args.get(2).expect("churn DIR PER_SECOND SECONDS LIFETIME_MS"),
            num(&args, 3, "churn DIR PER_SECOND SECONDS LIFETIME_MS"),
            num(&args, 4, "churn DIR PER_SECOND SECONDS LIFETIME_MS"),
            num(&args, 5, "churn DIR PER_SECOND SECONDS LIFETIME_MS"),
        ),
        Some("hover") => hover(
            num(&args, 2, "hover LOW_MIB HIGH_MIB MS SECONDS"),
            num(&args, 3, "hover LOW_MIB HIGH_MIB MS SECONDS"),
            num(&args, 4, "hover LOW_MIB HIGH_MIB MS SECONDS"),
            num(&args, 5, "hover LOW_MIB HIGH_MIB MS SECONDS"),
        ),
        Some("breathe") => breathe(num(&args, 2, "breathe KIB MS"), num(&args, 3, "breathe KIB MS")),
        Some("jvm-standin") => jvm_standin(args.get(2).expect("jvm-standin FILE")),
        Some("brk-exec") => brk_exec(num(&args, 2, "brk-exec MIB MODE ARGS..."), &args[3..]),
        Some("bench-faults") => {
            println!("{:.1}", bench_faults(num(&args, 2, "bench-faults MIB ROUNDS"), num(&args, 3, "bench-faults MIB ROUNDS")))
        }
        Some("bench-mmap") => println!("{:.1}", bench_mmap(num(&args, 2, "bench-mmap N"))),
        Some("bench-getppid") => println!("{:.2}", bench_getppid(num(&args, 2, "bench-getppid N"))),
        _ => {
            eprintln!("usage: memwatch-workload ops FILE | hog [STEP_KIB] | sleep | fill MIB | fill-exit MIB | grow STEP_KIB MAX_MIB");
            std::process::exit(2);
        }
    }
}
