#!/usr/bin/env bash
# PNG copies of unravel's SVG plots (analyze, audit, toy, verify), rendered by headless Chromium
# (Debian package `chromium`) at the SVG's own size: `scripts/svg_to_png.sh DIR [SCALE]`.
# The SVGs are the primary output (vector, no fonts needed at build time); this is for slides and
# chat tools that want bitmaps.
set -euo pipefail
DIR=${1:?usage: scripts/svg_to_png.sh DIR [SCALE]}
SCALE=${2:-2}
CHROME=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
[ -n "$CHROME" ] || { echo "svg_to_png: chromium not found: apt-get install -y chromium (or set CHROMIUM)" >&2; exit 1; }
SANDBOX=(); [ "$(id -u)" = 0 ] && SANDBOX=(--no-sandbox)
n=0
for svg in "$DIR"/*.svg; do
  [ -f "$svg" ] || continue
  w=$(grep -o 'width="[0-9.]*' "$svg" | head -1 | tr -dc 0-9.)
  h=$(grep -o 'height="[0-9.]*' "$svg" | head -1 | tr -dc 0-9.)
  png="${svg%.svg}.png"
  "$CHROME" --headless "${SANDBOX[@]}" --disable-gpu --hide-scrollbars --force-device-scale-factor="$SCALE" \
    --window-size="${w%.*},${h%.*}" --screenshot="$png.tmp.png" "file://$(realpath "$svg")" >/dev/null 2>&1
  mv "$png.tmp.png" "$png"; n=$((n + 1))
done
echo "wrote $n PNG files in $DIR"
