//! The data stores' advice on Debian's own servers (`redis-server`, PostgreSQL 15, MariaDB,
//! memcached), each in a real memory cgroup: run out of memory the way it happens in
//! production, each kill gets its advice with a number; rerun with that number, each survives
//! the same load (Redis and memcached evicting, PostgreSQL spilling its sort to disk, MariaDB's
//! buffer pool staying within the limit). A password planted in each one's configuration
//! appears in no output of memwatch: events, journal, series, log or `memwatch explain`.
use std::{
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use memwatch::oom::{Event, EventKind, event::ReasonKind};

use crate::{
    corpus::{self, MIB},
    util::{
        self,
        cgroup::TestCgroup,
        daemon::Daemon,
        oom::{reason, warm},
    },
};

const PLANTED: &str = "planted-hunter2-secret";

/// A daemon watching the corpus's cgroups alone, journaling in `state`.
fn daemon(state: &Path) -> Daemon {
    Daemon::start(&["--interval", "500ms", "--cgroups.include", &corpus::include(), "--state-dir", state.to_str().unwrap()])
}

/// The kill event in `cg` once the daemon has it.
fn kill_event(d: &Daemon, cg: &TestCgroup, what: &str) -> Event {
    let is_kill = |e: &Event| e.kind == EventKind::OomKill && e.victim.is_some();
    d.wait_until(&format!("{what}'s kill event"), Duration::from_secs(20), || d.events_in(cg).iter().any(is_kill));
    let e = d.events_in(cg).into_iter().find(is_kill).unwrap();
    eprintln!("{what}: {}", e.explanation.iter().map(|r| r.text.as_str()).collect::<Vec<_>>().join("\n  "));
    e
}

/// The number after `key≈` in `text` (`maxmemory≈67mb` → `67mb`).
fn advised<'a>(text: &'a str, key: &str) -> &'a str {
    let at = text.find(&format!("{key}≈")).unwrap_or_else(|| panic!("no {key}≈ in {text}")) + key.len() + "≈".len();
    text[at..].split(|c: char| c.is_whitespace() || c == ',' || c == ')').next().unwrap()
}

/// The planted password appears nowhere memwatch writes or serves.
fn planted_nowhere(d: &Daemon, state: &Path, cg: &TestCgroup) {
    let (_, events) = d.get("/api/v1/events").unwrap();
    assert!(!events.contains(PLANTED), "in the events");
    assert!(!d.metrics().text.contains(PLANTED), "in the series");
    assert!(!d.log().contains(PLANTED), "in the log");
    for f in std::fs::read_dir(state).unwrap().flatten() {
        let bytes = std::fs::read(f.path()).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains(PLANTED), "in {}", f.path().display());
    }
    if !cg.pids().is_empty() {
        let out = Command::new(util::memwatch_bin()).args(["explain", &cg.label(), "--json"]).output().unwrap();
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!all.contains(PLANTED), "in memwatch explain");
    }
}

/// What `memwatch explain` says of the container's data store.
fn explained(cg: &TestCgroup) -> String {
    let out = Command::new(util::memwatch_bin()).args(["explain", &cg.label()]).output().unwrap();
    assert!(out.status.success(), "explain: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A RESP stream of `n` SETs of `size`-byte values, after an AUTH.
fn redis_sets(n: usize, size: usize) -> Vec<u8> {
    let mut out = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{PLANTED}\r\n", PLANTED.len()).into_bytes();
    let v = "v".repeat(size);
    for i in 0..n {
        let k = format!("key:{i:08}");
        out.extend_from_slice(format!("*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${size}\r\n{v}\r\n", k.len()).as_bytes());
    }
    out
}

#[test]
fn redis_without_maxmemory_gets_a_number_and_evicts_with_it() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = daemon(state.path());
    warm({
        let mut c = Command::new("redis-server");
        c.arg("--version");
        c
    });
    let load = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(load.path(), redis_sets(600_000, 200)).unwrap();
    let run = |cg: &TestCgroup, dir: &Path, extra: &[&str]| {
        let port = corpus::free_port().to_string();
        let conf = dir.join("redis.conf");
        std::fs::write(
            &conf,
            format!("port {port}\nbind 127.0.0.1\nsave \"\"\nappendonly no\nrequirepass \"{PLANTED}\"\ndir {}\n", dir.display()),
        )
        .unwrap();
        let mut c = Command::new("redis-server");
        c.arg(&conf).args(extra);
        let child = corpus::spawn(c, cg);
        corpus::wait_for("redis", Duration::from_secs(20), || {
            Command::new("redis-cli")
                .args(["-p", &port, "--no-auth-warning", "-a", PLANTED, "ping"])
                .output()
                .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
        });
        (child, port)
    };
    let pipe = |port: &str| {
        Command::new("redis-cli")
            .args(["-p", port, "--pipe"])
            .stdin(std::fs::File::open(load.path()).unwrap())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    };

    // Without maxmemory, in 96 MiB: killed.
    let dir = tempfile::tempdir().unwrap();
    let cg = TestCgroup::new("rw-ds-redis", 96 * MIB);
    let (mut child, port) = run(&cg, dir.path(), &[]);
    d.wait_until("the Redis setting's series", Duration::from_secs(15), || {
        d.metrics()
            .get_plain("memwatch_container_app_setting_bytes", &[("cgroup", &cg.label()), ("app", "redis"), ("setting", "maxmemory")])
            == Some(0.0)
    });
    // A one-shot explain sees Redis's title only: it says what is not known.
    let ex = explained(&cg);
    assert!(ex.contains("It is Redis; its command line is now its title"), "{ex}");
    planted_nowhere(&d, state.path(), &cg);
    let _ = pipe(&port);
    assert!(corpus::killed(&mut child, Duration::from_secs(60)), "redis was not OOM-killed");
    let e = kill_event(&d, &cg, "redis");
    let t = reason(&e, ReasonKind::RedisMaxmemory).unwrap_or_else(|| panic!("{:#?}", e.explanation));
    assert!(t.contains("maxmemory unset") && t.contains("allkeys-lru"), "{t}");
    let max = advised(t, "maxmemory").to_string();
    planted_nowhere(&d, state.path(), &cg);

    // With the advice: it evicts and lives.
    let dir = tempfile::tempdir().unwrap();
    let cg2 = TestCgroup::new("rw-ds-redis2", 96 * MIB);
    let (mut child, port) = run(&cg2, dir.path(), &["--maxmemory", &max, "--maxmemory-policy", "allkeys-lru"]);
    assert!(pipe(&port).unwrap().success(), "the load");
    assert!(child.try_wait().unwrap().is_none(), "redis died with maxmemory {max}");
    assert_eq!(cg2.oom_kills(), 0);
    let info = Command::new("redis-cli").args(["-p", &port, "--no-auth-warning", "-a", PLANTED, "info", "stats"]).output().unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    let evicted: u64 = info.lines().find_map(|l| l.strip_prefix("evicted_keys:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    eprintln!("redis with maxmemory {max}: {evicted} keys evicted");
    assert!(evicted > 0, "{info}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn postgres_with_a_huge_work_mem_gets_a_number_and_spills_with_it() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = daemon(state.path());
    let run = |cg: &TestCgroup, dir: &Path, extra: &[&str]| {
        let data = corpus::pg_cluster(dir);
        // The settings in the configuration files, as a cluster has them; a password beside them.
        let mut conf = std::fs::OpenOptions::new().append(true).open(data.join("data/postgresql.conf")).unwrap();
        writeln!(conf, "shared_buffers = 32MB\nprimary_conninfo = 'host=db.invalid user=replica password={PLANTED}'").unwrap();
        std::fs::write(data.join("data/postgresql.auto.conf"), "work_mem = '2GB'\n").unwrap();
        let port = corpus::free_port().to_string();
        let mut c = corpus::as_user("postgres", corpus::PG_POSTGRES);
        c.arg("-D").arg(data.join("data")).arg("-k").arg(&data).args(["-p", &port, "-c", "listen_addresses="]).args(extra);
        let child = corpus::spawn(c, cg);
        let psql =
            move |sql: &str| Command::new("psql").arg("-h").arg(&data).args(["-p", &port, "-U", "postgres", "-Atc", sql]).output().unwrap();
        corpus::wait_for("postgres accepting connections", Duration::from_secs(60), || psql("select 1").status.success());
        (child, psql)
    };
    const SORT: &str = "select count(*) from (select g from generate_series(1, 5000000) g order by md5(g::text)) s";

    let dir = tempfile::tempdir().unwrap();
    let cg = TestCgroup::new("rw-ds-pg", 192 * MIB);
    let (postmaster, psql) = run(&cg, dir.path(), &[]);
    let label = cg.label();
    d.wait_until("the PostgreSQL settings' series", Duration::from_secs(15), || {
        d.metrics().get_plain("memwatch_container_app_setting_bytes", &[("cgroup", &label), ("app", "postgres"), ("setting", "work_mem")])
            == Some((2u64 << 30) as f64)
    });
    let ex = explained(&cg);
    assert!(ex.contains("It is PostgreSQL: shared_buffers 32.0 MiB, work_mem 2.0 GiB"), "{ex}");
    let out = psql(SORT);
    assert!(!out.status.success(), "the sort survived: {}", String::from_utf8_lossy(&out.stdout));
    let e = kill_event(&d, &cg, "postgres");
    assert_ne!(e.victim.as_ref().unwrap().pid, postmaster.id(), "a backend was killed");
    let t = reason(&e, ReasonKind::PostgresBackendKilled).unwrap_or_else(|| panic!("{:#?}", e.explanation));
    assert!(t.contains(&format!("postgres (pid {})", postmaster.id())), "{t}");
    let t = reason(&e, ReasonKind::PostgresWorkMem).unwrap_or_else(|| panic!("{:#?}", e.explanation));
    assert!(t.contains("a single sort or hash may take 4.0 GiB"), "{t}");
    let work_mem = advised(t, "work_mem").to_string();
    planted_nowhere(&d, state.path(), &cg);
    let mut postmaster = postmaster;
    let _ = postmaster.kill();
    let _ = postmaster.wait();
    drop(psql);

    // With the advice: the same sort spills to disk and succeeds.
    let dir = tempfile::tempdir().unwrap();
    let cg2 = TestCgroup::new("rw-ds-pg2", 192 * MIB);
    let (mut pm, psql) = run(&cg2, dir.path(), &["-c", &format!("work_mem={work_mem}")]);
    let out = psql(SORT);
    assert!(out.status.success(), "the sort with work_mem={work_mem}: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5000000");
    assert_eq!(cg2.oom_kills(), 0);
    eprintln!("postgres with work_mem={work_mem}: the sort spilled and finished");
    let _ = pm.kill();
    let _ = pm.wait();
}

#[test]
fn mariadb_with_a_buffer_pool_above_the_limit_gets_a_number_and_fits_with_it() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = daemon(state.path());
    let run = |cg: &TestCgroup, dir: &Path, pool: &str| {
        let run = corpus::owned_dir(dir, "run", "mysql");
        let data = corpus::owned_dir(dir, "data", "mysql");
        let sock = run.join("mysqld.sock");
        let cnf = dir.join("my.cnf");
        std::fs::write(
            &cnf,
            format!(
                "[mysqld]\ndatadir = {}\nsocket = {}\npid-file = {}\nskip-networking\nuser = mysql\n\
                 innodb_buffer_pool_size = {pool}\ninnodb_log_file_size = 16M\n\n[client]\npassword = {PLANTED}\n",
                data.display(),
                sock.display(),
                run.join("mysqld.pid").display()
            ),
        )
        .unwrap();
        let st = Command::new("mariadb-install-db")
            .arg(format!("--defaults-file={}", cnf.display()))
            .args(["--skip-test-db", "--auth-root-authentication-method=socket"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "mariadb-install-db");
        let mut c = Command::new("mariadbd");
        c.arg(format!("--defaults-file={}", cnf.display()));
        let child = corpus::spawn(c, cg);
        let sql =
            move |q: &str| Command::new("mariadb").arg(format!("--socket={}", sock.display())).args(["-uroot", "-e", q]).output().unwrap();
        corpus::wait_for("mariadb accepting connections", Duration::from_secs(60), || sql("select 1").status.success());
        (child, sql)
    };
    const LOAD: &str = "create database t; use t; create table r (id int primary key auto_increment, b char(255)) engine=innodb; \
                        insert into r (b) select repeat('x', 255) from seq_1_to_1200000;";

    let dir = tempfile::tempdir().unwrap();
    let cg = TestCgroup::new("rw-ds-mariadb", 256 * MIB);
    let (mut server, sql) = run(&cg, dir.path(), "1G");
    let label = cg.label();
    d.wait_until("the MariaDB settings' series", Duration::from_secs(15), || {
        d.metrics().get_plain(
            "memwatch_container_app_setting_bytes",
            &[("cgroup", &label), ("app", "mysql"), ("setting", "innodb_buffer_pool_size")],
        ) == Some((1u64 << 30) as f64)
    });
    assert!(explained(&cg).contains("It is MariaDB: innodb_buffer_pool_size 1.0 GiB"));
    let _ = sql(LOAD);
    assert!(corpus::killed(&mut server, Duration::from_secs(120)), "mariadbd was not OOM-killed");
    let e = kill_event(&d, &cg, "mariadb");
    let t = reason(&e, ReasonKind::MysqlBufferPool).unwrap_or_else(|| panic!("{:#?}", e.explanation));
    let pool = advised(t, "innodb_buffer_pool_size").to_string();
    assert_eq!(pool, "128M", "{t}");
    planted_nowhere(&d, state.path(), &cg);

    let dir = tempfile::tempdir().unwrap();
    let cg2 = TestCgroup::new("rw-ds-mariadb2", 256 * MIB);
    let (mut server, sql) = run(&cg2, dir.path(), &pool);
    let out = sql(LOAD);
    assert!(out.status.success(), "the load with a {pool} pool: {}", String::from_utf8_lossy(&out.stderr));
    assert!(server.try_wait().unwrap().is_none(), "mariadbd died with a {pool} pool");
    assert_eq!(cg2.oom_kills(), 0);
    eprintln!("mariadb with innodb_buffer_pool_size={pool}: 1.2 million rows loaded");
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn memcached_given_more_than_its_limit_gets_a_number_and_evicts_with_it() {
    util::require_root!();
    let _serial = util::serial();
    let state = tempfile::tempdir().unwrap();
    let d = daemon(state.path());
    let run = |cg: &TestCgroup, m: &str| {
        let port = corpus::free_port();
        let mut c = Command::new("memcached");
        c.args(["-m", m, "-U", "0", "-l", "127.0.0.1", "-u", "nobody", "-p", &port.to_string()]);
        // memcached reads no file of its own: the secret beside it is in its environment.
        c.env("MEMCACHED_SASL_PWDB_PASSWORD", PLANTED);
        let child = corpus::spawn(c, cg);
        corpus::wait_for("memcached", Duration::from_secs(20), || TcpStream::connect(("127.0.0.1", port)).is_ok());
        (child, port)
    };
    // 200,000 items of 1 KiB: 200 MiB of items, in 96 MiB.
    let fill = |port: u16| -> std::io::Result<()> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        let v = "m".repeat(1024);
        let mut batch = String::new();
        for i in 0..200_000 {
            batch.push_str(&format!("set k{i} 0 0 1024 noreply\r\n{v}\r\n"));
            if i % 1000 == 999 {
                s.write_all(batch.as_bytes())?;
                batch.clear();
            }
        }
        s.write_all(b"version\r\n")?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        Ok(())
    };

    let cg = TestCgroup::new("rw-ds-memcached", 96 * MIB);
    let (mut child, port) = run(&cg, "1024");
    let label = cg.label();
    d.wait_until("the memcached setting's series", Duration::from_secs(15), || {
        d.metrics()
            .get_plain("memwatch_container_app_setting_bytes", &[("cgroup", &label), ("app", "memcached"), ("setting", "memory_limit")])
            == Some((1u64 << 30) as f64)
    });
    let _ = fill(port);
    assert!(corpus::killed(&mut child, Duration::from_secs(60)), "memcached was not OOM-killed");
    let e = kill_event(&d, &cg, "memcached");
    let t = reason(&e, ReasonKind::MemcachedMemoryLimit).unwrap_or_else(|| panic!("{:#?}", e.explanation));
    let m = t.split("set -m ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or_else(|| panic!("{t}")).to_string();
    assert_eq!(m, "56", "{t}");
    planted_nowhere(&d, state.path(), &cg);

    let cg2 = TestCgroup::new("rw-ds-memcached2", 96 * MIB);
    let (mut child, port) = run(&cg2, &m);
    fill(port).unwrap();
    assert!(child.try_wait().unwrap().is_none(), "memcached died with -m {m}");
    assert_eq!(cg2.oom_kills(), 0);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"stats\r\n").unwrap();
    let evictions = BufReader::new(s)
        .lines()
        .map_while(Result::ok)
        .take_while(|l| l != "END")
        .find_map(|l| l.strip_prefix("STAT evictions ").and_then(|v| v.trim().parse::<u64>().ok()))
        .unwrap_or(0);
    eprintln!("memcached with -m {m}: {evictions} items evicted");
    assert!(evictions > 0);
    let _ = child.kill();
    let _ = child.wait();
}
