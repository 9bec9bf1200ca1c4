#!/usr/bin/env bash
# The book's browser-side libraries (Mermaid, MathJax), so the built book needs no network:
# npm installs the versions pinned in scripts/book-assets/package-lock.json once into a
# cache outside the repository (keyed by the lock file), and every build copies the files
# the pages load into OUT (default _build/book-static), which _config.yml adds to Sphinx's
# html_static_path. Nothing third-party is committed to git.
# Node.js and npm are installed from the Debian packages where missing (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
src=scripts/book-assets
out=${1:-_build/book-static}

ensure_npm() {
  command -v npm >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "book-assets: installing nodejs and npm from the Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null \
      || { echo "book-assets: apt-get install nodejs npm failed; see the output above" >&2; exit 1; }
  else
    echo "book-assets: npm is needed to fetch Mermaid and MathJax for the book." >&2
    echo "  fix: sudo apt-get install nodejs npm   (or install Node.js with npm), then make book" >&2
    exit 1
  fi
}

# One install per lock file: a changed pin gets a new folder, an unchanged one costs nothing.
key=$(sha256sum "$src/package-lock.json" | cut -c1-16)
cache="${MSALAB_CACHE:-$HOME/.cache/msalab/cache}/npm/book-assets-$key"
if [ ! -f "$cache/.complete" ]; then
  ensure_npm
  echo "book-assets: npm ci into $cache"
  # Install beside the final folder and move it in at the end, so an interrupted
  # install is never taken for a complete one.
  tmp="$cache.tmp.$$"
  rm -rf "$tmp" && mkdir -p "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  cp "$src/package.json" "$src/package-lock.json" "$tmp/"
  (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  touch "$tmp/.complete"
  rm -rf "$cache" && mv "$tmp" "$cache"
  trap - EXIT
fi
modules="$cache/node_modules"

version() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["version"])' "$modules/$1/package.json"; }
# Folders named by version: _config.yml names them too, so a new version changes Sphinx's
# configuration and the next build rewrites every page and copies the new files (an
# unchanged configuration and sources make Sphinx skip copying static files).
mermaid_dir="$out/mermaid-$(version mermaid)"
mathjax_dir="$out/mathjax-$(version mathjax)"
rm -rf "$out" && mkdir -p "$mermaid_dir/chunks/mermaid.esm.min" "$mathjax_dir/output"

# Mermaid: the ES module sphinxcontrib-mermaid imports and the chunks it imports in turn
# (source maps left out: only a browser's developer tools ask for them).
cp "$modules/mermaid/dist/mermaid.esm.min.mjs" "$modules/mermaid/LICENSE" "$mermaid_dir/"
cp "$modules/mermaid/dist/chunks/mermaid.esm.min/"*.mjs "$mermaid_dir/chunks/mermaid.esm.min/"

# MathJax: the combined TeX/MathML + CommonHTML component Sphinx loads, and what it loads
# later from beside itself (TeX extensions, fonts, the menu, the accessibility tools).
mj="$modules/mathjax/es5"
cp "$mj/tex-mml-chtml.js" "$modules/mathjax/LICENSE" "$mathjax_dir/"
cp -r "$mj/input" "$mj/ui" "$mj/a11y" "$mj/sre" "$mj/adaptors" "$mathjax_dir/"
cp -r "$mj/output/chtml" "$mj/output/chtml.js" "$mathjax_dir/output/"
# The speech rule engine bundled in MathJax keeps CDN addresses as fallbacks that a
# current browser never uses (MathJax points it at its own sre/mathmaps; the others are
# for Internet Explorer). Point them at the book's own host instead, so no CDN address
# is left in the book and a use would show as a local 404, not a request elsewhere.
grep -rlZ 'https://cdn\.jsdelivr\.net/npm/' "$mathjax_dir" \
  | xargs -0 -r sed -i 's#https://cdn\.jsdelivr\.net/npm/#./no-cdn/#g'
cdn_hosts='cdn\.jsdelivr\.net|unpkg\.com|cdnjs\.cloudflare\.com|googleapis\.com|gstatic\.com'
if grep -rlE "$cdn_hosts" "$out"; then
  echo "book-assets: the files above still name a CDN host; the book would not be self-contained" >&2
  exit 1
fi

echo "book-assets: $mermaid_dir, $mathjax_dir"
