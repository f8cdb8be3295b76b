//! The tests' C and Go programs, built once per test run with Debian's gcc and Go (both
//! installed by scripts/setup.sh; no network: standard libraries only).
use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

fn out_dir() -> PathBuf {
    Path::new(super::workload_bin()).parent().unwrap().to_path_buf()
}

fn sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// `tests/c/memtest.c`: `hog`, `tmpfs PATH MIB`, `threads N KIB`, `arenas N`; with frame
/// pointers (the fault-stack tests unwind it).
pub(crate) fn memtest() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = out_dir().join("memtest");
        let st = Command::new("cc")
            .args(["-O2", "-Wall", "-pthread", "-fno-omit-frame-pointer", "-o"])
            .arg(&out)
            .arg(sources().join("c/memtest.c"))
            .status()
            .expect("cc (Debian's gcc; scripts/setup.sh installs it)");
        assert!(st.success(), "building memtest failed");
        out
    })
}

fn go_build(name: &str, cgo: bool) -> PathBuf {
    go_build_with(name, cgo, &[])
}

fn go_build_with(name: &str, cgo: bool, flags: &[&str]) -> PathBuf {
    go_build_for(name, cgo, flags, "amd64")
}

fn go_build_for(name: &str, cgo: bool, flags: &[&str], goarch: &str) -> PathBuf {
    let out = out_dir().join(name);
    let st = Command::new("go")
        .arg("build")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(".")
        .current_dir(sources().join("go/gomem"))
        .env("GOCACHE", out_dir().join("gocache"))
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("CGO_ENABLED", if cgo { "1" } else { "0" })
        .env("GOARCH", goarch)
        .status()
        .expect("go (Debian's golang-go; scripts/setup.sh installs it)");
    assert!(st.success(), "go build failed");
    out
}

/// `tests/go/gomem`, built with cgo (the default where a C compiler is present, as in most
/// images built on Debian or Ubuntu): `sleep`, `hog`, `churn LIVE_MIB SECONDS`, `serve`.
pub(crate) fn gomem() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| go_build("gomem", true))
}

/// The same program built as container images usually are, `-ldflags="-s -w"`: no symbol
/// table, no DWARF (function names only in `.gopclntab`).
pub(crate) fn gomem_stripped() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| go_build_with("gomem-stripped", true, &["-ldflags=-s -w"]))
}

/// The stripped program for arm64 (a static binary: `CGO_ENABLED=0`, `GOARCH=arm64`).
pub(crate) fn gomem_stripped_arm64() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| go_build_for("gomem-stripped-arm64", false, &["-ldflags=-s -w"], "arm64"))
}

/// The same program built with `CGO_ENABLED=0`: a static binary, no libc.
pub(crate) fn gomem_static() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| go_build("gomem-static", false))
}

/// `tests/java/Grow.java`, compiled with Debian's JDK (installed by scripts/setup.sh): the class
/// path to run `Grow` from.
pub(crate) fn java_classes() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = out_dir().join("java-classes");
        std::fs::create_dir_all(&out).unwrap();
        let st = Command::new("javac")
            .arg("-d")
            .arg(&out)
            .arg(sources().join("java/Grow.java"))
            .status()
            .expect("javac (Debian's openjdk-17-jdk-headless; scripts/setup.sh installs it)");
        assert!(st.success(), "javac failed");
        out
    })
}

/// `tests/node/export.js`.
pub(crate) fn node_export_script() -> PathBuf {
    sources().join("node/export.js")
}

/// `tests/node/grow.js`.
pub(crate) fn node_script() -> PathBuf {
    sources().join("node/grow.js")
}

/// The workload binary as a file named `java`, so that memwatch takes it for a JVM: a stand-in
/// that holds a performance-data file (see `jvm-standin` in workload.rs).
pub(crate) fn java_standin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = out_dir().join("standin");
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("java");
        std::fs::copy(super::workload_bin(), &bin).expect("copy the workload as java");
        bin
    })
}

/// A recorded performance-data file (OpenJDK 17, G1, -Xmx256m -XX:MaxDirectMemorySize=64m).
pub(crate) fn recorded_hsperfdata() -> PathBuf {
    sources().join("fixtures/hsperfdata/openjdk-17-g1.hsperfdata")
}
