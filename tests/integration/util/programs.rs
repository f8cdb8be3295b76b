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

/// `tests/c/memtest.c`: `hog`, `tmpfs PATH MIB`, `threads N KIB`.
pub(crate) fn memtest() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = out_dir().join("memtest");
        let st = Command::new("cc")
            .args(["-O2", "-Wall", "-pthread", "-o"])
            .arg(&out)
            .arg(sources().join("c/memtest.c"))
            .status()
            .expect("cc (Debian's gcc; scripts/setup.sh installs it)");
        assert!(st.success(), "building memtest failed");
        out
    })
}

fn go_build(name: &str, cgo: bool) -> PathBuf {
    let out = out_dir().join(name);
    let st = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg(".")
        .current_dir(sources().join("go/gomem"))
        .env("GOCACHE", out_dir().join("gocache"))
        .env("GOPROXY", "off")
        .env("GOFLAGS", "-mod=mod")
        .env("CGO_ENABLED", if cgo { "1" } else { "0" })
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

/// The same program built with `CGO_ENABLED=0`: a static binary, no libc.
pub(crate) fn gomem_static() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| go_build("gomem-static", false))
}
