# fish completion for lc-sessions(1)

function __lc_sessions_names
    set -l d (set -q XDG_STATE_HOME; and echo $XDG_STATE_HOME; or echo $HOME/.local/state)/linode-coder/sessions
    for f in $d/*.json
        basename $f .json
    end
end

set -l verbs use extend forget cost cleanup reconcile cache

complete -c lc-sessions -f
complete -c lc-sessions -n "not __fish_seen_subcommand_from $verbs" -a "$verbs"
complete -c lc-sessions -n "not __fish_seen_subcommand_from cost cleanup reconcile cache" -a '(__lc_sessions_names)'
complete -c lc-sessions -n "__fish_seen_subcommand_from cache" -a 'ls rm'
complete -c lc-sessions -n "__fish_seen_subcommand_from cache" -s a -l all -d 'rm: every cache volume'
complete -c lc-sessions -s h -l help -d 'show help'
complete -c lc-sessions -s q -l quiet -d 'no progress lines'
complete -c lc-sessions -s v -l verbose -d 'more detail'
complete -c lc-sessions -n "not __fish_seen_subcommand_from $verbs" -s a -l all -d 'include archived sessions'
complete -c lc-sessions -n "not __fish_seen_subcommand_from $verbs" -s T -l table -d 'a table for people'
complete -c lc-sessions -n "__fish_seen_subcommand_from extend" -s b -l by -r -d 'move the deadline later by'
complete -c lc-sessions -n "__fish_seen_subcommand_from extend" -s d -l deadline -r -d 'deadline from now'
complete -c lc-sessions -n "__fish_seen_subcommand_from forget" -s y -l yes -d 'really remove the record'
complete -c lc-sessions -n "__fish_seen_subcommand_from cost" -s s -l since -r -d 'only what accrued since'
complete -c lc-sessions -n "__fish_seen_subcommand_from reconcile" -s A -l adopt -d 'write orphans into the ledger'
