# fish completion for lc-watch(1)

complete -c lc-watch -f
complete -c lc-watch -a '(set -l d (set -q XDG_STATE_HOME; and echo $XDG_STATE_HOME; or echo $HOME/.local/state)/linode-coder/sessions; for f in $d/*.json; basename $f .json; end)'
complete -c lc-watch -s D -l destroy -d 'delete the VMs of idle, late, over-budget and unready sessions'
complete -c lc-watch -s H -l heal -d 'run lc-heal on unhealthy sessions'
complete -c lc-watch -s l -l ledger -d 'watch every active session in the ledger'
complete -c lc-watch -s n -l dry-run -d 'say what would be done; change nothing'
complete -c lc-watch -s j -l jobs -x -d 'sessions sampled at once'
complete -c lc-watch -s t -l timeout -x -d 'time limit for one session (s)'
complete -c lc-watch -s I -l install-cron -d 'add the cron line'
complete -c lc-watch -s U -l uninstall-cron -d 'remove the cron line'
complete -c lc-watch -s S -l cron-status -d 'cron line and recent decisions'
complete -c lc-watch -s q -l quiet -d 'no progress lines'
complete -c lc-watch -s v -l verbose -d 'more detail on stderr'
complete -c lc-watch -s h -l help -d 'show help'
