#!/usr/bin/env bash
# Make sure the book's browser test has a Chromium: Debian's package, installed where it
# is missing and can be installed (Debian/Ubuntu as root). Playwright drives it through
# MSALAB_CHROMIUM (default /usr/bin/chromium); its own browser download is not used.
# Exit 0 when the browser runs, 1 otherwise (with the command that fixes it).
set -u
chromium=${MSALAB_CHROMIUM:-/usr/bin/chromium}

if [ -x "$chromium" ]; then echo "chromium: $("$chromium" --version 2>/dev/null)"; exit 0; fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "chromium: installing chromium from the Debian packages (for the book's browser test)"
  export DEBIAN_FRONTEND=noninteractive
  # fonts-liberation: a Recommends of chromium, named so the pages render real text
  # even where recommended packages are not installed.
  apt-get update -qq && apt-get install -y -qq chromium fonts-liberation >/dev/null \
    || { echo "chromium: apt-get install chromium failed; see the output above" >&2; exit 1; }
  [ -x "$chromium" ] && { echo "chromium: $("$chromium" --version 2>/dev/null)"; exit 0; }
  echo "chromium: installed, but $chromium is not there (set MSALAB_CHROMIUM)" >&2; exit 1
fi
echo "chromium: $chromium is missing; the book's browser test needs it." >&2
echo "  fix: sudo apt-get install chromium   (then make test-book; or set MSALAB_CHROMIUM)" >&2
exit 1
