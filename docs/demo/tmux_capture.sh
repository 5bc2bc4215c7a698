#!/bin/bash
# Type a demo script into `ran chat` in a detached tmux session, line by line (each after the previous pass has
# finished), and write the screen to a file: how docs/chat-memory-transcript.txt was made.
# Usage (from the repository root): bash docs/demo/tmux_capture.sh SCRIPT OUT [ran chat arguments...]
#   e.g. bash docs/demo/tmux_capture.sh docs/demo/memory.txt /tmp/memory.txt --artifact DIR/memory-seed0
set -euo pipefail
script=$1 out=$2
shift 2
sessions=$(mktemp -d)
pane=ran-capture-$$
tmux new-session -d -s "$pane" -x 160 -y 100 \
    "$(printf '%q ' .venv/bin/ran chat --session capture --sessions-dir "$sessions" "$@"); sleep 3600"
prompts() { tmux capture-pane -p -t "$pane" -S -2000 | grep -o "you>" | wc -l; }
until [ "$(prompts)" -ge 1 ]; do sleep 1; done
grep -v '^#' "$script" | grep -v '^[[:space:]]*$' | while IFS= read -r line; do
    before=$(prompts)
    tmux send-keys -t "$pane" -l "$line"
    tmux send-keys -t "$pane" Enter
    until [ "$(prompts)" -gt "$before" ]; do sleep 1; done
done
tmux send-keys -t "$pane" -l "/quit"
tmux send-keys -t "$pane" Enter
sleep 2
tmux capture-pane -p -t "$pane" -S -2000 | grep -v "Loading weights" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}' > "$out"
tmux kill-session -t "$pane"
rm -rf "$sessions"
echo "wrote $out"
