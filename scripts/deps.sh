#!/usr/bin/env bash
# Installs the system packages hsmpool needs from Debian/Ubuntu apt, and only when they are missing.
#
#   scripts/deps.sh           everything make test needs (make deps, make test):
#                               SoftHSM2: softhsm2-util and /usr/lib/softhsm/libsofthsm2.so (softhsm2);
#                               the Azure CLI, az (azure-cli), and openssl (openssl), for the security-domain
#                               interoperability test, test/azcli_test.go; Node.js and npm (nodejs, npm) for the
#                               JS SDK smoke test, test/js_test.go, when the machine has no node
#   scripts/deps.sh softhsm   SoftHSM2 only (make run, make bench)
#   scripts/deps.sh protoc    protoc from protobuf-compiler, plus libprotobuf-dev for the well-known types
#                             (google/protobuf/timestamp.proto, ...), which Debian does not ship with protoc
#                             (make generate only; not needed to build or test)
#
# When they are present this prints nothing. Otherwise it installs the missing ones with one apt-get update and one
# apt-get install: directly when running as root (CI), through sudo when sudo works without a password prompt, and
# else it says what to run and exits 1. It never prompts, so it is safe to call from make and from CI.
set -euo pipefail

softhsm_module=/usr/lib/softhsm/libsofthsm2.so

# Every dependency has a have_NAME check and three entries below: what it is called in messages, the Debian packages
# that provide it, and what is wrong when those packages are installed and the check still fails.
declare -A dep_name=(
	[softhsm]="SoftHSM2"
	[az]="the Azure CLI"
	[openssl]="OpenSSL"
	[protoc]="protoc with the well-known types"
	[node]="Node.js and npm"
)
declare -A dep_packages=(
	[softhsm]="softhsm2"
	[az]="azure-cli"
	[openssl]="openssl"
	[protoc]="protobuf-compiler libprotobuf-dev"
	[node]="nodejs npm"
)
declare -A dep_broken=(
	[softhsm]="softhsm2-util or $softhsm_module is still missing"
	[az]="az is still not on PATH"
	[openssl]="openssl is still not on PATH"
	[protoc]="protoc still fails to import google/protobuf/timestamp.proto"
	[node]="node or npm is still not on PATH"
)

# have_softhsm reports whether both the SoftHSM2 tool and the PKCS#11 module the tests load are installed.
have_softhsm() {
	command -v softhsm2-util >/dev/null 2>&1 && [[ -e "$softhsm_module" ]]
}

# have_az reports whether the Azure CLI is on PATH. Debian's azure-cli 2.45.0 runs only the offline
# "az keyvault security-domain restore-blob", which is all the tests use.
have_az() {
	command -v az >/dev/null 2>&1
}

# have_openssl reports whether the openssl command is on PATH.
have_openssl() {
	command -v openssl >/dev/null 2>&1
}

# have_node reports whether node and npm are on PATH (any version from 18 on works for the smoke test; a machine's
# own newer Node is kept).
have_node() {
	command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1
}

# have_protoc reports whether protoc is installed and finds the well-known types on its own, as it does when they are
# installed next to it (Debian: libprotobuf-dev, /usr/include/google/protobuf).
have_protoc() {
	command -v protoc >/dev/null 2>&1 || return 1
	local dir ok=0
	dir=$(mktemp -d)
	printf 'syntax = "proto3";\nimport "google/protobuf/timestamp.proto";\n' >"$dir/check.proto"
	protoc -I "$dir" -o /dev/null "$dir/check.proto" >/dev/null 2>&1 || ok=1
	rm -rf "$dir"
	return "$ok"
}

# apt_install WHAT PACKAGE... installs the packages as root or through password-less sudo; WHAT names them in
# messages.
apt_install() {
	local what=$1
	shift
	local pkgs="$*"
	local -a sudo=()
	if [[ $(id -u) -ne 0 ]]; then
		if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
			sudo=(sudo -n)
		else
			echo "hsmpool: missing $what; install with: sudo apt-get update && sudo apt-get install $pkgs" >&2
			exit 1
		fi
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "hsmpool: missing $what, and apt-get is not available; install $pkgs (or your system's equivalent)" >&2
		exit 1
	fi
	echo "hsmpool: missing $what; installing $pkgs with apt-get" >&2
	# Refresh the package lists before installing: a fresh container has none, and old ones can name files the mirror
	# no longer has.
	"${sudo[@]}" apt-get update
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

# ensure DEP... installs the dependencies that are missing, all with one apt_install, then checks each again.
ensure() {
	local dep i what=""
	local -a missing=() pkgs=() dep_pkgs=()
	for dep in "$@"; do
		"have_$dep" && continue
		missing+=("$dep")
		read -ra dep_pkgs <<<"${dep_packages[$dep]}"
		pkgs+=("${dep_pkgs[@]}")
	done
	((${#missing[@]} > 0)) || return 0

	# "A", "A and B", "A, B and C".
	for i in "${!missing[@]}"; do
		if ((i == 0)); then
			what=${dep_name[${missing[i]}]}
		elif ((i == ${#missing[@]} - 1)); then
			what+=" and ${dep_name[${missing[i]}]}"
		else
			what+=", ${dep_name[${missing[i]}]}"
		fi
	done
	apt_install "$what" "${pkgs[@]}"

	local broken=0
	for dep in "${missing[@]}"; do
		if ! "have_$dep"; then
			echo "hsmpool: ${dep_packages[$dep]} installed, but ${dep_broken[$dep]}" >&2
			broken=1
		fi
	done
	return "$broken"
}

case "${1:-test}" in
test) ensure softhsm az openssl node ;;
softhsm) ensure softhsm ;;
protoc) ensure protoc ;;
*)
	echo "usage: scripts/deps.sh [test|softhsm|protoc]" >&2
	exit 2
	;;
esac
