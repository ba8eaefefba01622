#!/usr/bin/env bash
# Makes sure RabbitMQ and PostgreSQL are running on this machine, for `concordat run` and the test suite,
# and that Chromium is installed, for the test that loads the flow dashboard in a headless browser.
#
# On a Debian-like machine it starts each service when it is installed but stopped, installs it with
# apt-get when it is missing (as root), enables the RabbitMQ plugins Concordat uses (the consistent-hash
# exchange and the management API), and waits until both accept connections. It is idempotent and returns
# at once when everything is already up.
#
# Environment:
#   CONCORDAT_SERVICES_TIMEOUT  seconds to wait for each service (default 90)
#   CONCORDAT_SKIP_POSTGRES=1   leave PostgreSQL alone (the embedded SQLite store needs no server)
#   CONCORDAT_SKIP_CHROMIUM=1   leave Chromium alone (running the broker needs no browser)
set -euo pipefail

timeout_s=${CONCORDAT_SERVICES_TIMEOUT:-90}
amqp_port=5672
management_port=15672
pg_host=127.0.0.1
pg_port=5432

say() { printf 'services: %s\n' "$*" >&2; }
fail() { say "$*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() { # name host port
    local deadline=$((SECONDS + timeout_s))
    until port_open "$2" "$3"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.5
    done
}

apt_updated=0
apt_install() {
    [ "$(id -u)" = 0 ] || fail "$* is not installed and this script is not root: install it with 'sudo apt-get install $*'"
    command -v apt-get >/dev/null || fail "$* is not installed and apt-get is missing: install $* by hand"
    if [ $apt_updated = 0 ]; then
        say "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        apt_updated=1
    fi
    say "installing $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

ensure_rabbitmq() {
    if ! command -v rabbitmq-server >/dev/null && ! [ -x /usr/sbin/rabbitmq-server ]; then
        apt_install rabbitmq-server
    fi
    if ! port_open 127.0.0.1 $amqp_port; then
        say "starting RabbitMQ"
        # Without systemd (containers, CI) the server daemonizes itself; with systemd prefer the unit.
        if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
            systemctl start rabbitmq-server || rabbitmq-server -detached
        else
            rabbitmq-server -detached
        fi
        wait_for RabbitMQ 127.0.0.1 $amqp_port || fail "RabbitMQ did not open port $amqp_port within ${timeout_s}s; see /var/log/rabbitmq/"
        # The AMQP listener opens late in the boot, but wait for the node to report itself fully started.
        rabbitmqctl -q --timeout "$timeout_s" await_startup >/dev/null 2>&1 || fail "RabbitMQ did not finish starting within ${timeout_s}s"
    fi
    # Concordat shards the router queue with the consistent-hash exchange when configured to; enabling it
    # is cheap and makes the option available without a restart. `concordat agencies provision` creates
    # the agencies' RabbitMQ users through the management HTTP API (port 15672; guest may use it from this
    # machine only). `rabbitmq-plugins enable` starts a plugin on the running node, no restart needed.
    local plugin
    # Reading the enabled-plugins file avoids starting an Erlang VM just to ask.
    local enabled_file=/etc/rabbitmq/enabled_plugins
    for plugin in rabbitmq_consistent_hash_exchange rabbitmq_management; do
        if ! grep -qs "$plugin" "$enabled_file"; then
            say "enabling $plugin"
            rabbitmq-plugins -q enable "$plugin" >/dev/null
        fi
    done
    wait_for "the management API" 127.0.0.1 $management_port \
        || fail "RabbitMQ's management API did not open port $management_port within ${timeout_s}s"
}

ensure_postgres() {
    local fresh=0
    if ! command -v pg_ctlcluster >/dev/null; then
        apt_install postgresql
        fresh=1
    fi
    if ! port_open $pg_host $pg_port; then
        local version
        version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
        [ -n "$version" ] || fail "PostgreSQL is installed but has no cluster under /etc/postgresql"
        say "starting PostgreSQL $version"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start \
            || pg_ctlcluster "$version" main start
        wait_for PostgreSQL $pg_host $pg_port || fail "PostgreSQL did not open port $pg_port within ${timeout_s}s"
    fi
    local deadline=$((SECONDS + timeout_s))
    until pg_isready -q -h $pg_host -p $pg_port; do
        [ $SECONDS -lt $deadline ] || fail "PostgreSQL did not accept connections within ${timeout_s}s"
        sleep 0.5
    done
    if [ $fresh = 1 ]; then
        # A fresh Debian cluster asks for a password over TCP; give the development superuser the one the
        # tests and the sample config use (postgres://postgres:postgres@127.0.0.1:5432/). Where the cluster
        # trusts local TCP connections, the password is simply not asked for.
        su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
    fi
}

ensure_chromium() {
    # Debian's own package: the dashboard test runs `chromium --headless`, and nothing downloads a browser
    # build of its own.
    command -v chromium >/dev/null || apt_install chromium
}

ensure_rabbitmq
[ "${CONCORDAT_SKIP_POSTGRES:-0}" = 1 ] || ensure_postgres
[ "${CONCORDAT_SKIP_CHROMIUM:-0}" = 1 ] || ensure_chromium
say "RabbitMQ on 127.0.0.1:$amqp_port and PostgreSQL on $pg_host:$pg_port are up"
