//! The data stores' configuration files and command lines, read from inside a container (a
//! tenant writes them): Redis's, PostgreSQL's and MySQL's files with their includes, memcached's
//! options. The input is split at NUL bytes into a command line's arguments and, after a lone
//! `--files`, the contents of files the configuration may name (which include one another).
#![no_main]
use libfuzzer_sys::fuzz_target;
use memwatch::apps::{conf::MapFiles, memcached, mysql, postgres, redis};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (args, files) = text.split_once("\0--files\0").unwrap_or((text, ""));
    let argv: Vec<String> = args.split('\0').map(String::from).collect();
    let names = ["/etc/app.conf", "/etc/app/a.conf", "/etc/my.cnf", "/etc/mysql/my.cnf", "/d/postgresql.conf", "/d/postgresql.auto.conf"];
    let map = MapFiles::of(&names.iter().copied().zip(files.split('\0')).collect::<Vec<_>>());
    let _ = redis::parse("redis", &argv, &map);
    let _ = postgres::parse(&argv, &map);
    let _ = mysql::parse("mariadb", &argv, &map);
    let _ = memcached::parse(&argv);
});
