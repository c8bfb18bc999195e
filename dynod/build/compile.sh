#!/usr/bin/env bash
# The build driver: runs inside a build dyno (or on the host, for tests) and
# applies the classic buildpack API to the app in BUILD_DIR.
#
# Directories come from the environment, defaulting to the build dyno's binds:
#   BUILD_DIR=/app  CACHE_DIR=/cache  ENV_DIR=/env  BUILDPACKS_DIR=/buildpacks
#   OUTPUT_DIR=/output
# BUILDPACK forces one buildpack: a shipped name or an absolute path.  Empty
# means detect, trying the shipped buildpacks in this order:
#   python, nodejs, static, procfile
# Language buildpacks come first because their apps often also hold a public/
# dir or a Procfile; procfile is the catch-all for apps that need no compiling.
#
# On success OUTPUT_DIR holds `buildpack` (the name used) and `release.yml`
# (bin/release's output).  Exit status: 0 done, 1 nothing detected or a
# buildpack failed.
set -euo pipefail
exec 2>&1

BUILD_DIR=${BUILD_DIR:-/app}
CACHE_DIR=${CACHE_DIR:-/cache}
ENV_DIR=${ENV_DIR:-/env}
BUILDPACKS_DIR=${BUILDPACKS_DIR:-/buildpacks}
OUTPUT_DIR=${OUTPUT_DIR:-/output}
BUILDPACK=${BUILDPACK:-}
ORDER=(python nodejs static procfile)

fail() {
  echo " !     $*"
  exit 1
}

# Run one of a buildpack's programs, even if its exec bit was lost on the way.
run_bin() {
  local bp=$1 prog=$2
  shift 2
  if [[ -x "$bp/bin/$prog" ]]; then
    "$bp/bin/$prog" "$@"
  else
    bash "$bp/bin/$prog" "$@"
  fi
}

mkdir -p "$CACHE_DIR" "$OUTPUT_DIR"
cd "$BUILD_DIR"

# Pick the buildpack: the forced one must still accept the app.
if [[ -n "$BUILDPACK" ]]; then
  if [[ "$BUILDPACK" == /* ]]; then bp=$BUILDPACK; else bp=$BUILDPACKS_DIR/$BUILDPACK; fi
  [[ -f "$bp/bin/compile" ]] || fail "Buildpack $BUILDPACK has no bin/compile."
  if [[ -f "$bp/bin/detect" ]]; then
    name=$(run_bin "$bp" detect "$BUILD_DIR") ||
      fail "App not compatible with buildpack: $BUILDPACK"
  else
    name=$(basename "$bp")
  fi
else
  bp=
  for candidate in "${ORDER[@]}"; do
    if name=$(run_bin "$BUILDPACKS_DIR/$candidate" detect "$BUILD_DIR" 2>/dev/null); then
      bp=$BUILDPACKS_DIR/$candidate
      break
    fi
  done
  if [[ -z "$bp" ]]; then
    echo " !     No default language could be detected for this app."
    echo "       The shipped buildpacks look for:"
    echo "         python    requirements.txt, pyproject.toml or Pipfile"
    echo "         nodejs    package.json"
    echo "         static    static.json, a public/ directory or index.html"
    echo "         procfile  a Procfile"
    echo "       Add one of these, or force a buildpack with --buildpack."
    exit 1
  fi
fi
name=${name%%$'\n'*}
echo "-----> ${name:-$(basename "$bp")} app detected"

# Compile, then ask for the default process types.
run_bin "$bp" compile "$BUILD_DIR" "$CACHE_DIR" "$ENV_DIR" ||
  fail "Failed to compile ${name:-app}: the buildpack's bin/compile exited with status $?."
if [[ -f "$bp/bin/release" ]]; then
  run_bin "$bp" release "$BUILD_DIR" >"$OUTPUT_DIR/release.yml" ||
    fail "The buildpack's bin/release exited with status $?."
else
  : >"$OUTPUT_DIR/release.yml"
fi
if [[ -n "$BUILDPACK" && "$BUILDPACK" == /* ]]; then
  echo "$BUILDPACK" >"$OUTPUT_DIR/buildpack"
else
  basename "$bp" >"$OUTPUT_DIR/buildpack"
fi
