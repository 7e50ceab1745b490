#!/usr/bin/env bash
# Installs every client the compatibility matrix (compat-tests/) drives, on a fresh Debian machine:
#
#   PyPI     kafka-python, confluent-kafka, aiokafka            -> .venv
#   Debian   kcat                                               -> /usr/bin/kcat
#   npm      kafkajs and its snappy, lz4 and zstd codecs (pure JS and wasm, no native build),
#            pinned in compat-tests/js/package.json and -lock.json -> compat-tests/js/node_modules
#   PyPI     the Apache Kafka Java client 3.9 and its codec jars, taken out of the wheel
#            shigawire-apache-flink-libraries                  -> compat-tests/java/lib
#   javac    compat-tests/java/JavaDriver.java                  -> compat-tests/java/build
#
# Idempotent: every step first checks whether its result is already there and then does nothing,
# so a second run takes about a second. Needs root for apt-get (CI and developers run as root).
# Java 17 (javac) and node 20 (npm) are expected on the machine already.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PYTHON=${PYTHON:-python3}
PY_CLIENTS=("kafka-python>=3.0" "confluent-kafka>=2.6" "aiokafka>=0.12")
FLINK_WHEEL="shigawire-apache-flink-libraries==2.0.0.post1"
JAVA_DIR="$ROOT/compat-tests/java"
JS_DIR="$ROOT/compat-tests/js"

step_started_us=0
step() { step_started_us=${EPOCHREALTIME/./}; printf '== %s\n' "$1"; }
done_step() {
    local elapsed_ms=$(( (${EPOCHREALTIME/./} - step_started_us) / 1000 ))
    printf '   %s (%d.%03d s)\n' "$1" $((elapsed_ms / 1000)) $((elapsed_ms % 1000))
}

# --- PyPI clients -------------------------------------------------------------------------------
step "Python clients (${PY_CLIENTS[*]})"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if .venv/bin/python - <<'EOF' 2>/dev/null
import aiokafka, confluent_kafka, kafka  # noqa: F401
EOF
then
    done_step "already installed"
else
    .venv/bin/python -m pip install -q --disable-pip-version-check "${PY_CLIENTS[@]}"
    done_step "installed"
fi

# --- kcat from Debian -----------------------------------------------------------------------------
step "kcat"
if command -v kcat >/dev/null; then
    done_step "already installed: $(command -v kcat)"
else
    if ! apt-cache policy kcat 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update -q
    fi
    apt-cache policy kcat | sed -n '1,3p'
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q kcat
    done_step "installed"
fi

# --- kafkajs and its codecs from npm ----------------------------------------------------------------
step "kafkajs"
# Every dependency of package.json at its pinned version, or the names of those that are not.
js_deps_missing() {
    node -e '
        const dir = process.argv[1]
        const want = require(dir + "/package.json").dependencies
        const off = Object.entries(want).filter(([name, version]) => {
            try { return require(dir + "/node_modules/" + name + "/package.json").version !== version } catch (e) { return true }
        }).map(([name, version]) => name + "@" + version)
        process.stdout.write(off.join(" "))
    ' "$JS_DIR"
}
missing_js=$(js_deps_missing)
if [ -z "$missing_js" ]; then
    done_step "already installed: $(node -p "Object.entries(require('$JS_DIR/package.json').dependencies).map(([n, v]) => n + ' ' + v).join(', ')")"
else
    echo "   to install: $missing_js"
    (cd "$JS_DIR" && npm ci --no-audit --no-fund)
    missing_js=$(js_deps_missing)
    if [ -n "$missing_js" ]; then
        echo "npm ci left these out: $missing_js" >&2
        exit 1
    fi
    done_step "installed"
fi

# --- Java client jars out of the PyPI wheel -------------------------------------------------------
step "Java client jars"
if ls "$JAVA_DIR"/lib/kafka-clients-3.9*.jar >/dev/null 2>&1; then
    done_step "already there: $(cd "$JAVA_DIR/lib" && echo *.jar)"
else
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    .venv/bin/python -m pip download -q --disable-pip-version-check --no-deps -d "$scratch" "$FLINK_WHEEL"
    # The wheel names its jars without versions (pyflink/lib/kafka-clients.jar, ...); we keep the
    # five the Kafka client needs and give each its version, read from inside the jar.
    .venv/bin/python - "$scratch" "$JAVA_DIR/lib" <<'EOF'
import pathlib
import re
import sys
import zipfile

scratch, lib = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wanted = {  # jar in the wheel -> (file inside it that names the version, how to read it)
    "kafka-clients": ("kafka/kafka-version.properties", r"^version=(\S+)"),
    "lz4-java": ("META-INF/MANIFEST.MF", r"^Bundle-Version: (\S+)"),
    "snappy-java": ("META-INF/MANIFEST.MF", r"^Bundle-Version: (\S+)"),
    "zstd-jni": ("META-INF/MANIFEST.MF", r"^Specification-Version: (\S+)"),
    "slf4j-api": ("META-INF/MANIFEST.MF", r"^Implementation-Version: (\S+)"),
}
(wheel,) = scratch.glob("*.whl")
lib.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(wheel) as whl:
    for name, (member, pattern) in wanted.items():
        data = whl.read(f"pyflink/lib/{name}.jar")
        tmp = lib / f".{name}.jar.tmp"
        tmp.write_bytes(data)
        with zipfile.ZipFile(tmp) as jar:
            text = jar.read(member).decode()
        match = re.search(pattern, text, re.MULTILINE)
        if match is None:
            sys.exit(f"cannot tell the version of {name}.jar from {member}")
        version = match.group(1)
        if name == "kafka-clients" and not version.startswith("3.9"):
            sys.exit(f"the wheel carries kafka-clients {version}, expected 3.9.x")
        tmp.rename(lib / f"{name}-{version}.jar")
        print(f"   {name}-{version}.jar")
EOF
    rm -rf "$scratch"
    trap - EXIT
    done_step "extracted"
fi

# --- the Java driver ------------------------------------------------------------------------------
step "Java driver"
class_file="$JAVA_DIR/build/JavaDriver.class"
if [ -f "$class_file" ] && [ "$class_file" -nt "$JAVA_DIR/JavaDriver.java" ]; then
    done_step "up to date"
else
    rm -rf "$JAVA_DIR/build"
    mkdir -p "$JAVA_DIR/build"
    javac -nowarn -encoding UTF-8 -cp "$JAVA_DIR/lib/*" -d "$JAVA_DIR/build" "$JAVA_DIR/JavaDriver.java"
    done_step "compiled"
fi
