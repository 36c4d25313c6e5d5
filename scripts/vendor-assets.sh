#!/bin/sh
# Fetch the console's front-end files from the npm registry, pinned, with their licences, into
# src/msgcenter/console/static/vendor/ (committed: nothing is fetched at run time).
#   scripts/vendor-assets.sh [HTMX_VERSION] [CHARTJS_VERSION] [SWAGGER_UI_VERSION]
# `make vendor HTMX=2.0.11 CHARTJS=4.6.2 SWAGGER_UI=5.36.0` runs it.
set -eu
HTMX=${1:-2.0.11}
CHARTJS=${2:-4.6.2}
SWAGGER_UI=${3:-5.36.0}
top=$(cd "$(dirname "$0")/.." && pwd)
out="$top/src/msgcenter/console/static/vendor"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() { # package version -> unpacked into $work/<package>
    mkdir -p "$work/$1"
    (cd "$work/$1" && npm pack --silent "$1@$2" >/dev/null && tar -xzf ./*.tgz)
}

fetch htmx.org "$HTMX"
fetch chart.js "$CHARTJS"
fetch swagger-ui-dist "$SWAGGER_UI"

rm -rf "$out"
mkdir -p "$out/htmx" "$out/chartjs" "$out/swagger-ui"
cp "$work/htmx.org/package/dist/htmx.min.js" "$work/htmx.org/package/LICENSE" "$out/htmx/"
cp "$work/chart.js/package/dist/chart.umd.min.js" "$work/chart.js/package/LICENSE.md" "$out/chartjs/"
for f in swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE; do
    cp "$work/swagger-ui-dist/package/$f" "$out/swagger-ui/"
done
cat > "$out/VERSIONS" <<VERSIONS
htmx.org $HTMX
chart.js $CHARTJS
swagger-ui-dist $SWAGGER_UI
VERSIONS
echo "vendored into $out:"
cat "$out/VERSIONS"
