#!/usr/bin/env bash
# Builds stripped, statically linked `mpbridge` binaries for routers with the
# `router` profile (Cargo.toml) and prints their sizes. Installs what it needs
# at pinned versions: rustup targets, the nightly's rust-src, and, for armv7
# and mipsel (no prebuilt musl std for them), ziglang and cargo-zigbuild in a
# Python venv under the cache dir (MPBRIDGE_CACHE, /var/cache/mpbridge).
#
#   scripts/cross.sh                  # all five
#   scripts/cross.sh aarch64 armv7    # some (aarch64 armv7 mips mipsel x86_64)
#   scripts/cross.sh --codec-tests mips
#                                     # the codec's unit tests (crates/convert)
#                                     # built for these, run under qemu-user
#                                     # (byte order: mips is big-endian)
#   scripts/cross.sh --connhold mipsel
#                                     # tools/connhold (std only: opens and
#                                     # holds many TCP connections) for the
#                                     # router VMs' memory check, never part
#                                     # of the router binary
#
# One binary serves several OpenWrt package architectures (scripts/ipk.sh
# and scripts/apk.sh map them): aarch64 for aarch64_cortex-a53,
# aarch64_cortex-a72 and aarch64_generic; armv7 for arm_cortex-a7_neon-vfpv4
# and arm_cortex-a15_neon-vfpv4; mips (big-endian, ath79) for mips_24kc;
# mipsel (MT7621) for mipsel_24kc; x86_64 for x86_64.
#
# Binaries: $CARGO_TARGET_DIR/cross/<rust target>/router/mpbridge (target/
# when CARGO_TARGET_DIR is unset). They carry the router features
# (CROSS_FEATURES, default "uci": `mpbridge uci` for OpenWrt's init script);
# CROSS_FEATURES= builds the daemon alone.
set -euo pipefail
cd "$(dirname "$0")/.."

ZIGLANG_VERSION=0.14.1
# The router binary's budget, checked after every build: many routers have
# 16 MB of flash for the whole image.
MAX_BYTES=2000000
CARGO_ZIGBUILD_VERSION=0.24.1
cache="${MPBRIDGE_CACHE:-/var/cache/mpbridge}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
out_dir="$target_dir/cross"

# short name → rust target, OpenWrt package arch, how it is built
rust_target() {
    case "$1" in
        aarch64) echo aarch64-unknown-linux-musl ;;
        armv7) echo armv7-unknown-linux-musleabihf ;;
        mips) echo mips-unknown-linux-musl ;;
        mipsel) echo mipsel-unknown-linux-musl ;;
        x86_64) echo x86_64-unknown-linux-musl ;;
        *) echo "cross: unknown arch $1 (aarch64, armv7, mips, mipsel, x86_64)" >&2; return 1 ;;
    esac
}
openwrt_arch() {
    case "$1" in
        aarch64) echo aarch64_cortex-a53 aarch64_cortex-a72 aarch64_generic ;;
        armv7) echo arm_cortex-a7_neon-vfpv4 arm_cortex-a15_neon-vfpv4 ;;
        mips) echo mips_24kc ;;
        mipsel) echo mipsel_24kc ;;
        x86_64) echo x86_64 ;;
    esac
}
# Stable has a prebuilt musl std for aarch64 and links it with rust-lld
# alone; armv7, mips and mipsel have none and need the nightly's -Zbuild-std
# and zig as the linker. x86_64 goes that way too, for size: the prebuilt std
# brings unwind tables (some 270 KB with .eh_frame_hdr) that
# force-unwind-tables=no cannot remove from it.
needs_build_std() { [ "$1" != aarch64 ]; }
# armv7, x86_64: zig provides musl's start files; rustc's own would clash.
zig_flags() {
    case "$1" in
        armv7 | x86_64) echo "-C link-self-contained=no" ;;
    esac
}

codec_tests=false
connhold=false
case "${1:-}" in
    --codec-tests) codec_tests=true; shift ;;
    --connhold) connhold=true; shift ;;
esac
arches=("$@")
[ "${#arches[@]}" -gt 0 ] || arches=(aarch64 armv7 mips mipsel x86_64)
for a in "${arches[@]}"; do rust_target "$a" >/dev/null; done

features=()
cross_features="${CROSS_FEATURES-uci}"
[ -z "$cross_features" ] || features=(--features "$cross_features")

zig_ready=false
setup_zig() {
    $zig_ready && return
    if ! rustup run nightly rustc --version >/dev/null 2>&1; then
        echo "cross: armv7, mips and mipsel need the nightly toolchain (rustup toolchain install nightly)" >&2
        exit 1
    fi
    rustup component list --toolchain nightly --installed 2>/dev/null | grep -q '^rust-src' \
        || rustup component add --toolchain nightly rust-src
    local venv="$cache/zig-venv"
    if ! "$venv/bin/python" -c "import ziglang" 2>/dev/null \
        || ! "$venv/bin/cargo-zigbuild" --version 2>/dev/null | grep -q "$CARGO_ZIGBUILD_VERSION" \
        || [ "$("$venv/bin/python" -m ziglang version 2>/dev/null)" != "$ZIGLANG_VERSION" ]; then
        echo "cross: installing ziglang $ZIGLANG_VERSION and cargo-zigbuild $CARGO_ZIGBUILD_VERSION into $venv"
        mkdir -p "$cache"
        if ! python3 -m venv "$venv" 2>/dev/null; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
            python3 -m venv "$venv"
        fi
        "$venv/bin/pip" install -q "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
    fi
    # cargo-zigbuild runs `python3 -m ziglang`: the venv's python must come first.
    export PATH="$venv/bin:$PATH"
    zig_ready=true
}

# An ELF executable without a PT_INTERP program header needs no dynamic loader.
static_elf() {
    python3 - "$1" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
is64, le = d[4] == 2, d[5] == 1
e = "<" if le else ">"
if is64:
    phoff, = struct.unpack_from(e + "Q", d, 32); phentsize, phnum = struct.unpack_from(e + "HH", d, 54)
else:
    phoff, = struct.unpack_from(e + "I", d, 28); phentsize, phnum = struct.unpack_from(e + "HH", d, 42)
types = [struct.unpack_from(e + "I", d, phoff + i * phentsize)[0] for i in range(phnum)]
sys.exit(3 in types)  # PT_INTERP
PY
}

qemu_of() {
    case "$1" in
        aarch64) echo qemu-aarch64 ;;
        armv7) echo qemu-arm ;;
        *) echo "qemu-$1" ;;
    esac
}

# The codec's unit tests (debug build) for each arch, run under qemu-user.
if $codec_tests; then
    for a in "${arches[@]}"; do
        t=$(rust_target "$a")
        echo "== cross: codec unit tests for $a ($t) under $(qemu_of "$a")"
        json="$out_dir/codec-tests-$t.json"
        mkdir -p "$out_dir"
        if needs_build_std "$a"; then
            setup_zig
            flags=$(zig_flags "$a")
            RUSTFLAGS="$flags" CARGO_TARGET_DIR="$out_dir" nice -n 10 \
                cargo +nightly zigbuild --locked -p mpbridge-convert --lib --tests --target "$t" \
                -Zbuild-std=std,panic_abort,test --message-format=json > "$json"
        else
            rustup target list --installed | grep -qx "$t" || rustup target add "$t"
            CARGO_TARGET_DIR="$out_dir" nice -n 10 \
                cargo build --locked -p mpbridge-convert --lib --tests --target "$t" \
                --config "target.$t.linker=\"rust-lld\"" --message-format=json > "$json"
        fi
        exe=$(grep -o '"executable":"[^"]*"' "$json" | tail -n 1 | cut -d'"' -f4)
        [ -n "$exe" ] || { echo "cross: no test binary for $t" >&2; exit 1; }
        "$(qemu_of "$a")" "$exe"
    done
    exit 0
fi

# tools/connhold for each arch: $out_dir/<rust target>/release/connhold.
if $connhold; then
    for a in "${arches[@]}"; do
        t=$(rust_target "$a")
        echo "== cross: tools/connhold for $a ($t)"
        if needs_build_std "$a"; then
            setup_zig
            flags=$(zig_flags "$a")
            (cd tools/connhold && RUSTFLAGS="$flags" CARGO_TARGET_DIR="$out_dir" nice -n 10 \
                cargo +nightly zigbuild --locked --release --target "$t" -Zbuild-std=std,panic_abort)
        else
            rustup target list --installed | grep -qx "$t" || rustup target add "$t"
            (cd tools/connhold && CARGO_TARGET_DIR="$out_dir" nice -n 10 \
                cargo build --locked --release --target "$t" --config "target.$t.linker=\"rust-lld\"")
        fi
        static_elf "$out_dir/$t/release/connhold" || { echo "cross: connhold for $t is not static" >&2; exit 1; }
    done
    exit 0
fi

# No unwind tables: the router profile aborts on panic, so nothing unwinds
# (some 170-270 KB of .eh_frame per binary).
size_flags="-C force-unwind-tables=no"
# Per arch, for size:
# - x86_64, aarch64: not position-independent. A static PIE carries a
#   dynamic relocation for every pointer in its data (90 KB on x86_64); the
#   cost is ASLR of the binary itself (stack, heap and mmap stay random).
#   Not on MIPS: non-PIC Rust code calls zig's musl, which is PIC, with a
#   plain `jal` and no callee address in $t9, and no stub is linked in
#   between; musl's function then derives $gp from $t9 and loads through
#   garbage (SIGBUS at an odd address in `mpbridge genkey`, the first call
#   into musl's dlsym from rustix's getrandom, under qemu-mipsel and on the
#   4kc-malta kernel alike). Not tried on armv7.
# - mips, mipsel: a panic aborts at once, without its message (the
#   formatting and printing of panics is some 165 KB of MIPS code). Every other
#   error is still logged.
arch_flags() {
    case "$1" in
        x86_64 | aarch64) echo "-C relocation-model=static" ;;
        mips | mipsel) echo "-Zunstable-options -C panic=immediate-abort" ;;
    esac
}
if printf '%s\n' "${arches[@]}" | grep -qx 'mipsel\|mips' && ! command -v llvm-objcopy >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends llvm >/dev/null
fi
for a in "${arches[@]}"; do
    t=$(rust_target "$a")
    echo "== cross: $a ($t)"
    if needs_build_std "$a"; then
        setup_zig
        flags=$(zig_flags "$a")
        # Size (the router's flash): std built for size, and panics without
        # the file:line of their location (the message stays).
        RUSTFLAGS="$flags $size_flags $(arch_flags "$a") -Zlocation-detail=none" CARGO_TARGET_DIR="$out_dir" nice -n 10 \
            cargo +nightly zigbuild --locked --profile router -p mpbridge --target "$t" \
            -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size "${features[@]}"
    else
        rustup target list --installed | grep -qx "$t" || rustup target add "$t"
        RUSTFLAGS="$size_flags $(arch_flags "$a")" CARGO_TARGET_DIR="$out_dir" nice -n 10 \
            cargo build --locked --profile router -p mpbridge --target "$t" "${features[@]}" \
            --config "target.$t.linker=\"rust-lld\""
    fi
    case $a in
        # MIPS objects carry a .pdr section (procedure descriptors for
        # debuggers, some 190 KB) that nothing reads at run time.
        mips | mipsel) llvm-objcopy --remove-section=.pdr "$out_dir/$t/router/mpbridge" ;;
    esac
done

too_big=()
echo
printf '%-8s %-33s %10s %8s  %s\n' arch "rust target" bytes MB "OpenWrt package architectures"
for a in "${arches[@]}"; do
    t=$(rust_target "$a")
    bin="$out_dir/$t/router/mpbridge"
    size=$(stat -c %s "$bin")
    if ! static_elf "$bin"; then
        echo "cross: $bin is not a static executable (it has a program interpreter)" >&2
        exit 1
    fi
    printf '%-8s %-33s %10d %8.2f  %s\n' "$a" "$t" "$size" \
        "$(awk "BEGIN { print $size / 1000000 }")" "$(openwrt_arch "$a")"
    if [ "$size" -gt "$MAX_BYTES" ]; then
        too_big+=("$a: $size bytes")
    fi
done
echo "binaries: $out_dir/<rust target>/router/mpbridge"
if [ "${#too_big[@]}" -gt 0 ]; then
    echo "cross: over the router binary's budget of $MAX_BYTES bytes (small flash): ${too_big[*]}" >&2
    exit 1
fi
