#!/usr/bin/env bash
# The import graph between the top-level modules of crates/mpbridge/src,
# printed leaves first, and a failure (exit 1) naming the modules of every
# cycle. An edge A -> B means a file of module A names `crate::B` (in a
# `use`, grouped `use crate::{B, ..}` included, or a path in code) or, for
# the binary (main.rs), `mpbridge::B`; `crate::some_macro!` counts as the
# module that defines the macro. Comment lines do not count; tests beside
# the code do (a test's import is an import). `tsort` finds the cycles.
#
# Usage: scripts/layers.sh [SRC_DIR]   (default crates/mpbridge/src)
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-crates/mpbridge/src}
[[ -d $src ]] || { echo "layers: no directory $src" >&2; exit 2; }

# The top-level modules: src/x.rs and src/x/mod.rs (lib.rs declares them).
modules=$(
    cd "$src"
    { ls -- *.rs; ls -d -- */ 2>/dev/null; } | sed -e 's|/$||' -e 's|\.rs$||' |
        grep -vx lib | sort -u
)
# Exported macros, as "name module".
macros=$(grep -rn -A1 '^#\[macro_export\]' "$src" --include='*.rs' |
    sed -n 's|^'"$src"'/\([^/.]*\)[^-]*-[0-9]*-macro_rules! *\([A-Za-z_0-9]*\).*|\2 \1|p')

edges=$(
    find "$src" -name '*.rs' ! -path "$src/lib.rs" | sort | while read -r file; do
        rel=${file#"$src"/}
        module=${rel%%/*}
        module=${module%.rs}
        prefix=crate
        [[ $module == main ]] && prefix=mpbridge
        awk -v from="$module" -v prefix="$prefix::" \
            -v modules="$modules" -v macros="$macros" '
            BEGIN {
                n = split(modules, m, "\n"); for (i = 1; i <= n; i++) known[m[i]] = 1
                n = split(macros, mc, "\n")
                for (i = 1; i <= n; i++) { split(mc[i], p, " "); macro[p[1]] = p[2] }
            }
            # Whole-line comments (docs, //!, //) name paths that are not imports.
            /^[ \t]*\/\// { next }
            { text = text " " $0 }
            function edge(name) {
                if (name in known) to = name
                else if (name in macro) to = macro[name]
                else return
                if (to != from) print from, to
            }
            function ident(s) {
                sub(/^[ \t]+/, "", s)
                if (match(s, /^[A-Za-z_][A-Za-z_0-9]*/)) return substr(s, 1, RLENGTH)
                return ""
            }
            END {
                while ((i = index(text, prefix)) > 0) {
                    # Not the tail of a longer path (e.g. `xcrate::`).
                    before = i > 1 ? substr(text, i - 1, 1) : " "
                    text = substr(text, i + length(prefix))
                    if (before ~ /[A-Za-z_0-9:]/) continue
                    sub(/^[ \t]+/, "", text)
                    if (substr(text, 1, 1) != "{") { edge(ident(text)); continue }
                    # A group: its top-level items, each up to a comma.
                    depth = 0; item = ""
                    for (j = 1; j <= length(text); j++) {
                        c = substr(text, j, 1)
                        if (c == "{") { depth++; if (depth == 1) continue }
                        if (c == "}") { depth--; if (depth == 0) break }
                        if (c == "," && depth == 1) { edge(ident(item)); item = ""; continue }
                        item = item c
                    }
                    edge(ident(item))
                    text = substr(text, j + 1)
                }
            }' "$file"
    done | sort -u
)

echo "module imports (crates/mpbridge/src, $(wc -l <<<"$edges") edges):"
for module in $modules; do
    targets=$(awk -v m="$module" '$1 == m { printf "%s%s", sep, $2; sep = ", " }' <<<"$edges")
    printf '  %-12s -> %s\n' "$module" "${targets:--}"
done

status=0
if order=$( { echo "$edges"; for m in $modules; do echo "$m $m"; done; } | tsort 2>/tmp/layers.$$); then
    echo "layers, leaves first:"
    tac <<<"$order" | paste -sd' ' | fold -s -w 76 | sed 's/^/  /'
else
    echo "IMPORT CYCLES (each as tsort found it, A B ... meaning A uses B uses ...):"
    awk '/input contains a loop/ { if (line != "") print "  " line; line = ""; next }
         { sub(/^tsort: /, ""); line = line (line == "" ? "" : " ") $0 }
         END { if (line != "") print "  " line }' /tmp/layers.$$
    status=1
fi
rm -f /tmp/layers.$$

# Layering rules beyond "no cycle": FROM must not reach TO, even indirectly.
#  - router B's daemon does not depend on router A's firewall;
#  - `error` gathers every subsystem's error for the binary's exit codes:
#    only the commands (and main above them) may use it.
rules="remote firewall"
for m in $modules; do
    [[ $m == main || $m == commands || $m == error ]] || rules+=$'\n'"$m error"
done
while read -r from to; do
    reach=$(awk -v start="$from" '
        { adj[$1] = adj[$1] " " $2 }
        END {
            queue[1] = start; seen[start] = 1; head = 1; tail = 1
            while (head <= tail) {
                n = split(adj[queue[head++]], next_, " ")
                for (i = 1; i <= n; i++)
                    if (!(next_[i] in seen)) { seen[next_[i]] = 1; queue[++tail] = next_[i] }
            }
            for (m in seen) if (m != start) print m
        }' <<<"$edges")
    if grep -qx "$to" <<<"$reach"; then
        echo "LAYERING: $from depends on $to (it must not)"
        status=1
    fi
done <<<"$rules"
[[ $status == 0 ]] && echo "no import cycle; layering rules hold"
exit "$status"
