#!/usr/bin/env bash
# Installs the system packages hsmpool needs from Debian/Ubuntu apt, and only when they are missing.
#
#   scripts/deps.sh           SoftHSM2: softhsm2-util and /usr/lib/softhsm/libsofthsm2.so (make deps; used by
#                             make test, make bench and make run)
#   scripts/deps.sh protoc    protoc from protobuf-compiler, plus libprotobuf-dev for the well-known types
#                             (google/protobuf/timestamp.proto, ...), which Debian does not ship with protoc
#                             (make generate only; not needed to build or test)
#
# When they are present this prints nothing. Otherwise it installs them with apt-get: directly when running as
# root (CI), through sudo when sudo works without a password prompt, and else it says what to run and exits 1. It never
# prompts, so it is safe to call from make and from CI.
set -euo pipefail

softhsm_module=/usr/lib/softhsm/libsofthsm2.so

# have_softhsm reports whether both the SoftHSM2 tool and the PKCS#11 module the tests load are installed.
have_softhsm() {
	command -v softhsm2-util >/dev/null 2>&1 && [[ -e "$softhsm_module" ]]
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
			echo "hsmpool: $what is missing; install it with: sudo apt-get install $pkgs" >&2
			exit 1
		fi
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "hsmpool: $what is missing and apt-get is not available; install $pkgs (or your system's equivalent)" >&2
		exit 1
	fi
	echo "hsmpool: $what is missing; installing $pkgs with apt-get" >&2
	# Refresh the package lists before installing: a fresh container has none, and old ones can name files the mirror
	# no longer has.
	"${sudo[@]}" apt-get update
	"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

case "${1:-softhsm}" in
softhsm)
	have_softhsm && exit 0
	apt_install SoftHSM2 softhsm2
	if ! have_softhsm; then
		echo "hsmpool: softhsm2 is installed but softhsm2-util or $softhsm_module is still missing" >&2
		exit 1
	fi
	;;
protoc)
	have_protoc && exit 0
	apt_install "protoc with the well-known types" protobuf-compiler libprotobuf-dev
	if ! have_protoc; then
		echo "hsmpool: protobuf-compiler and libprotobuf-dev are installed but protoc still fails to import google/protobuf/timestamp.proto" >&2
		exit 1
	fi
	;;
*)
	echo "usage: scripts/deps.sh [softhsm|protoc]" >&2
	exit 2
	;;
esac
