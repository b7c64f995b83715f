#!/bin/sh
# Demo Tier-1 heal: fixes the fault it knows about, and says what it did.
echo "heal: failing probes: $TALON_FAILING_PROBES (incident $TALON_INCIDENT_ID)"
if [ -e /tmp/talon-demo/broken ]; then
  rm -f /tmp/talon-demo/broken && echo "heal: removed /tmp/talon-demo/broken"
fi
if [ -e /tmp/talon-demo/stuck ]; then
  echo "heal: /tmp/talon-demo/stuck is beyond this heal" >&2
  exit 1
fi
