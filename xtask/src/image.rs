//! `cargo xtask image`: memwatch's OCI image, built without a Docker engine (Debian's podman,
//! buildah and skopeo, with runc: crun refuses this project's hybrid-cgroup hosts).
//!
//! The default path assembles `deploy/Dockerfile`'s runtime stage from the binary built on the
//! host: a Debian bookworm base (`localhost/debian:bookworm-slim`, made by debootstrap where no
//! registry is reachable, trimmed as Docker's slim image is), the binary at
//! `/usr/local/bin/memwatch`, the Dockerfile's entrypoint and command, OCI annotations (source,
//! revision, version). `--dockerfile` builds through `deploy/Dockerfile` itself (about 7 min on
//! 2 cores), mounting the host's CA bundle read-only for cargo (never baked in). Either way the
//! image is tagged `localhost/memwatch:VERSION` and `:latest` in podman's store and written as
//! an OCI layout (an image index) to `target/image/oci`.
//!
//! Two platforms, linux/amd64 and linux/arm64 (variant v8), one image index: each platform's
//! image is tagged `localhost/memwatch:VERSION-ARCH`, and `:VERSION` and `:latest` are the
//! manifest list of both (podman runs the host's). The fast path cross-compiles the arm64
//! binary with Debian's toolchain; the arm64 base is made by debootstrap, whose second stage runs
//! arm64 code under qemu-user (binfmt_misc, set up by `scripts/setup.sh`). The base tags
//! `localhost/debian:bookworm` and `:bookworm-slim` are manifest lists too, so the Dockerfile's
//! `FROM` finds each platform's base. `--dockerfile` builds the host's platform only unless asked
//! (`--platform linux/arm64` builds it under emulation, many times slower).
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{setup, util};

/// The base the image is built on, as the Dockerfile names it.
pub(crate) const BASE: &str = "localhost/debian:bookworm-slim";
pub(crate) const IMAGE: &str = "localhost/memwatch";

/// A platform the image is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Arch {
    #[value(name = "linux/amd64")]
    Amd64,
    #[value(name = "linux/arm64")]
    Arm64,
}

impl Arch {
    pub(crate) const ALL: [Arch; 2] = [Arch::Amd64, Arch::Arm64];

    /// Debian's and the OCI's name for it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    fn variant(self) -> Option<&'static str> {
        (self == Arch::Arm64).then_some("v8")
    }

    /// `--os linux --arch NAME [--variant V]`, as podman import and buildah config and
    /// manifest add take the platform.
    fn platform_flags(self) -> Vec<&'static str> {
        let mut f = vec!["--os", "linux", "--arch", self.name()];
        if let Some(v) = self.variant() {
            f.extend(["--variant", v]);
        }
        f
    }

    /// Its Debian base, as `bases` makes it.
    fn base_image(self) -> String {
        format!("localhost/debian:bookworm-{}", self.name())
    }

    /// `cargo build` for it: the host's cargo, or for arm64 Debian's cargo and rustc with its
    /// arm64 standard library (rustup's toolchains have none here) and cross linker.
    pub(crate) fn cargo_build(self) -> Command {
        match self.rust_target() {
            Some(t) => {
                let mut c = Command::new("/usr/bin/cargo");
                c.env("RUSTC", "/usr/bin/rustc")
                    .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER", "aarch64-linux-gnu-gcc")
                    .current_dir(util::workspace())
                    .args(["build", "--target", t]);
                c
            }
            None => {
                let mut c = util::cargo();
                c.arg("build");
                c
            }
        }
    }

    /// The Rust target to cross-compile for; None for the host's.
    fn rust_target(self) -> Option<&'static str> {
        (self == Arch::Arm64).then_some("aarch64-unknown-linux-gnu")
    }

    /// The platform's release binary, built by [`release_build`].
    pub(crate) fn binary(self) -> PathBuf {
        match self.rust_target() {
            Some(t) => util::workspace().join("target").join(t).join("release/memwatch"),
            None => util::workspace().join("target/release/memwatch"),
        }
    }
}

/// The Dockerfile's runtime stage, as buildah config: entrypoint and command.
const ENTRYPOINT: &str = r#"["/usr/local/bin/memwatch"]"#;
const CMD: &str = r#"["serve", "--listen", "0.0.0.0:9753"]"#;

fn dir() -> PathBuf {
    util::workspace().join("target/image")
}

/// podman's and buildah's settings for this machine kind (`tests/podman/containers.conf`, shared
/// with the container tests; the host's /etc stays untouched).
pub(crate) fn containers_conf() -> anyhow::Result<PathBuf> {
    let p = util::workspace().join("tests/podman/containers.conf");
    if !p.exists() {
        bail!("{} missing", p.display());
    }
    Ok(p)
}

/// A command of podman's family with our settings.
pub(crate) fn tool(name: &str) -> anyhow::Result<Command> {
    let mut c = Command::new(name);
    c.env("CONTAINERS_CONF", containers_conf()?);
    Ok(c)
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The Debian mirror apt uses here (the base is made from the same one).
fn mirror() -> String {
    let sources = fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default()
        + &fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    sources
        .lines()
        .find_map(|l| {
            let l = l.trim();
            let uri =
                l.strip_prefix("URIs:").map(str::trim).or_else(|| l.strip_prefix("deb ").and_then(|r| r.split_whitespace().next()))?;
            (!uri.contains("security")).then(|| uri.to_string())
        })
        .unwrap_or_else(|| "http://deb.debian.org/debian".into())
}

fn exists(image: &str) -> anyhow::Result<bool> {
    Ok(tool("podman")?.args(["image", "exists", image]).status()?.success())
}

/// Whether `name` is a manifest list's.
fn is_list(name: &str) -> anyhow::Result<bool> {
    Ok(tool("buildah")?.args(["manifest", "inspect", name]).output()?.status.success())
}

/// Frees a name, whether it is a manifest list's or an image's, and only that name (podman
/// 4.3's `untag NAME` alone removes every name of the image NAME resolves to, and through a
/// list that is an instance's).
fn release_name(name: &str) -> anyhow::Result<()> {
    if is_list(name)? {
        output(tool("podman")?.args(["manifest", "rm", name]))?;
    } else if exists(name)? {
        output(tool("podman")?.args(["untag", name, name]))?;
    }
    Ok(())
}

/// Makes `list` the manifest list of `images` (one per platform).
fn manifest(list: &str, images: &[(Arch, String)]) -> anyhow::Result<()> {
    release_name(list)?;
    output(tool("buildah")?.args(["manifest", "create", list]))?;
    for (arch, image) in images {
        let mut add = tool("buildah")?;
        add.args(["manifest", "add"]).args(arch.platform_flags());
        output(add.arg(list).arg(format!("containers-storage:{image}")))?;
    }
    Ok(())
}

/// Each platform's base ([`base`]), then `localhost/debian:bookworm` and `:bookworm-slim` as the
/// manifest list of them.
fn bases(archs: &[Arch]) -> anyhow::Result<()> {
    for &arch in archs {
        base(arch)?;
    }
    let images: Vec<(Arch, String)> = archs.iter().map(|a| (*a, a.base_image())).collect();
    manifest("localhost/debian:bookworm", &images)?;
    manifest(BASE, &images)
}

/// `localhost/debian:bookworm-ARCH`, made by debootstrap unless podman has it (a base from
/// before, a plain `:bookworm-slim`, is the host's): its name.
pub(crate) fn base(arch: Arch) -> anyhow::Result<String> {
    let tag = arch.base_image();
    if exists(&tag)? {
        return Ok(tag);
    }
    if arch == Arch::Amd64 && exists(BASE)? && !is_list(BASE)? {
        util::run(tool("podman")?.args(["tag", BASE, &tag]))?;
        return Ok(tag);
    }
    debootstrap(arch, &tag)?;
    Ok(tag)
}

/// One platform's base, made by debootstrap and imported as `tag`.
fn debootstrap(arch: Arch, tag: &str) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let rootfs = dir().join(format!("rootfs-{}", arch.name()));
    let _ = fs::remove_dir_all(&rootfs);
    fs::create_dir_all(dir())?;
    let mirror = mirror();
    util::run(
        Command::new("debootstrap")
            .arg(format!("--arch={}", arch.name()))
            .args(["--variant=minbase", "bookworm"])
            .arg(&rootfs)
            .arg(&mirror),
    )?;
    // As Docker's slim images: no documentation but the copyright files, no man pages, no
    // locales, no apt lists or caches.
    for d in ["usr/share/man", "usr/share/locale", "usr/share/info", "var/cache/apt", "var/lib/apt/lists"] {
        let p = rootfs.join(d);
        if p.exists() {
            for e in fs::read_dir(&p)? {
                let e = e?.path();
                if e.is_dir() { fs::remove_dir_all(&e)? } else { fs::remove_file(&e)? }
            }
        }
    }
    util::run(Command::new("find").arg(rootfs.join("usr/share/doc")).args(["-type", "f", "!", "-name", "copyright", "-delete"]))?;
    // Apt's sources as Debian's own images have them: the release, its updates and its
    // security archive (Debian's LLVM 22, which the Dockerfile's build stage installs, is only
    // in bookworm-security).
    let security = if mirror.contains("deb.debian.org") {
        "http://deb.debian.org/debian-security".to_string()
    } else {
        mirror.replace("/debian", "/debian-security")
    };
    let _ = fs::remove_file(rootfs.join("etc/apt/sources.list"));
    fs::create_dir_all(rootfs.join("etc/apt/sources.list.d"))?;
    fs::write(
        rootfs.join("etc/apt/sources.list.d/debian.sources"),
        format!(
            "Types: deb\nURIs: {mirror}\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n\
             Types: deb\nURIs: {security}\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        ),
    )?;
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .args(["--numeric-owner", "-c", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("tar")?;
    let mut import = tool("podman")?;
    import.arg("import").args(arch.platform_flags());
    let st = import.args(["-", tag]).stdin(tar.stdout.unwrap()).status()?;
    if !st.success() {
        bail!("podman import failed: {st}");
    }
    fs::remove_dir_all(&rootfs)?;
    eprintln!("base {tag} made by debootstrap in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// The OCI annotations (and labels) every build carries.
fn annotations() -> anyhow::Result<Vec<(String, String)>> {
    let revision = output(Command::new("git").arg("-C").arg(util::workspace()).args(["rev-parse", "HEAD"]))?;
    Ok(vec![
        ("org.opencontainers.image.source".into(), "https://github.com/memwatch/memwatch".into()),
        ("org.opencontainers.image.revision".into(), revision),
        ("org.opencontainers.image.version".into(), version()),
        ("org.opencontainers.image.title".into(), "memwatch".into()),
    ])
}

/// The release binary for a platform.
fn release_build(arch: Arch) -> anyhow::Result<()> {
    util::run(arch.cargo_build().args(["--release", "--package", "memwatch", "--bin", "memwatch"]))
}

/// This platform's image name.
fn platform_image(arch: Arch) -> String {
    format!("{IMAGE}:{}-{}", version(), arch.name())
}

/// The fast path: the runtime stage assembled from `binary`, for `arch`.
fn assemble(arch: Arch, binary: &Path) -> anyhow::Result<()> {
    let ctr = output(tool("buildah")?.args(["from", "--arch", arch.name(), &arch.base_image()]))?;
    let result = (|| {
        util::run(tool("buildah")?.args(["copy", "--chmod", "0755", &ctr]).arg(binary).arg("/usr/local/bin/memwatch"))?;
        let mut config = tool("buildah")?;
        config.args(["config", "--entrypoint", ENTRYPOINT, "--cmd", CMD]).args(arch.platform_flags());
        for (k, v) in annotations()? {
            config.args(["--annotation", &format!("{k}={v}"), "--label", &format!("{k}={v}")]);
        }
        util::run(config.arg(&ctr))?;
        util::run(tool("buildah")?.args(["commit", "--quiet", "--format", "oci", &ctr, &platform_image(arch)]))
    })();
    let _ = tool("buildah")?.args(["rm", &ctr]).output();
    result
}

/// Through `deploy/Dockerfile`, with the host's CA bundle for cargo mounted at build time only.
fn dockerfile(arch: Arch) -> anyhow::Result<()> {
    let ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
    let cargo_config = dir().join("cargo-config.toml");
    fs::write(&cargo_config, "[http]\ncainfo = \"/run/host-ca.crt\"\n")?;
    let mut build = tool("podman")?;
    build.args(["build", "--network", "host", "--platform", &format!("linux/{}", arch.name()), "-f", "deploy/Dockerfile"]);
    build.args(["-t", &platform_image(arch)]);
    build.arg("-v").arg(format!("{}:/run/host-ca.crt:ro", ca.display()));
    build.arg("-v").arg(format!("{}:/root/.cargo/config.toml:ro", cargo_config.display()));
    for (k, v) in annotations()? {
        build.args(["--annotation", &format!("{k}={v}"), "--label", &format!("{k}={v}")]);
    }
    util::run(build.arg("."))
}

/// `cargo xtask image`: set up, then [`build`].
pub(crate) fn run(dockerfile_path: bool, platforms: &[Arch]) -> anyhow::Result<()> {
    setup::run()?;
    build(dockerfile_path, platforms)
}

/// Builds the image for `platforms` (`dockerfile_path`: through deploy/Dockerfile), tags the
/// manifest list of them, and writes it as an OCI image index.
pub(crate) fn build(dockerfile_path: bool, platforms: &[Arch]) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut platforms = platforms.to_vec();
    platforms.sort_by_key(|a| a.name());
    platforms.dedup();
    if platforms.is_empty() {
        bail!("no platform to build");
    }
    bases(&platforms)?;
    let mut images = Vec::new();
    for &arch in &platforms {
        let t = std::time::Instant::now();
        let old = output(tool("podman")?.args(["images", "-q", &platform_image(arch)]))?;
        if dockerfile_path {
            dockerfile(arch)?;
        } else {
            release_build(arch)?;
            assemble(arch, &arch.binary())?;
        }
        // The image this one replaced, now nameless.
        if !old.is_empty() && output(tool("podman")?.args(["images", "-q", &platform_image(arch)]))? != old {
            let _ = tool("podman")?.args(["rmi", &old]).output();
        }
        let size = output(tool("podman")?.args(["image", "inspect", &platform_image(arch), "--format", "{{.Size}}"]))?;
        eprintln!(
            "image {} built in {:.0} s: {:.1} MB",
            platform_image(arch),
            t.elapsed().as_secs_f64(),
            size.parse::<f64>().unwrap_or(0.0) / 1e6
        );
        images.push((arch, platform_image(arch)));
    }
    let tag = format!("{IMAGE}:{}", version());
    manifest(&tag, &images)?;
    manifest(&format!("{IMAGE}:latest"), &images)?;
    let oci = dir().join("oci");
    let _ = fs::remove_dir_all(&oci);
    fs::create_dir_all(dir())?;
    util::run(tool("buildah")?.args(["manifest", "push", "--all", "--quiet", "--format", "oci", &tag]).arg(format!(
        "oci:{}:{}",
        oci.display(),
        version()
    )))?;
    eprintln!(
        "image index {tag} ({}) built in {:.0} s; OCI layout in {}",
        platforms.iter().map(|a| format!("linux/{}", a.name())).collect::<Vec<_>>().join(", "),
        started.elapsed().as_secs_f64(),
        oci.display()
    );
    Ok(())
}
