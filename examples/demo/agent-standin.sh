#!/bin/sh
# STAND-IN for an AI agent CLI (demo only). A real agent reads the same prompt on stdin.
tier="$1"
prompt=$(cat)
echo "[$tier agent stand-in] read a prompt of $(printf %s "$prompt" | wc -c) bytes"
echo "[$tier agent stand-in] diagnosis: $TALON_FAILING_PROBES is failing; the runbook says a human must act."
# The cloud stand-in "fails" so the ladder shows the fall back to the local one.
[ "$tier" = cloud ] && exit 1
exit 0
