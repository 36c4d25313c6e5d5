#!/bin/sh
# Install Debian's postfix for its smtp-sink test relay, without starting a mail daemon.
# Idempotent: does nothing when smtp-sink is already there. Needs root (apt-get).
set -eu

if command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ]; then
    exit 0
fi

POLICY=/usr/sbin/policy-rc.d
ours=no
if [ ! -e "$POLICY" ]; then
    # Keep invoke-rc.d from starting postfix during the install (exit 101: action forbidden).
    printf '#!/bin/sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    ours=yes
fi
cleanup() { if [ "$ours" = yes ]; then rm -f "$POLICY"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
echo "postfix postfix/mailname string localhost" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends postfix >/dev/null
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ]
