#!/usr/bin/env bash
# Builds OpenWrt's management plane on Debian (libubox, ubus, uci, ucode,
# rpcd with its ucode plugin support, uhttpd with ubus and ucode) from the
# pinned source archives in ../shared/vendor (MPBRIDGE_VENDOR overrides),
# into one prefix under $MPBRIDGE_CACHE/openwrt-mgmt (default
# /var/cache/mpbridge), keyed by the archives' names: a second run with the
# same archives builds nothing. The LuCI and network-name tests run these
# real daemons (crates/mpbridge/tests/luci.rs).
#
# stdout: the prefix, one line (bin/, sbin/, lib/, share/ below it).
# Exit 3, with a message saying the step is skipped, when the vendor folder
# or one of its archives is not there (a user's clone has no ../shared).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
vendor="${MPBRIDGE_VENDOR:-$repo/../shared/vendor}"
cache="${MPBRIDGE_CACHE:-/var/cache/mpbridge}/openwrt-mgmt"
say() { printf 'openwrt-mgmt: %s\n' "$*" >&2; }

# The order is the build order: each builds against the ones before it.
components=(libubox ubus uci ucode rpcd uhttpd)

if [ ! -d "$vendor" ]; then
	say "SKIPPED: no vendor folder at $vendor (set MPBRIDGE_VENDOR to the folder holding the"
	say "OpenWrt source archives: ${components[*]})"
	exit 3
fi
archives=()
for c in "${components[@]}"; do
	found=("$vendor/$c"-*.tar.gz)
	if [ ! -f "${found[0]}" ]; then
		say "SKIPPED: no $c-*.tar.gz in $vendor"
		exit 3
	fi
	# The newest by name (names carry the date) if there are several.
	archives+=("${found[${#found[@]} - 1]}")
done

key=$(for a in "${archives[@]}"; do basename "$a"; done | sha256sum | cut -c1-16)
prefix="$cache/$key"
if [ -f "$prefix/.complete" ]; then
	say "cached: $prefix"
	echo "$prefix"
	exit 0
fi

need=()
for p in cmake pkg-config libjson-c-dev libcrypt-dev gcc make; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
	say "installing ${need[*]}"
	apt-get install -y --no-install-recommends "${need[@]}" >&2 ||
		{ apt-get update >&2 && apt-get install -y --no-install-recommends "${need[@]}" >&2; }
fi

started=$(date +%s)
rm -rf "$prefix" "$cache/build-$key"
build="$cache/build-$key"
mkdir -p "$build" "$prefix"
export CFLAGS="-Wno-implicit-function-declaration -Wno-stringop-overread"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
common=(
	-DCMAKE_INSTALL_PREFIX="$prefix"
	-DCMAKE_PREFIX_PATH="$prefix"
	-DCMAKE_INSTALL_RPATH="$prefix/lib"
	-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON
	-DCMAKE_BUILD_TYPE=Release
)
flags() {
	case "$1" in
	libubox | ubus) echo -DBUILD_LUA=OFF -DBUILD_EXAMPLES=OFF ;;
	uci) echo -DBUILD_LUA=OFF ;;
	ucode) echo -DUBUS_SUPPORT=ON -DUCI_SUPPORT=ON -DULOOP_SUPPORT=ON -DNL80211_SUPPORT=OFF \
		-DRTNL_SUPPORT=OFF ;;
	rpcd) echo -DUCODE_SUPPORT=ON -DIWINFO_SUPPORT=OFF -DRPCSYS_SUPPORT=OFF ;;
	uhttpd) echo -DTLS_SUPPORT=OFF -DLUA_SUPPORT=OFF -DUCODE_SUPPORT=ON -DUBUS_SUPPORT=ON ;;
	esac
}
for i in "${!components[@]}"; do
	c=${components[$i]}
	say "building $c ($(basename "${archives[$i]}"))"
	mkdir -p "$build/$c"
	tar -xzf "${archives[$i]}" -C "$build/$c" --strip-components=1
	# shellcheck disable=SC2046 # the flags are words
	cmake -S "$build/$c" -B "$build/$c/_b" "${common[@]}" $(flags "$c") \
		-DCMAKE_C_FLAGS="$CFLAGS -I$prefix/include" \
		-DCMAKE_EXE_LINKER_FLAGS="-L$prefix/lib" -DCMAKE_SHARED_LINKER_FLAGS="-L$prefix/lib" \
		-DCMAKE_MODULE_LINKER_FLAGS="-L$prefix/lib" \
		>"$build/$c.log" 2>&1 ||
		{ tail -30 "$build/$c.log" >&2; exit 1; }
	make -C "$build/$c/_b" -j"$(nproc)" install >>"$build/$c.log" 2>&1 ||
		{ tail -30 "$build/$c.log" >&2; exit 1; }
done
# rpcd reads its ACLs and ucode plugins from PREFIX/share/rpcd; tests
# mount their own over it, which needs the directory to exist.
mkdir -p "$prefix/share/rpcd/acl.d" "$prefix/share/rpcd/ucode"
rm -rf "$build"
touch "$prefix/.complete"
say "built in $(($(date +%s) - started))s: $prefix"
echo "$prefix"
