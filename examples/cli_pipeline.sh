#!/usr/bin/env bash
# The helpdesk command in shell pipelines: a report from other commands sent
# as rich text, a send whose exit code decides what happens next, and an
# export filtered with standard tools. FEISHU_* as for the Lua examples.
set -euo pipefail
ticket=${FEISHU_TICKET_ID:-6948728206392295444}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. Another command's output as a post: the first line is the title.
id=$({ echo "Disk report $(date -u +%F)"; df -hP / | tail -n +2; } | helpdesk send "$ticket" --post - --lang en_us)
echo "report sent: $id"

# 2. Exit codes: 4 means nothing was processed (queue it, try later); 3 means
#    it may have been sent (never resend blindly); anything else stops here.
send_or_queue() {
  local rc=0
  helpdesk send "$ticket" --text "$1" > /dev/null || rc=$?
  case $rc in
    0) echo "sent: $1" ;;
    4) echo "$1" >> "$work/queue"; echo "queued for later: $1" ;;
    3) echo "may have been sent, not resending: $1" >&2 ;;
    *) return "$rc" ;;
  esac
}
send_or_queue "We are looking into it."

# 3. The last day's messages as JSON lines, then counted by type. The export
#    is kept only if the listing completed (a failed listing exits non-zero).
if helpdesk messages "$ticket" --since 1d > "$work/day.jsonl"; then
  echo "$(wc -l < "$work/day.jsonl") messages in the last day, by type:"
  grep -o '"message_type":"[a-z]*"' "$work/day.jsonl" | cut -d'"' -f4 | sort | uniq -c
else
  echo "listing failed; no partial export kept" >&2
  exit 1
fi

# 4. The newest three, as a table for people.
helpdesk messages "$ticket" --format table --no-progress | tail -n 3
