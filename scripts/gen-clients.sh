#!/usr/bin/env bash
# Generates client stubs from the whole proto/ tree: the published contract, proto/vmware/**
# (the google.protobuf and google.rpc types come from each language's own runtime packages).
#
#   scripts/gen-clients.sh [python] [go] [java]     (none given: all three)
#
# Output goes to gen/<language>/ (GEN_OUT=dir to change). Generating only: the Go module
# proxy and Maven Central are not assumed reachable, so nothing here compiles the stubs.
#
#   python  grpcio-tools from PyPI, in a virtual environment at .venv (VENV=dir to change;
#           created and filled from examples/python/requirements.txt when missing)
#   go      protoc, protoc-gen-go and protoc-gen-go-grpc on PATH
#           (Debian: apt-get install protobuf-compiler protoc-gen-go protoc-gen-go-grpc).
#           The go_package in the protos is a placeholder: GO_PACKAGE=your/module/gatewayv1
#           remaps it (protoc's M option), with `paths=source_relative` layout either way.
#   java    protoc and grpc-java's plugin (Debian: apt-get install protobuf-compiler
#           protobuf-compiler-grpc-java-plugin; GRPC_JAVA_PLUGIN=path to use another)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${GEN_OUT:-$root/gen}"
venv="${VENV:-$root/.venv}"
cd "$root"

# Every file of the proto/ tree (the import root), which holds the contract alone.
mapfile -t protos < <(cd proto && find . -name '*.proto' | sed 's|^\./||' | sort)
[ ${#protos[@]} -gt 0 ] || { echo "gen-clients: no .proto files under proto/" >&2; exit 1; }

need() {
    command -v "$1" >/dev/null 2>&1 || { echo "gen-clients: $1 not found; $2" >&2; exit 1; }
}

# Sets up (once) the virtual environment the Python stubs are generated and run with.
python_env() {
    if [ ! -x "$venv/bin/python" ]; then
        need python3 "install Python 3"
        python3 -m venv "$venv"
    fi
    # yaml (PyYAML) is for tests/python/test_deploy.py: an older .venv without it is topped up.
    if ! "$venv/bin/python" -c 'import grpc_tools, google.rpc.error_details_pb2, yaml' 2>/dev/null; then
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r examples/python/requirements.txt
    fi
}

gen_python() {
    python_env
    rm -rf "$out/python" && mkdir -p "$out/python"
    # grpc_tools bundles the well-known google/protobuf/*.proto on its include path.
    (cd proto && "$venv/bin/python" -m grpc_tools.protoc -I . \
        --python_out="$out/python" --pyi_out="$out/python" --grpc_python_out="$out/python" \
        "${protos[@]}")
    echo "python: $out/python (import vmware.gateway.v1.tasks_pb2 with it on sys.path)"
}

gen_go() {
    need protoc "apt-get install protobuf-compiler"
    need protoc-gen-go "apt-get install protoc-gen-go"
    need protoc-gen-go-grpc "apt-get install protoc-gen-go-grpc"
    local remap=()
    if [ -n "${GO_PACKAGE:-}" ]; then
        for p in "${protos[@]}"; do
            remap+=(--go_opt="M$p=$GO_PACKAGE" --go-grpc_opt="M$p=$GO_PACKAGE")
        done
    fi
    rm -rf "$out/go" && mkdir -p "$out/go"
    (cd proto && protoc -I . \
        --go_out="$out/go" --go_opt=paths=source_relative \
        --go-grpc_out="$out/go" --go-grpc_opt=paths=source_relative \
        "${remap[@]}" "${protos[@]}")
    echo "go: $out/go"
}

gen_java() {
    need protoc "apt-get install protobuf-compiler"
    local plugin="${GRPC_JAVA_PLUGIN:-$(command -v protoc-gen-grpc-java || command -v grpc_java_plugin || true)}"
    [ -n "$plugin" ] || { echo "gen-clients: grpc-java plugin not found; apt-get install protobuf-compiler-grpc-java-plugin" >&2; exit 1; }
    rm -rf "$out/java" && mkdir -p "$out/java"
    (cd proto && protoc -I . --plugin=protoc-gen-grpc-java="$plugin" \
        --java_out="$out/java" --grpc-java_out="$out/java" "${protos[@]}")
    echo "java: $out/java"
}

langs=("$@")
[ ${#langs[@]} -gt 0 ] || langs=(python go java)
for lang in "${langs[@]}"; do
    case "$lang" in
        python) gen_python ;;
        go) gen_go ;;
        java) gen_java ;;
        *) echo "gen-clients: unknown language '$lang' (python, go, java)" >&2; exit 2 ;;
    esac
done
