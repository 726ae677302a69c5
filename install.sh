#!/bin/sh
# Install sniffover with the distribution's own python3 (Debian 12 and alike), as root.
#
#   ./install.sh            the product: a venv in /opt/sniffover (PEP 668 forbids pip in the
#                           system python), /usr/local/sbin/sniffover, sniffover(8), the system
#                           user "sniffover", /etc/sniffover/ (0750 root:sniffover) with an example
#                           config, the units sniffover.service (standby) and sniffover-serve.service
#                           (master) in /etc/systemd/system (not enabled)
#   ./install.sh --dev      a development checkout: .venv here with the test tools, an editable
#                           build (the compiled modules beside their source), the lab's programs
#
# Options: --prefix DIR (default /opt/sniffover), --pure (skip the mypyc compile), --no-apt
# (the Debian packages are already there). It compiles the hot path with mypyc and gcc; if that
# fails it installs the pure-Python modules (same behaviour, ~6x slower) and says so.
set -eu

prefix=/opt/sniffover
mode=product
apt=yes
here=$(cd "$(dirname "$0")" && pwd)

while [ $# -gt 0 ]; do
    case "$1" in
        --dev) mode=dev ;;
        --prefix) prefix=${2:?--prefix needs a directory}; shift ;;
        --prefix=*) prefix=${1#--prefix=} ;;
        --pure) export SNIFFOVER_PURE=1 ;;
        --no-apt) apt=no ;;
        -h|--help) sed -n '2,/^set -eu/{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { echo "install.sh: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
    say "run me as root (apt, /opt, the service user)"; exit 1
fi

# What sniffover drives at run time (ip, nft, conntrack) and what builds it (venv, headers, gcc).
runtime="python3 python3-venv python3-dev gcc libpcap0.8 iproute2 nftables conntrack procps iputils-ping"
# The lab tests' programs.
testing="tcpdump tcpreplay vsftpd conntrackd openssh-server openssh-client"
if [ "$apt" = yes ]; then
    pkgs=$runtime
    [ "$mode" = dev ] && pkgs="$pkgs $testing"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086  # a word list on purpose
    apt-get update -q >/dev/null && apt-get install -y -q $pkgs >/dev/null
fi

# Always the distribution's interpreter, never one a user put earlier in PATH.
py=/usr/bin/python3
[ -x "$py" ] || { say "$py not found (apt-get install python3)"; exit 1; }

compiled_check() {
    # The hot path is compiled when the TCP tracker is an extension module (asked from /:
    # python -c would import the checkout's source from the current directory).
    (cd / && "$1" -c 'import sniffover.conntrack.tcp as t, sys; sys.exit(0 if t.__file__.endswith(".so") else 1)' 2>/dev/null)
}

if [ "$mode" = dev ]; then
    "$py" -m venv "$here/.venv"
    "$here/.venv/bin/pip" install -q --disable-pip-version-check -e "$here[test]"
    if ! compiled_check "$here/.venv/bin/python"; then
        say "WARNING: the hot path was not compiled (no compiler, headers or mypyc?): pure Python runs"
    fi
    say "development venv ready: . $here/.venv/bin/activate"
    exit 0
fi

"$py" -m venv "$prefix"
"$prefix/bin/pip" install -q --disable-pip-version-check "$here"
if ! compiled_check "$prefix/bin/python"; then
    say "WARNING: the hot path was not compiled (no compiler, headers or mypyc?): pure Python runs, same behaviour, ~6x slower"
fi
ln -sf "$prefix/bin/sniffover" /usr/local/sbin/sniffover
install -d /usr/local/share/man/man8
"$prefix/bin/sniffover" manpage > /usr/local/share/man/man8/sniffover.8
install -d /usr/local/share/bash-completion/completions
"$prefix/bin/sniffover" completion > /usr/local/share/bash-completion/completions/sniffover
# the units (not enabled: the operator edits the config, then `systemctl enable --now`)
if [ -d /etc/systemd/system ]; then
    for unit in sniffover.service sniffover-serve.service; do
        install -m 0644 "$here/sniffover/examples/$unit" "/etc/systemd/system/$unit"
    done
    if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
fi

if ! getent passwd sniffover >/dev/null; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        --user-group sniffover
fi
install -d -m 0750 -o root -g sniffover /etc/sniffover
if [ ! -e /etc/sniffover/sniffover.toml ]; then
    install -m 0640 -o root -g sniffover "$here/sniffover/examples/sniffover.toml" \
        /etc/sniffover/sniffover.toml
fi
say "installed $("$prefix/bin/sniffover" --version 2>/dev/null || echo sniffover) in $prefix; command /usr/local/sbin/sniffover"
