//! A corpus of real software memwatch did not write, from Debian's packages, each in a real
//! memory cgroup: services left calm under roomy limits (they must get no warning), and programs
//! made to run out of memory the way they do in production (each must get the right finding).
//! Shared by the integration test (`integration/realworld.rs`, which asserts each finding) and
//! the bench (`benches/warnings.rs`, which prints the warnings' precision and recall over it).
//!
//! Included by path into both: `super::cgroup` is the test cgroup helper there.
#![allow(dead_code)]

use std::{
    io::Write,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::cgroup::TestCgroup;

pub(crate) const MIB: u64 = 1 << 20;

/// How long calm services are left alone: past their start-up and a whole trend span after it,
/// with room for the slowest start here (a JVM on two busy cores).
pub(crate) const CALM_FOR: Duration = Duration::from_secs(80);

/// A free loopback port.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A program running for a case, killed when dropped (with its temporary files).
pub(crate) struct Running {
    pub(crate) name: &'static str,
    pub(crate) cgroup: TestCgroup,
    pub(crate) children: Vec<Child>,
    pub(crate) dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn spawn(mut cmd: Command, cg: &TestCgroup) -> Child {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    cg.join_before_exec(&mut cmd);
    cmd.spawn().unwrap_or_else(|e| panic!("{:?}: {e}", cmd.get_program()))
}

/// `cmd` run as `user` (its own uid and groups; setpriv execs, so the program stays the
/// process the test started).
pub(crate) fn as_user(user: &str, program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid", user, "--regid", user, "--init-groups", "--"]).arg(program);
    c
}

/// A directory `user` owns, inside `dir`.
pub(crate) fn owned_dir(dir: &Path, name: &str, user: &str) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let st = Command::new("chown").arg(user).arg(&d).status().unwrap();
    assert!(st.success());
    d
}

pub(crate) fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// The calm services: each started in a cgroup of its own with a roomy limit.
pub(crate) const CALM: &[&str] = &["prometheus", "postgres", "redis", "memcached", "node", "python-http", "jshell"];

/// Starts the calm service `name` in a new test cgroup.
pub(crate) fn start_calm(name: &'static str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let (limit, cmds): (u64, Vec<Command>) = match name {
        // Debian's Prometheus (Go), scraping itself every second.
        "prometheus" => {
            let port = free_port();
            let conf = dir.path().join("prometheus.yml");
            std::fs::write(
                &conf,
                format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"),
            )
            .unwrap();
            let mut c = Command::new("prometheus");
            c.arg(format!("--config.file={}", conf.display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"));
            (512 * MIB, vec![c])
        }
        // PostgreSQL 15: a cluster of its own, on a socket of its own.
        "postgres" => {
            let data = pg_cluster(dir.path());
            let mut c = as_user("postgres", PG_POSTGRES);
            c.arg("-D").arg(data.join("data")).arg("-k").arg(&data).args(["-p", &free_port().to_string(), "-c", "listen_addresses="]);
            (512 * MIB, vec![c])
        }
        "redis" => {
            let mut c = Command::new("redis-server");
            c.args(["--port", &free_port().to_string(), "--save", "", "--appendonly", "no", "--dir"]).arg(dir.path());
            (256 * MIB, vec![c])
        }
        "memcached" => {
            let mut c = Command::new("memcached");
            c.args(["-m", "64", "-U", "0", "-l", "127.0.0.1", "-u", "nobody", "-p", &free_port().to_string()]);
            (256 * MIB, vec![c])
        }
        // Debian's Node.js serving HTTP.
        "node" => {
            let mut c = Command::new("node");
            c.args(["-e", &format!("require('http').createServer((q, s) => s.end('ok')).listen({}, '127.0.0.1')", free_port())]);
            (256 * MIB, vec![c])
        }
        "python-http" => {
            let mut c = Command::new("python3");
            c.args(["-m", "http.server", "--bind", "127.0.0.1", &free_port().to_string()]).current_dir(dir.path());
            (128 * MIB, vec![c])
        }
        // OpenJDK's jshell: a JDK tool that runs a second JVM for its snippets; it waits on
        // its input (a pipe kept open).
        "jshell" => {
            let mut c = Command::new("jshell");
            c.env("HOME", dir.path());
            (512 * MIB, vec![c])
        }
        other => panic!("no calm case {other}"),
    };
    let cgroup = TestCgroup::new(&format!("rw-calm-{name}"), limit);
    let mut children = Vec::new();
    for mut c in cmds {
        if name == "jshell" {
            c.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null());
            cgroup.join_before_exec(&mut c);
            children.push(c.spawn().unwrap());
        } else {
            children.push(spawn(c, &cgroup));
        }
    }
    Running { name, cgroup, children, dir }
}

/// A new PostgreSQL cluster in `dir`/pg/data (the postgres user's), its socket directory
/// `dir`/pg: that directory.
pub(crate) fn pg_cluster(dir: &Path) -> PathBuf {
    let data = owned_dir(dir, "pg", "postgres");
    let st = as_user("postgres", PG_INITDB)
        .arg("-D")
        .arg(data.join("data"))
        .args(["-A", "trust", "-U", "postgres"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "initdb");
    data
}

pub(crate) const PG_INITDB: &str = "/usr/lib/postgresql/15/bin/initdb";
pub(crate) const PG_POSTGRES: &str = "/usr/lib/postgresql/15/bin/postgres";

/// The cases that run out of memory.
pub(crate) const KILLS: &[&str] =
    &["go-promtool", "jvm-javac", "node", "postgres-sort", "redis", "tmpfs-dd", "grower-beside-steady", "creep"];

/// What a killing case left: the processes of interest, by role.
pub(crate) struct Killed {
    pub(crate) run: Running,
    /// The process expected to be killed, where the case knows it.
    pub(crate) victim: Option<u32>,
    /// Processes expected to survive the kill (PostgreSQL's postmaster).
    pub(crate) survivors: Vec<u32>,
    /// The process that grew, where the case has one apart from the victim.
    pub(crate) grower: Option<u32>,
    /// Files it left charged to its cgroup, removed when the case is dropped (tmpfs).
    pub(crate) files: Vec<PathBuf>,
}

impl Drop for Killed {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Waits for `child` to end; true when it was killed (SIGKILL).
pub(crate) fn killed(child: &mut Child, timeout: Duration) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.signal() == Some(libc::SIGKILL);
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Waits up to `timeout` for the kernel to kill `child`, the case's one process and so its
/// victim.
fn its_kill(name: &'static str, cgroup: TestCgroup, dir: tempfile::TempDir, mut child: Child, timeout: Duration) -> Killed {
    let pid = child.id();
    assert!(killed(&mut child, timeout), "{name}: pid {pid} was not OOM-killed");
    Killed { run: Running { name, cgroup, children: vec![child], dir }, victim: Some(pid), survivors: vec![], grower: None, files: vec![] }
}

/// Runs the killing case `name` until the kernel kills what it grows.
pub(crate) fn run_kill(name: &'static str) -> Killed {
    let dir = tempfile::tempdir().unwrap();
    let new = |limit| TestCgroup::new(&format!("rw-kill-{name}"), limit);
    match name {
        // Debian's promtool (Go) reading a 100 MB exposition: its parser keeps every family.
        "go-promtool" => {
            let cgroup = new(64 * MIB);
            let big = dir.path().join("big.prom");
            let mut f = std::io::BufWriter::new(std::fs::File::create(&big).unwrap());
            writeln!(f, "# HELP x_total a counter\n# TYPE x_total counter").unwrap();
            for i in 0..2_000_000 {
                writeln!(f, "x_total{{a=\"{i}\",b=\"label-value-{i}\"}} {i}").unwrap();
            }
            drop(f);
            let mut c = Command::new("promtool");
            c.args(["check", "metrics"])
                .stdin(std::fs::File::open(&big).unwrap())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .env_remove("GOMEMLIMIT");
            // Its input on stdin: joined by hand, not by `spawn` (which gives it none).
            cgroup.join_before_exec(&mut c);
            let child = c.spawn().unwrap();
            its_kill(name, cgroup, dir, child, Duration::from_secs(60))
        }
        // OpenJDK's javac with its JVM's options given as a JDK tool takes them: a 1 GiB heap,
        // 512 MiB of it touched at start, in 192 MiB.
        "jvm-javac" => {
            let cgroup = new(192 * MIB);
            std::fs::write(dir.path().join("A.java"), "class A {}\n").unwrap();
            let mut c = Command::new("javac");
            c.args(["-J-Xmx1g", "-J-Xms512m", "-J-XX:+AlwaysPreTouch", "-d"]).arg(dir.path()).arg(dir.path().join("A.java"));
            let child = spawn(c, &cgroup);
            let pid = child.id();
            let mut k = its_kill(name, cgroup, dir, child, Duration::from_secs(60));
            // HotSpot's performance-data file, left behind by the kill (memwatch leaves it).
            k.files = std::fs::read_dir("/tmp")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join(pid.to_string()))
                .filter(|p| p.exists())
                .collect();
            k
        }
        // Debian's Node.js keeping objects until killed.
        "node" => {
            let cgroup = new(128 * MIB);
            let mut c = Command::new("node");
            c.args([
                "-e",
                "const a = []; setInterval(() => { for (let i = 0; i < 50000; i++) a.push({ i, s: 'x'.repeat(40) + i }); }, 20);",
            ]);
            let child = spawn(c, &cgroup);
            its_kill(name, cgroup, dir, child, Duration::from_secs(120))
        }
        // PostgreSQL with work_mem=2GB sorting 5 million rows in memory, in 192 MiB: the
        // backend is killed, the postmaster lives and resets every session.
        "postgres-sort" => {
            let cgroup = new(192 * MIB);
            let data = pg_cluster(dir.path());
            let port = free_port().to_string();
            let mut c = as_user("postgres", PG_POSTGRES);
            c.arg("-D").arg(data.join("data")).arg("-k").arg(&data).args([
                "-p",
                &port,
                "-c",
                "listen_addresses=",
                "-c",
                "work_mem=2GB",
                "-c",
                "shared_buffers=32MB",
            ]);
            let postmaster = spawn(c, &cgroup);
            let pm = postmaster.id();
            let psql =
                |sql: &str| Command::new("psql").arg("-h").arg(&data).args(["-p", &port, "-U", "postgres", "-Atc", sql]).output().unwrap();
            wait_for("postgres accepting connections", Duration::from_secs(60), || psql("select 1").status.success());
            let out = psql("select count(*) from (select g from generate_series(1, 5000000) g order by md5(g::text)) s");
            assert!(!out.status.success(), "the sort survived: {}", String::from_utf8_lossy(&out.stdout));
            Killed {
                run: Running { name, cgroup, children: vec![postmaster], dir },
                victim: None,
                survivors: vec![pm],
                grower: None,
                files: vec![],
            }
        }
        // Redis without maxmemory, written to until killed.
        "redis" => {
            let cgroup = new(96 * MIB);
            let port = free_port().to_string();
            let mut c = Command::new("redis-server");
            c.args(["--port", &port, "--save", "", "--appendonly", "no", "--enable-debug-command", "local", "--dir"]).arg(dir.path());
            let child = spawn(c, &cgroup);
            wait_for("redis", Duration::from_secs(20), || {
                Command::new("redis-cli").args(["-p", &port, "ping"]).output().is_ok_and(|o| o.stdout.starts_with(b"PONG"))
            });
            let _ = Command::new("redis-cli").args(["-p", &port, "DEBUG", "POPULATE", "3000000", "key", "32"]).output();
            its_kill(name, cgroup, dir, child, Duration::from_secs(30))
        }
        // dd filling a file in /dev/shm: tmpfs is charged to the writer's cgroup, and stays
        // charged after the writer is killed.
        "tmpfs-dd" => {
            let cgroup = new(64 * MIB);
            let file = PathBuf::from(format!("/dev/shm/memwatch-test-rw-{}", std::process::id()));
            let mut c = Command::new("dd");
            c.args(["if=/dev/zero", "bs=1M", "count=256"]).arg(format!("of={}", file.display()));
            let child = spawn(c, &cgroup);
            let mut k = its_kill(name, cgroup, dir, child, Duration::from_secs(30));
            k.files = vec![file];
            k
        }
        // A process that took 150 MiB at its start and held still, then another that grows
        // beside it: the kernel kills the larger, steady one.
        "grower-beside-steady" => {
            let cgroup = new(256 * MIB);
            let mut steady = Command::new("python3");
            steady.args(["-c", "import time\nb = bytearray(150 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\ntime.sleep(600)"]);
            let mut steady = spawn(steady, &cgroup);
            let victim = steady.id();
            // Long enough to be seen still before the other grows.
            thread::sleep(Duration::from_secs(8));
            let mut grower = Command::new("python3");
            grower.args(["-c", "import time\nk = []\nwhile True:\n    b = bytearray(4 << 20)\n    for i in range(0, len(b), 4096): b[i] = 1\n    k.append(b)\n    time.sleep(0.1)"]);
            let mut g = spawn(grower, &cgroup);
            let gpid = g.id();
            assert!(killed(&mut steady, Duration::from_secs(60)), "the steady one was not killed");
            let _ = g.kill();
            Killed {
                run: Running { name, cgroup, children: vec![steady, g], dir },
                victim: Some(victim),
                survivors: vec![],
                grower: Some(gpid),
                files: vec![],
            }
        }
        // A leak creeping at about 2.5 MiB/s toward 256 MiB (python3 keeping what it reads).
        "creep" => {
            let cgroup = new(256 * MIB);
            let mut c = Command::new("python3");
            c.args(["-c", "import time\nk = []\nwhile True:\n    b = bytearray(250 << 10)\n    for i in range(0, len(b), 4096): b[i] = 1\n    k.append(b)\n    time.sleep(0.1)"]);
            let child = spawn(c, &cgroup);
            its_kill(name, cgroup, dir, child, Duration::from_secs(240))
        }
        other => panic!("no killing case {other}"),
    }
}

/// The daemon's `--cgroups.include` for this corpus's cgroups (of this process).
pub(crate) fn include() -> String {
    format!("/memwatch-test-rw-.*-{}", std::process::id())
}
