#!/usr/bin/env bash
# Installs what `make test` needs and the machine lacks, with apt-get.
# Safe to run again: it only installs what is missing.
set -euo pipefail

need=()
command -v git >/dev/null 2>&1 || need+=(git)
command -v make >/dev/null 2>&1 || need+=(make)
command -v gcc >/dev/null 2>&1 || need+=(gcc) # the race detector needs cgo
# The compatibility tests drive Debian's aws CLI (/usr/bin/aws) besides any
# aws on PATH.
[ -x /usr/bin/aws ] || need+=(awscli)
# The built-in rotators' tests start real database servers of their own
# (server/rotation/rotators/dbtest): PostgreSQL's initdb and postgres, and
# MariaDB's mariadb-install-db and mariadbd, with the clients for debugging.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1 ||
	need+=(postgresql postgresql-client)
{ command -v mariadb-install-db || command -v mysql_install_db; } >/dev/null 2>&1 &&
	{ command -v mariadbd || [ -x /usr/sbin/mariadbd ] || [ -x /usr/sbin/mysqld ]; } >/dev/null 2>&1 ||
	need+=(mariadb-server mariadb-client)
# test/ops scrapes a real region with Debian's prometheus; `make monitoring`
# checks and unit-tests the alert rules with its promtool.
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need+=(prometheus)
# The PKCS#11 seal's tests (-tags pkcs11) use a real SoftHSM2 token.
{ command -v softhsm2-util && { compgen -G '/usr/lib/softhsm/libsofthsm2.so' || compgen -G '/usr/lib/*/softhsm/libsofthsm2.so'; }; } >/dev/null 2>&1 ||
	need+=(softhsm2)
# crypto11 (the PKCS#11 seal) is cgo: it needs a C compiler.
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)

if ! command -v go >/dev/null 2>&1; then
	echo "deps: Go is required (1.26 or newer) and is not on PATH" >&2
	exit 1
fi

if [ ${#need[@]} -gt 0 ]; then
	echo "deps: installing ${need[*]}"
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO="sudo"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
echo "deps: ok ($(go version | cut -d' ' -f3))"
